"""The gradient search in one run, inside the training budget (DESIGN.md section 6, issue 31).

A run trains the multi-task model's weights and its branch-point logits together, then the tree they settle on, on
exactly the examples each task's independent model saw (``finetune_budget: independent``; or a budget given per task,
``{examples: N}`` or ``{epochs: E}``, where no independent models exist): the global schedule of one-task batches of
equal-budget fine-tuning (search/budget.py) is cut in two.

1. **Search** (the first ``search_fraction`` of the N steps). At step k, task t = schedule[k]: a branch point b is
   drawn, from q_t = softmax(z_t) (``weight_sampling: distribution``) or uniformly over 0..U (``uniform``: the
   units of every branch point train alike whatever the logits), and the weights take an equal-budget step of that
   discrete model (lazy per-task AdamW, as fine-tuning); the logits take a natural-gradient step on the Lagrangian of
   search/constrained.py, and the multiplier mu a projected dual-ascent step toward the energy target r. The logits'
   gradient comes from one of two estimators:
   - ``enumerate``: the exact gradient of E_{q_t}[loss_t(b)] on the first ``logit_rows`` rows of the batch: the
     task's loss at every b = 0..U (``MultiTaskModel.every_branch_point_task_forward``, dropout off; U + U(U+1)/2
     unit passes instead of U);
   - ``straight-through``: a Gumbel straight-through sample of b on the same rows (both paths of every unit run, so
     that the gradient reaches every logit): biased, one sample.
   What a branch point costs a task (``objective``): its loss on those rows (``loss``), or 1 - the task's main metric
   (MCC, F1, accuracy, Pearson's r) read from moving averages of running sums over them (``score``,
   search/running_score.py; with ``enumerate`` only). A task's loss need not follow its metric: in the glue5
   warm-up's held-out profile CoLA's loss fell from 0.655 at b = 0 to 0.620 at b = 12 while its MCC fell from 34.5
   to 0.
2. **Tree.** b_t = argmax z_t, decoded against the search's cost estimates (``decode_tree``: repaired if its exact
   energy exceeds r, improved by single-task moves within r; every move recorded).
3. **Training goes on** from the search's weights and optimizer state with the tree fixed, for the rest of the N
   steps (no restart, no separate warm-up), then the held-out and (once) dev evaluation.

Each part runs in its own folder of the run (search/, finetune/) with the resumable loop (train/loop.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mgen_jax import cost
from mgen_jax.errors import ConfigError
from mgen_jax.io import parse_json, read_json_file, write_json_atomic
from mgen_jax.search.budget import BudgetState, init_budget_state, interleave, single_task_loss
from mgen_jax.search.finetune import (
    FINETUNE_FIELDS, budget_batches, budget_step, budget_streams, evaluate, per_task_fields, placed_branch_points,
    task_loss_log, token_counts,
)
from mgen_jax.search.gradient_settings import GradientSettings
from mgen_jax.search.rundir import PhaseFields
from mgen_jax.search.running_score import NUM_STATS, batch_stats, score_from_stats
from mgen_jax.search.constrained import (
    MU_FLOOR, check_target, dual_step_size, dual_update, energy_ratio, feasible_range, lagrangian, natural_step,
    decode_tree, read_estimate, temperature, tree_ratio, update_estimate,
)
from mgen_jax.train.checkpoint import restore_checkpoint
from mgen_jax.train.optim import warmup_linear_schedule
from mgen_jax.train.parallel import replicate

# The config's gradient section: every run checks it (with the fine-tuning fields) in its own folder.
GRADIENT_FIELDS = PhaseFields(("gradient",), "gradient run folder")


@struct.dataclass
class LogitState:
    logits: jax.Array  # [T, U + 1] branch-point logits z
    mu: jax.Array  # the Lagrange multiplier of the energy constraint
    loss_estimate: jax.Array  # [T, U + 1] moving average of every task's loss at every branch point, or
    # [T, U + 1, NUM_STATS] of its metric's running sums (objective: score)
    loss_count: jax.Array  # [T] steps of each task seen by the estimate

    @classmethod
    def zeros(cls, num_tasks: int, num_units: int, mu: float = 1.0, objective: str = "loss") -> "LogitState":
        shape = (num_tasks, num_units + 1)
        estimate = shape + ((NUM_STATS,) if objective == "score" else ())
        return cls(jnp.zeros(shape, jnp.float32), jnp.float32(max(mu, MU_FLOOR)), jnp.zeros(estimate, jnp.float32),
                   jnp.zeros((num_tasks,), jnp.int32))


@struct.dataclass
class SearchState:
    step: jax.Array
    budget: BudgetState  # weights and their lazy per-task AdamW state (search/budget.py)
    logit: LogitState


def make_logit_step(model, tasks, energy, settings: GradientSettings, target: float, search_steps: int, *,
                    every_b_losses=None, every_b_stats=None):
    """step(logit_state, params, batch, task, k, rng) -> (logit_state, b, info): on task ``task``'s batch, update
    its cost estimate at every branch point, then take one natural-gradient step of every task's logits and one
    dual-ascent step of mu (search/constrained.py); b is the branch point the weights train on at this step:
    ~ softmax(z_task), drawn before the update, or uniform over 0..U (``weight_sampling``). ``info``: (energy ratio
    E(q)/E0, tau, the task's expected cost under q: its loss on this batch, or 1 - its estimated score).
    ``every_b_losses(params, task, batch) -> [U + 1]`` replaces the model's losses at every branch point (the
    enumerate estimator), ``every_b_stats(params, task, batch) -> [U + 1, NUM_STATS]`` its metric's sums (objective:
    score); tests plant known tables through them. ``tasks``: the GlueTasks (their labels and main metrics)."""
    rows = settings.logit_rows
    ratio_fn = lambda q: energy_ratio(q, energy.tables, energy.workload, energy.independent_j)
    settle = max(1.0, settings.dual_settle_fraction * search_steps)
    anneal_steps = max(1, int(round(settings.anneal_fraction * search_steps)))
    weights = jnp.asarray(settings.task_weights or (1.0,) * energy.tables.head_coef.shape[0], jnp.float32)
    memory = settings.loss_memory

    def model_losses(params, task, batch):
        out = model.every_branch_point_task_forward(params, task, batch)  # [U + 1, m, C]
        return jax.vmap(lambda o: single_task_loss(tasks, o, batch, task))(out)

    def model_stats(params, task, batch):
        out = model.every_branch_point_task_forward(params, task, batch)  # [U + 1, m, C]
        num_labels = jnp.asarray([t.num_labels for t in tasks])[task]
        regression = jnp.asarray([t.is_regression for t in tasks])[task]
        center = jnp.asarray([sum(t.score_range) / 2 for t in tasks], jnp.float32)[task]
        return jax.vmap(lambda o: batch_stats(o, batch["labels"], batch["weights"], num_labels, regression,
                                              center))(out)

    score = settings.objective == "score"
    every_b_costs = (every_b_stats or model_stats) if score else (every_b_losses or model_losses)
    metrics = main_metrics(tasks) if score else None

    def st_loss(sample, params, task, batch):
        """The task's loss at a straight-through sample (one-hot in value; its gradient is the sample's cost)."""
        p_u = cost.branch_probs_from_dist(sample[None])[0]
        view = model.task_view(jax.lax.stop_gradient(params), task)
        return single_task_loss(tasks, model.relaxed_view_forward(view, p_u, batch), batch, task)

    def step(state: LogitState, params, batch, task, k, rng):
        sub = jax.tree.map(lambda x: x[:rows], batch)
        tau = temperature(k, anneal_steps, settings.temperature_start, settings.temperature_end)
        logits = state.logits
        q = jax.nn.softmax(logits, axis=-1)
        gumbel = jax.random.gumbel(rng, (logits.shape[1],))
        b = jnp.argmax(logits[task] + gumbel).astype(jnp.int32)  # a sample of q_task
        if settings.weight_sampling == "uniform":  # the weights' branch point, whatever the logits
            b_weights = jnp.argmax(gumbel).astype(jnp.int32)
        else:
            b_weights = b
        if settings.estimator == "enumerate":
            costs = jax.lax.stop_gradient(every_b_costs(params, task, sub))
            expected = None if score else jnp.sum(q[task] * costs)
        else:  # the gradient of the loss in the one-hot sample: first-order cost of every branch point
            hard = jax.nn.one_hot(b, logits.shape[-1], dtype=logits.dtype)
            expected, costs = jax.value_and_grad(st_loss)(hard, params, task, sub)
        estimate, count = update_estimate(state.loss_estimate, state.loss_count, task, costs, memory)
        loss_tb = task_costs(estimate, count, settings, metrics)
        if expected is None:
            expected = jnp.sum(q[task] * loss_tb[task])
        (_, ratio), c = jax.value_and_grad(lagrangian, has_aux=True)(q, loss_tb, weights, state.mu, ratio_fn)
        logits = natural_step(logits, c, settings.logit_damping / tau, tau)
        mu = dual_update(state.mu, ratio, target, dual_step_size(k, settings.dual_step, settle, settings.dual_decay))
        return LogitState(logits, mu, estimate, count), b_weights, (ratio, tau, expected)

    return jax.jit(step)


def main_metrics(tasks) -> tuple[str, ...]:
    """Every task's main metric, the one objective: score reads (search/running_score.py)."""
    return tuple(t.main_metric for t in tasks)


