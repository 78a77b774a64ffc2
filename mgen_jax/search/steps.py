"""Jitted steps of the model generator: relaxed (weights + branch logits, loss = sum_t task loss_t + lambda *
E(p) / E_independent) and discrete (weights of one sharing tree), and evaluation of a discrete model on dev."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mgen_jax import cost, hw
from mgen_jax.data.glue import GlueTask
from mgen_jax.data.metrics import prediction_metrics, predictions
from mgen_jax.errors import ConfigError
from mgen_jax.model.bert import BertConfig
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.config import SAMPLING_MODES
from mgen_jax.train.parallel import to_host
from mgen_jax.workload.trace import Trace


class EnergyModel(NamedTuple):
    """The cost model of the experiment's workload, and E(p = 0) (independent models) to normalise by."""

    arch: hw.BertArch
    tables: cost.CostTables
    workload: cost.Workload
    independent_j: float


def energy_model(bert: BertConfig, spec: hw.HardwareSpec, num_labels: Sequence[int], trace: Trace,
                 model_name: str = "model") -> EnergyModel:
    """Cost-model tables for the model's own dims; raises ConfigError if they disagree with the model."""
    arch = hw.arch_from_hf_config(bert.to_hf(), name=model_name)
    tables = cost.build_tables(spec, arch, num_labels)
    if tables.unit_coef.shape[0] != bert.num_units or tables.head_coef.shape[0] != len(num_labels):
        raise ConfigError(
            f"cost model has {tables.unit_coef.shape[0]} units x {tables.head_coef.shape[0]} tasks, the model "
            f"{bert.num_units} units x {len(num_labels)} tasks"
        )
    if trace.num_tasks != len(num_labels):
        raise ConfigError(f"workload trace has {trace.num_tasks} tasks, the model {len(num_labels)}")
    workload = cost.workload_from_trace(trace)
    zero = jnp.zeros((len(num_labels), bert.num_units))
    return EnergyModel(arch, tables, workload, float(cost.expected_energy(zero, tables, workload).total_j))


