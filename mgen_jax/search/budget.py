"""Fine-tuning a discrete multi-task model at equal budget (DESIGN.md section 11).

Every task t of the model trains on exactly the batches its independent model saw: the same training rows (train
minus the held-out split, the same cap), the same batch size, the same number of steps S_t and the same batch order
(``BatchStream`` with the same seed). A step holds one task's batch, as in MT-DNN (Liu et al., ACL 2019); the tasks'
steps are interleaved in proportion to S_t (``interleave``), so that at any time every task has spent the same
fraction of its budget, and one learning-rate schedule (linear warm-up, linear decay, as in independent fine-tuning)
runs over all sum_t S_t steps. Tasks of different sizes thus spend their budgets exactly, and each batch is padded
only to its own task's lengths.

A step trains only what its task uses (``MultiTaskModel.task_view``): the embeddings, trunk units 0..b_t-1, the task's
own units b_t..U-1 and its head. AdamW is lazy: a parameter the step does not use keeps its value and its moments (no
momentum drift and no weight decay on a unit no task used), and each task's own units and head keep their own Adam
step count. Gradients are clipped to a global norm over what the step trains, as in independent fine-tuning.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mgen_jax.data.glue import GlueTask
from mgen_jax.errors import ConfigError
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.steps import distillation_per_example
from mgen_jax.train.optim import adamw_direction

_UNIT = re.compile(r"unit_(\d+)$")


def interleave(steps: Sequence[int]) -> np.ndarray:
    """The task of every global step: task t appears ``steps[t]`` times, and its k-th step (k = 1..S_t) comes at
    fraction k / S_t of the run (ties go to the lower task index). After any prefix, every task has spent within one
    step of the same fraction of its steps."""
    steps = [int(s) for s in steps]
    if not steps or any(s < 0 for s in steps) or sum(steps) == 0:
        raise ConfigError(f"interleave needs step counts >= 0 with a positive total, got {steps}")
    keys = np.concatenate([np.arange(1, s + 1) / s for s in steps if s > 0])
    tasks = np.concatenate([np.full(s, t) for t, s in enumerate(steps) if s > 0])
    return tasks[np.lexsort((tasks, keys))].astype(np.int32)


def task_steps(schedule: np.ndarray, num_tasks: int) -> np.ndarray:
    """For every global step, how many steps of the same task came before it (the index into its stream)."""
    out = np.zeros(len(schedule), dtype=np.int64)
    seen = np.zeros(num_tasks, dtype=np.int64)
    for k, t in enumerate(schedule):
        out[k] = seen[t]
        seen[t] += 1
    return out


@struct.dataclass
class BudgetState:
    step: jax.Array
    params: Any  # the multi-task parameter tree (embeddings, trunk, own [T, ...], heads [T, ...])
    shared_opt: Any  # AdamW moments of the embeddings and the trunk
    task_opt: Any  # AdamW moments of own units and heads, stacked on the task axis (each task its own step count)


def _shared(tree) -> dict:
    return {"embeddings": tree["embeddings"], "trunk": tree["trunk"]}


def _per_task(params) -> dict:
    return {"own": params["own"], "head": params["heads"]}


def _select_units(new, old, keep_new: jax.Array, group: str):
    """``new`` where a leaf lies under ``group``/unit_u with keep_new[u] false is replaced by ``old`` (values and
    optimizer moments alike; leaves outside ``group``, such as step counts, stay new)."""
    def pick(path, a, b):
        keys = [getattr(k, "key", None) for k in path]
        if group in keys:
            for key in keys[keys.index(group) + 1:]:
                match = _UNIT.match(str(key)) if key is not None else None
                if match:
                    return jnp.where(keep_new[int(match.group(1))], a, b)
        return a

    return jax.tree_util.tree_map_with_path(pick, new, old)


def budget_optimizer(weight_decay: float) -> optax.GradientTransformation:
    return adamw_direction(weight_decay)


def init_budget_state(params, tx: optax.GradientTransformation) -> BudgetState:
    params = jax.tree.map(jnp.copy, params)  # the step donates its state; the caller's arrays stay
    return BudgetState(jnp.asarray(0, jnp.int32), params, tx.init(_shared(params)),
                       jax.vmap(tx.init)(_per_task(params)))


def single_task_loss(tasks: Sequence[GlueTask], outputs: jax.Array, batch, task) -> jax.Array:
    """Mean loss of task ``task`` (a traced index) on its batch: cross-entropy over its own labels (the head is
    padded to the largest label count), squared error for a regression task."""
    num_labels = jnp.asarray([t.num_labels for t in tasks])[task]
    regression = jnp.asarray([t.is_regression for t in tasks])[task]
    logits = jnp.where(jnp.arange(outputs.shape[-1])[None, :] < num_labels, outputs, -1e9)
    labels = batch["labels"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))
    per = jnp.where(regression, jnp.square(outputs[:, 0] - labels), ce)
    w = batch["weights"]
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def teacher_weight(step: int, total: int, weight: float, anneal: bool) -> float:
    """The distillation weight at fine-tuning step ``step`` of ``total``: ``weight`` throughout, or with teacher
    annealing falling linearly from ``weight`` at the first step to 0 at the last."""
    if not anneal:
        return float(weight)
    return float(weight) * (1.0 - step / max(total - 1, 1))


def single_task_distillation(tasks: Sequence[GlueTask], outputs: jax.Array, teacher: jax.Array, batch, task,
                             temperature: float) -> jax.Array:
    """Mean distillation loss of task ``task`` (a traced index) on its batch against the teacher's outputs [B, C]:
    temperature^2 x KL(softmax(teacher / T) || softmax(outputs / T)) over the task's own labels, or the squared
    difference of the two predictions for a regression task. At T = 1, (1 - w) x task loss + w x this is the
    cross-entropy against the mixed target (1 - w) x label + w x teacher probabilities up to a constant: the
    teacher-annealing objective of Clark et al. 2019 (BAM!)."""
    num_labels = jnp.asarray([t.num_labels for t in tasks])[task]
    regression = jnp.asarray([t.is_regression for t in tasks])[task]
    per = distillation_per_example(outputs, teacher, num_labels, regression, temperature)
    w = batch["weights"]
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def make_budget_step(model: MultiTaskModel, tasks: Sequence[GlueTask], tx: optax.GradientTransformation, *,
                     max_grad_norm: float = 1.0, own_lr_scale: float = 1.0, distill_temperature: float | None = None):
    """step(state, batch [B, L], task, branch_point, lr, base_rng[, distill_weight]) -> (state, loss): one AdamW
    step of task ``task``'s discrete model (branch point b) on its batch, at learning rate ``lr``, dropout drawn from
    fold_in(base_rng, step); own units and heads at ``own_lr_scale`` x lr. Task, branch point, learning rate and key
    are data: one compiled step per padded length serves every tree and every seed.

    With ``distill_temperature`` set the batch also holds "teacher" [B, C] (the task's teacher's outputs on those
    rows) and the objective is (1 - w) x task loss + w x ``single_task_distillation`` at w = ``distill_weight`` (data:
    a schedule, such as teacher annealing, costs no recompilation). The returned loss is the task loss alone."""
    units = model.cfg.num_units
    clip = optax.clip_by_global_norm(max_grad_norm)
    if distill_temperature is not None and not distill_temperature > 0:
        raise ConfigError(f"distill_temperature must be > 0, got {distill_temperature}")

    def loss_fn(view, batch, b, task, rng, distill_weight):
        outputs = model.view_forward(view, b, batch, deterministic=False, rng=rng)
        loss = single_task_loss(tasks, outputs, batch, task)
        if distill_temperature is None:
            return loss, loss
        distill = single_task_distillation(tasks, outputs, batch["teacher"], batch, task, distill_temperature)
        return (1.0 - distill_weight) * loss + distill_weight * distill, loss

    def step(state: BudgetState, batch, task, b, lr, base_rng, distill_weight=0.0):
        rng = jax.random.fold_in(base_rng, state.step)
        view = model.task_view(state.params, task)
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(view, batch, b, task, rng, distill_weight)
        grads, _ = clip.update(grads, clip.init(grads))
        # shared part: embeddings and trunk (trunk units at or past b are not used by this task)
        uses_trunk = jnp.arange(units) < b
        shared = _shared(view)
        updates, shared_opt = tx.update(_shared(grads), state.shared_opt, shared)
        new_shared = jax.tree.map(lambda p, u: p - lr * u, shared, updates)
        new_shared = _select_units(new_shared, shared, uses_trunk, "trunk")
        shared_opt = _select_units(shared_opt, state.shared_opt, uses_trunk, "trunk")
        # the task's own part: own units b..U-1 and its head, with its own slice of the stacked moments
        uses_own = jnp.arange(units) >= b
        mine = {"own": view["own"], "head": view["head"]}
        my_opt = jax.tree.map(lambda x: x[task], state.task_opt)
        updates, new_opt = tx.update({"own": grads["own"], "head": grads["head"]}, my_opt, mine)
        new_mine = jax.tree.map(lambda p, u: p - lr * own_lr_scale * u, mine, updates)
        new_mine = _select_units(new_mine, mine, uses_own, "own")
        new_opt = _select_units(new_opt, my_opt, uses_own, "own")
        put = lambda full, new: jax.tree.map(lambda f, n: f.at[task].set(n), full, new)
        params = {"embeddings": new_shared["embeddings"], "trunk": new_shared["trunk"],
                  "own": put(state.params["own"], new_mine["own"]),
                  "heads": put(state.params["heads"], new_mine["head"])}
        return BudgetState(state.step + 1, params, shared_opt, put(state.task_opt, new_opt)), loss

    return jax.jit(step, donate_argnums=(0,))