def task_costs(estimate: jax.Array, count: jax.Array, settings: GradientSettings,
               metrics: Sequence[str] | None = None) -> jax.Array:
    """[T, U + 1] what every branch point costs every task. ``objective: loss``: the estimated loss
    (bias-corrected moving average), divided by its mean over branch points with ``normalize_losses``.
    ``objective: score``: 1 - the task's main metric (``metrics``, one per task) read from the estimated sums; the
    tasks' scores share one scale, as in the mean GLUE score, and are not normalized."""
    loss_tb = read_estimate(estimate, count, settings.loss_memory)
    if settings.objective == "score":
        if metrics is None or len(metrics) != loss_tb.shape[0]:
            raise ValueError(f"objective score needs one main metric per task, got {metrics!r}")
        return jnp.stack([1.0 - score_from_stats(loss_tb[t], m) for t, m in enumerate(metrics)])
    if settings.normalize_losses:
        loss_tb = loss_tb / jnp.maximum(jnp.mean(jnp.abs(loss_tb), axis=-1, keepdims=True), 1e-8)
    return loss_tb


def decode_costs(state: "LogitState", settings: GradientSettings, metrics: Sequence[str] | None = None) -> np.ndarray:
    """[T, U + 1] what the discrete tree is decoded against: w_t x the task costs (``metrics``: task_costs)."""
    weights = np.asarray(settings.task_weights or (1.0,) * state.logits.shape[0], np.float64)
    costs = np.asarray(jax.device_get(task_costs(state.loss_estimate, state.loss_count, settings, metrics)),
                       np.float64)
    return weights[:, None] * costs