def task_losses(model: MultiTaskModel, tasks: Sequence[GlueTask], outputs: jax.Array, batch) -> jax.Array:
    """[T] mean loss of every task on its part of a mixed batch: cross-entropy over its own labels, or squared
    error for regression tasks."""
    num_labels = jnp.asarray([t.num_labels for t in tasks])
    regression = jnp.asarray([t.is_regression for t in tasks])
    valid = jnp.arange(model.max_labels)[None, None, :] < num_labels[:, None, None]
    logits = jnp.where(valid, outputs, -1e9)
    labels = batch["labels"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))
    se = jnp.square(outputs[..., 0] - labels)
    per = jnp.where(regression[:, None], se, ce)
    w = batch["weights"]
    return jnp.sum(per * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def distillation_losses(model: MultiTaskModel, tasks: Sequence[GlueTask], outputs: jax.Array, teacher: jax.Array,
                        batch, temperature: float) -> jax.Array:
    """[T] mean distillation loss of every task on its part of a mixed batch: for classification
    temperature^2 x KL(softmax(teacher / temperature) || softmax(outputs / temperature)) over the task's own labels
    (zero when the two agree), for regression the squared difference of the two predictions."""
    num_labels = jnp.asarray([t.num_labels for t in tasks])[:, None]
    regression = jnp.asarray([t.is_regression for t in tasks])[:, None]
    per = distillation_per_example(outputs, teacher, num_labels, regression, temperature)
    w = batch["weights"]
    return jnp.sum(per * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def distillation_per_example(outputs: jax.Array, teacher: jax.Array, num_labels, regression,
                             temperature: float) -> jax.Array:
    """Distillation loss of every example (outputs and teacher [..., C]; num_labels and regression broadcast to
    [...]): temperature^2 x KL(softmax(teacher / T) || softmax(outputs / T)) over the first num_labels outputs, or
    the squared difference of the two predictions (output 0) where ``regression``."""
    valid = jnp.arange(outputs.shape[-1]) < jnp.asarray(num_labels)[..., None]
    log_student = jax.nn.log_softmax(jnp.where(valid, outputs / temperature, -1e9), axis=-1)
    log_teacher = jax.nn.log_softmax(jnp.where(valid, teacher / temperature, -1e9), axis=-1)
    kl = jnp.sum(jnp.where(valid, jnp.exp(log_teacher) * (log_teacher - log_student), 0.0), axis=-1)
    return jnp.where(regression, jnp.square(outputs[..., 0] - teacher[..., 0]), temperature ** 2 * kl)


@struct.dataclass
class RelaxedState:
    step: jax.Array
    params: Any
    opt_state: Any
    logits: jax.Array  # [T, U + 1] branch-point logits
    logit_opt_state: Any


def make_relaxed_step(model: MultiTaskModel, tasks, tx_w, tx_l, energy: EnergyModel, base_rng, *, sampling: str,
                      task_weights: Sequence[float] | None = None):
    """step(state, batch, lam, tau, logit_scale) -> (state, (task losses [T], energy ratio, total loss)).

    ``sampling`` says which distribution over b_t the forward pass sees:
    - "soft": q = softmax(logits / tau) itself (every unit a mixture of trunk and own copy);
    - "gumbel": a Gumbel-softmax sample, softmax((logits + g) / tau);
    - "hard": a straight-through Gumbel sample: the forward pass runs the one-hot sampled discrete model, the
      gradient is the Gumbel-softmax one. The weights are trained on discrete models, as they will be used.
    - "enumerate": the weights are trained on the sampled discrete model b = argmax(logits + g), as with "hard" (a
      sample of softmax(logits): at temperature 1, broader than q late in the search, so that the branch points the
      expectation compares stay trained); the logits get the exact gradient of sum_t E_q[loss_t(b_t)], q =
      softmax(logits / tau), on the batch: task t's output depends on b_t only, so the expectation needs the U + 1
      discrete models' losses (forward passes without dropout, weights held fixed; ``make_loss_profile``), and
      every b is compared on the same examples. No straight-through bias.
    The energy term is always the exact expectation under softmax(logits / tau) (no sampling noise).
    ``task_weights`` w (enumerate only): the logits' objective becomes sum_t w_t E_q[loss_t(b_t)] + lambda * E / E0,
    e.g. w_t = dev-score points per unit of task t's loss; the weights still train on the plain sum of task losses.
    logit_scale 0 freezes the logits (warm-up) without another compilation."""
    if sampling not in SAMPLING_MODES:
        raise ConfigError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if task_weights is not None and sampling != "enumerate":
        raise ConfigError(f"task weights act on the logits' exact expected loss: they need sampling 'enumerate', "
                          f"got {sampling!r}")
    weights = jnp.ones(len(tasks)) if task_weights is None else jnp.asarray(task_weights, jnp.float32)
    if weights.shape != (len(tasks),):
        raise ConfigError(f"need one task weight per task ({len(tasks)}), got {len(weights)}")

    profile = make_loss_profile(model, tasks, jit=False) if sampling == "enumerate" else None

    def loss_fn(params, logits, batch, lam, tau, rng):
        noise_rng, dropout_rng = jax.random.split(rng)
        q = jax.nn.softmax(logits / tau, axis=-1)
        ratio = cost.expected_energy(cost.branch_probs_from_dist(q), energy.tables, energy.workload).total_j \
            / energy.independent_j
        if sampling == "enumerate":
            b = jnp.argmax(logits + jax.random.gumbel(noise_rng, logits.shape), axis=-1)
            losses = task_losses(model, tasks, model.discrete_forward(params, batch, b, deterministic=False,
                                                                     rng=dropout_rng), batch)
            # sum_t w_t E_q[loss_t(b_t)]
            expected = jnp.sum(q * weights[:, None] * jax.lax.stop_gradient(profile(params, batch)).T)
            # the value is the sampled model's objective; the logits' gradient is the expectation's
            return jnp.sum(losses) + expected - jax.lax.stop_gradient(expected) + lam * ratio, (losses, ratio)
        if sampling == "soft":
            q_forward = q
        else:
            q_forward = jax.nn.softmax((logits + jax.random.gumbel(noise_rng, logits.shape)) / tau, axis=-1)
            if sampling == "hard":
                one_hot = jax.nn.one_hot(jnp.argmax(q_forward, axis=-1), logits.shape[-1], dtype=q_forward.dtype)
                q_forward = q_forward + jax.lax.stop_gradient(one_hot - q_forward)
        outputs = model.relaxed_forward(params, batch, cost.branch_probs_from_dist(q_forward), deterministic=False,
                                        rng=dropout_rng)
        losses = task_losses(model, tasks, outputs, batch)
        return jnp.sum(losses) + lam * ratio, (losses, ratio)

    def step(state: RelaxedState, batch, lam, tau, logit_scale):
        rng = jax.random.fold_in(base_rng, state.step)
        (total, (losses, ratio)), (g_params, g_logits) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            state.params, state.logits, batch, lam, tau, rng)
        updates, opt_state = tx_w.update(g_params, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        l_updates, l_state = tx_l.update(g_logits, state.logit_opt_state, state.logits)
        logits = state.logits + logit_scale * l_updates
        return RelaxedState(state.step + 1, params, opt_state, logits, l_state), (losses, ratio, total)

    return jax.jit(step, donate_argnums=(0,))


@struct.dataclass
class DiscreteState:
    step: jax.Array
    params: Any
    opt_state: Any


def make_discrete_step(model: MultiTaskModel, tasks, tx, base_rng, *, distill_weight: float = 0.0,
                       distill_temperature: float = 1.0, task_weights: Sequence[float] | None = None):
    """step(state, batch, branch_points, teachers=None) -> (state, task losses [T]).

    The objective is sum_t v_t x objective_t with v = ``task_weights`` (default: every task 1). With
    ``distill_weight`` w > 0 the objective of task t is (1 - w) x its task loss + w x its distillation loss
    against ``teachers`` (``MultiTaskModel.separate_params`` of fixed teacher models, run without dropout; a step
    argument, never baked into the compiled program). The reported losses are the (unweighted) task losses."""
    if not 0.0 <= distill_weight <= 1.0 or distill_temperature <= 0:
        raise ConfigError(f"need 0 <= distill_weight <= 1 and distill_temperature > 0, got {distill_weight}, "
                          f"{distill_temperature}")
    weights = jnp.ones(len(tasks)) if task_weights is None else jnp.asarray(task_weights, jnp.float32)
    if weights.shape != (len(tasks),) or not bool(jnp.all(weights > 0)):
        raise ConfigError(f"fine-tuning task weights need one positive number per task ({len(tasks)}), "
                          f"got {task_weights}")

    def loss_fn(params, batch, branch_points, teachers, rng):
        outputs = model.discrete_forward(params, batch, branch_points, deterministic=False, rng=rng)
        losses = task_losses(model, tasks, outputs, batch)
        if distill_weight == 0.0:
            return jnp.sum(weights * losses), losses
        teacher = jax.lax.stop_gradient(model.separate_forward(teachers, batch))
        distill = distillation_losses(model, tasks, outputs, teacher, batch, distill_temperature)
        return jnp.sum(weights * ((1.0 - distill_weight) * losses + distill_weight * distill)), losses

    def step(state: DiscreteState, batch, branch_points, teachers=None):
        if distill_weight > 0.0 and teachers is None:
            raise ConfigError("distillation needs the teachers' parameters (MultiTaskModel.separate_params)")
        rng = jax.random.fold_in(base_rng, state.step)
        (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, branch_points, teachers,
                                                                       rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return DiscreteState(state.step + 1, optax.apply_updates(state.params, updates), opt_state), losses

    return jax.jit(step, donate_argnums=(0,))


def make_task_predict(model: MultiTaskModel):
    return jax.jit(lambda params, task, b, batch: model.task_forward(params, task, b, batch))


def _to_device(batch, put):
    return put(batch) if put is not None else {k: jnp.asarray(v) for k, v in batch.items()}


def evaluate_discrete(predict, params, data, branch_points, batch_size: int = 64,
                      split: str = "dev", put=None, *, with_predictions: bool = False):
    """Metrics of every task of the discrete model ``branch_points`` on ``split`` ("dev" or "heldout"); ``put``
    places a host batch on the devices (default: the default device). With ``with_predictions``: (metrics,
    {task: {"pred": [N] class ids or scores, "labels": [N]}}), the rows a paired bootstrap resamples."""
    results, rows = {}, {}
    for t, task in enumerate(data.tasks):
        dev = data.split(split)[t]
        outputs = np.zeros((len(dev), task.num_labels), dtype=np.float32)
        for idx, batch in data.eval_batches(t, batch_size, split):
            out = to_host(predict(params, jnp.int32(t), jnp.int32(branch_points[t]),
                                  _to_device({k: v for k, v in batch.items() if k != "labels"}, put)))
            outputs[idx] = out[: len(idx), : task.num_labels]
        pred = predictions(task, outputs)
        results[task.name] = prediction_metrics(task, pred, dev.labels)
        rows[task.name] = {"pred": pred, "labels": np.asarray(dev.labels)}
    return (results, rows) if with_predictions else results


def expected_branch_points(logits: jax.Array) -> np.ndarray:
    """E[b_t] under softmax(logits_t)."""
    q = np.asarray(jax.nn.softmax(logits, axis=-1))
    return q @ np.arange(q.shape[-1])


def make_loss_profile(model: MultiTaskModel, tasks, *, jit: bool = True):
    """profile(params, batch) -> [U + 1, T]: every task's mean loss on ``batch`` for every branch point b = 0..U
    (dropout off). It shows which discrete models given weights are trained for: the search's hard samples see
    exactly these losses. Task t's output depends on b_t only, so row b is the model with every task at b; the
    U + 1 models share their trunk prefixes (``MultiTaskModel.every_branch_point_forward``)."""
    def profile(params, batch):
        outputs = model.every_branch_point_forward(params, batch)
        return jax.vmap(lambda out: task_losses(model, tasks, out, batch))(outputs)

    return jax.jit(profile) if jit else profile


def make_task_loss_profile(model: MultiTaskModel, tasks):
    """profile(params, task, batch [B, L]) -> (losses [U + 1, B], outputs [U + 1, B, C]): one task's per-example
    loss and outputs at every branch point b = 0..U (dropout off; ``MultiTaskModel.every_branch_point_task_forward``),
    for a loss and score profile over a whole split."""
    num_labels = jnp.asarray([t.num_labels for t in tasks])
    regression = jnp.asarray([t.is_regression for t in tasks])

    def profile(params, task, batch):
        outputs = model.every_branch_point_task_forward(params, task, batch)  # [U + 1, B, C]
        valid = jnp.arange(outputs.shape[-1]) < num_labels[task]
        logits = jnp.where(valid, outputs, -1e9)
        labels = batch["labels"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)[None])
        return jnp.where(regression[task], jnp.square(outputs[..., 0] - labels[None]), ce), outputs

    return jax.jit(profile)


def split_loss_profile(profile, params, data, split: str = "heldout", batch_size: int = 64,
                       bootstrap: int = 200, put=None) -> dict[str, Any]:
    """Over all rows of ``split``, every task at every branch point: its mean loss and the standard error over the
    rows ({"mean_loss", "stderr"}), and its main score x 100 with a bootstrap standard error over the rows
    ({"mean_score", "score_stderr"}, ``bootstrap`` seeded resamples); each [U + 1][T], plus the rows per task."""
    from mgen_jax.data.metrics import main_score, task_metrics

    means, errors, scores, score_errors, rows = [], [], [], [], []
    rng = np.random.default_rng(0)
    for t, task in enumerate(data.tasks):
        split_data = data.split(split)[t]
        losses, outputs = [], []
        for idx, batch in data.eval_batches(t, batch_size, split):
            batch = _to_device({k: v.astype(np.float32) if k == "labels" else v for k, v in batch.items()}, put)
            loss, out = to_host(profile(params, jnp.int32(t), batch))  # gathered from every process
            losses.append(loss[:, : len(idx)])
            outputs.append((idx, out[:, : len(idx), : task.num_labels]))
        per = np.concatenate(losses, axis=1)  # [U + 1, n], in eval_batches' (length) order
        order = np.concatenate([idx for idx, _ in outputs])
        out = np.concatenate([o for _, o in outputs], axis=1)  # [U + 1, n, C]
        labels = split_data.labels[order]
        score = lambda b, pick: main_score(task, task_metrics(task, out[b][pick], labels[pick]))
        every = np.arange(len(order))
        draws = [rng.integers(0, len(order), len(order)) for _ in range(bootstrap)]
        scores.append([score(b, every) for b in range(per.shape[0])])
        score_errors.append([float(np.std([score(b, d) for d in draws])) if bootstrap else 0.0
                             for b in range(per.shape[0])])
        means.append(per.mean(1))
        errors.append(per.std(1) / np.sqrt(per.shape[1]))
        rows.append(len(split_data))
    return {"mean_loss": np.stack(means, 1).tolist(), "stderr": np.stack(errors, 1).tolist(),
            "mean_score": np.asarray(scores).T.tolist(), "score_stderr": np.asarray(score_errors).T.tolist(),
            "rows": rows}