def mu_converged(tail: Sequence[float], tolerance: float) -> bool:
    """Has mu settled: is its range over ``tail`` (the last tenth of the search) at most tolerance x max(1, mean)?"""
    tail = np.asarray(tail, np.float64)
    return bool(tail.max() - tail.min() <= tolerance * max(1.0, float(np.abs(tail).mean())))


def run_dir(gen, target: float, seed: int, tag: str = "") -> Path:
    """The run's folder: <workdir>/gradient/r<target>[_<tag>]_seed<seed> (a tag names overridden settings)."""
    return gen.run.gradient(target, seed, tag)


def target_range(gen) -> tuple[float, float]:
    """(least, greatest) energy target this model, tasks and workload can meet: (full sharing's ratio, 1)."""
    e = gen.energy
    return feasible_range(e.tables, e.workload, e.independent_j, len(gen.tasks))


class _Plan(NamedTuple):
    """What both parts of one run share: the equal-budget schedule and its training step."""

    streams: list
    schedule: np.ndarray  # the task of every global step
    total: int  # global steps: the whole budget
    search_steps: int
    lr: Any  # global step -> learning rate
    budget_fn: Any  # the equal-budget step (search/budget.py)
    dropout_key: Any
    batch_fn: Any  # global step -> batch on the devices


def _plan(gen, seed: int, settings: GradientSettings) -> tuple[_Plan, Any]:
    cfg = gen.cfg
    streams = budget_streams(gen, seed)
    schedule = interleave([s.steps for s in streams])
    total = len(schedule)
    search_steps = min(total, max(1, int(round(settings.search_fraction * total))))
    tx, budget_fn = budget_step(gen)
    plan = _Plan(streams, schedule, total, search_steps,
                 warmup_linear_schedule(cfg.lr_finetune, total, warmup_ratio=cfg.warmup_ratio), budget_fn,
                 gen.replicate(jax.random.PRNGKey(seed + 5)), budget_batches(gen, streams, schedule))
    return plan, tx


def check_config(cfg, settings: GradientSettings) -> None:
    """Can ``cfg`` run the gradient search with ``settings``? ConfigError naming the field if not (a sweep asks
    before its first phase)."""
    if cfg.finetune_budget is None or cfg.finetune_init != "pretrained":
        raise ConfigError("the gradient search runs inside a training budget: it needs finetune_budget (independent, "
                          "or examples or epochs per task) and finetune_init: pretrained")
    if cfg.distill_weight > 0:
        raise ConfigError("the gradient search does not distil (distill_weight must be 0)")
    if settings.task_weights is not None and len(settings.task_weights) != len(cfg.tasks):
        raise ConfigError(f"search config field 'gradient.task_weights' needs one weight per task "
                          f"({len(cfg.tasks)}), got {len(settings.task_weights)}")


def gradient_run(gen, target: float, seed: int, settings: GradientSettings, *, tag: str = "") -> dict[str, Any]:
    """One run of the gradient search at energy target ``target`` with training seed ``seed`` (``gen``: the
    experiment's ModelGenerator: model, data, budgets, energy model, run folder; ``tag`` names a variant of the
    settings in the folder's name). Resumes from its folder; returns the discrete model's record (held-out and dev
    metrics, exact energy) with the search's outcome under ``"search"``."""
    cfg = gen.cfg
    check_config(cfg, settings)
    target = check_target(target, *target_range(gen))
    directory = run_dir(gen, target, seed, tag)
    result_path = directory / "result.json"
    gen.run.check_phase(directory, settings.run_settings() | FINETUNE_FIELDS.settings(cfg) | {
        "energy_target": target, "seed": seed}, GRADIENT_FIELDS.folder)
    if result_path.exists():
        return gen.run.result(directory, ("branch_points", "energy_ratio", "metrics", "search"))
    with gen.run.phase_folder(directory, GRADIENT_FIELDS.folder):
        if result_path.exists():  # finished by another process between the check above and the lock
            return gen.run.result(directory, ("branch_points", "energy_ratio", "metrics", "search"))
        return _gradient_run(gen, directory, target, seed, settings)


def _gradient_run(gen, directory: Path, target: float, seed: int, settings: GradientSettings) -> dict[str, Any]:
    result_path = directory / "result.json"
    plan, tx = _plan(gen, seed, settings)
    start = SearchState(jnp.asarray(0, jnp.int32), init_budget_state(gen.pretrained_params(seed), tx),
                        LogitState.zeros(len(gen.tasks), gen.num_units, settings.mu_init, settings.objective))
    state, found = _search_phase(gen, plan, start, directory, target, seed, settings)
    b_arr = np.asarray(found["branch_points"], np.int32)
    b_placed = placed_branch_points(gen, b_arr)  # as the search passed them: no second compilation of the step

    def train_step(state: BudgetState, batch, k):
        t = int(plan.schedule[k])
        state, loss = plan.budget_fn(state, batch, jnp.int32(t), b_placed[t], jnp.float32(plan.lr(k)),
                                     plan.dropout_key)
        return state, (t, loss)

    observe = task_loss_log(gen.tasks)
    budget_state, train_wall = gen.loop(directory / "finetune", state.budget, plan.total, plan.batch_fn, train_step,
                                         f"gradient run r={target:g} seed {seed}: b={b_arr.tolist()}",
                                         lambda k, out: observe(*out), place=lambda s: replicate(s, gen.mesh))
    record = evaluate(gen, directory, b_arr.tolist(), budget_state.params) | _run_info(gen, plan, settings) | {
        "seed": seed, "energy_target": target, "search": found, "search_wall_clock_s": found["wall_clock_s"],
        "train_wall_clock_s": train_wall, "finetune_wall_clock_s": found["wall_clock_s"] + train_wall}
    write_json_atomic(result_path, record)
    for folder in (directory / "search", directory / "finetune"):
        (folder / "checkpoint.msgpack").unlink(missing_ok=True)
    return record


def _run_info(gen, plan: _Plan, settings: GradientSettings) -> dict[str, Any]:
    cfg = gen.cfg
    real, padded = token_counts(plan.streams)
    return {"settings": settings.run_settings(), "finetune_steps": plan.total, "finetune_budget": cfg.finetune_budget,
            "lr_finetune": cfg.lr_finetune, "finetune_init": cfg.finetune_init, **per_task_fields(gen.tasks, plan.streams),
            "padding_fraction": 1 - real / padded, "real_tokens": real, "devices": len(jax.devices())}


def _search_phase(gen, plan: _Plan, start: SearchState, directory: Path, target: float, seed: int,
                  settings: GradientSettings) -> tuple[SearchState, dict[str, Any]]:
    """The search part of a run (folder search/): its last state and its outcome (search.json, written once)."""
    logit_fn = make_logit_step(gen.model, gen.tasks, gen.energy, settings, target, plan.search_steps)
    sample_key = jax.random.PRNGKey(seed * 7919 + 11)
    search_dir, search_file = directory / "search", directory / "search.json"
    if search_file.exists():
        found = read_json_file(search_file, "gradient search outcome")
        missing = [k for k in ("branch_points", "energy_ratio", "wall_clock_s") if k not in found]
        if missing:
            raise ConfigError(f"gradient search outcome {search_file} lacks field(s) {missing}: move the run folder "
                              "away to run it again")
        return restore_checkpoint(search_dir / "checkpoint.msgpack", start), found

    def step(state: SearchState, batch, k):
        t = int(plan.schedule[k])
        logit, b, info = logit_fn(state.logit, state.budget.params, batch, jnp.int32(t), jnp.int32(k),
                                  jax.random.fold_in(sample_key, k))
        budget, loss = plan.budget_fn(state.budget, batch, jnp.int32(t), b, jnp.float32(plan.lr(k)),
                                      plan.dropout_key)
        return SearchState(budget.step, budget, logit), (t, loss, b) + info + (logit.mu,)

    log = task_loss_log(gen.tasks)
    expected_key = "expected_loss" if settings.objective == "loss" else "expected_cost"  # 1 - the expected score

    def observe(k, outputs):
        t, loss, b, ratio, tau, expected, mu = outputs
        return log(t, loss) | {"b": int(b), "energy_ratio": float(ratio), "tau": float(tau), "mu": float(mu),
                               expected_key: float(expected)}

    units = gen.num_units
    mean_b = lambda state: {"mean_b": float(np.mean(
        np.asarray(jax.nn.softmax(state.logit.logits, axis=-1)) @ np.arange(units + 1)))}
    state, wall = gen.loop(search_dir, start, plan.search_steps, plan.batch_fn, step,
                           f"gradient search r={target:g} seed {seed}", observe, mean_b,
                           lambda s: replicate(s, gen.mesh))
    found = _discretise(gen, state, target, search_dir, settings, plan.search_steps) | {
        "steps": plan.search_steps, "total_steps": plan.total, "wall_clock_s": wall}
    write_json_atomic(search_file, found)
    return state, found


def _discretise(gen, state: SearchState, target: float, search_dir: Path, settings: GradientSettings,
                search_steps: int) -> dict[str, Any]:
    """The search's outcome: argmax tree, its exact energy ratio, the repair if it exceeds the target, the final
    distribution, and mu's trajectory (from the search's metrics) with its convergence test."""
    e = gen.energy
    logits = np.asarray(jax.device_get(state.logit.logits), np.float64)
    argmax = [int(b) for b in logits.argmax(axis=1)]
    ratio_of = lambda b: tree_ratio(b, e.tables, e.workload, e.independent_j)
    costs = decode_costs(state.logit, settings, main_metrics(gen.tasks) if settings.objective == "score" else None)
    tree, moves = decode_tree(argmax, costs, target, ratio_of)
    q = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))
    trace = [parse_json(line, f"search metrics {search_dir / 'metrics.jsonl'}")
             for line in (search_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    mu_trace = [(r["step"], r["mu"]) for r in trace if "mu" in r]
    tail = [mu for step, mu in mu_trace if step >= 0.9 * search_steps] or [float(state.logit.mu)]
    return {
        "argmax_branch_points": argmax, "argmax_energy_ratio": ratio_of(argmax),
        "repaired": any(m["why"].startswith("repair") for m in moves), "decode_moves": moves,
        "decode_costs": costs.tolist(), "branch_points": tree, "energy_ratio": ratio_of(tree), "energy_target": target,
        "logits": logits.tolist(), "final_distribution": q.tolist(),
        "max_prob": [float(x) for x in q.max(axis=1)], "mu": float(state.logit.mu),
        "mu_trace": [[int(s), float(m)] for s, m in mu_trace],
        "mu_last_tenth_range": float(max(tail) - min(tail)),
        "mu_converged": mu_converged(tail, settings.dual_tolerance),
        "expected_energy_ratio_final": float(energy_ratio(jnp.asarray(q), e.tables, e.workload, e.independent_j)),
        "estimator": settings.estimator, "objective": settings.objective,
        "note": "tree = argmax of the logits, decoded against the search's cost estimates (search/constrained.py: "
                "decode_tree)" + (
            f": {len(moves)} move(s)" if moves else ": unchanged"),
    }
