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

The step costs what an independent step costs (experiments/training_speed/bench_train_step.py): the forward and
backward passes run one copy of each unit (``MultiTaskModel.view_path``), and AdamW updates each unit where it lives,
in place: a trunk unit when b > u, else the task's row of the stacked own unit, each behind a loop of 0 or 1 trips, so
that the copy a step does not train is neither read nor written. Two details keep XLA from adding the work back: the
task's row of a stacked optimizer state is read through a conditional (``_task_row``), because an update in place
whose inputs read the stack it overwrites makes XLA copy the whole stack first; and the compiled step does without
XLA's hoisting of loop-invariant code, which would compute the gated updates outside their loops, every step.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax

from mgen_jax.data.glue import GlueTask
from mgen_jax.errors import ConfigError
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.steps import distillation_per_example
from mgen_jax.train.optim import adamw_direction

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


def _is_part(node) -> bool:
    """A parameter-shaped node of an optimizer state (such as Adam's mu and nu) of the shared or the per-task part."""
    return isinstance(node, dict) and (set(node) == {"embeddings", "trunk"} or set(node) == {"own", "head"})


def _row(tree, task):
    return jax.tree.map(lambda x: lax.dynamic_index_in_dim(x, task, keepdims=False), tree)


def _put_row(tree, rows, task):
    return jax.tree.map(lambda x, r: lax.dynamic_update_index_in_dim(x, r, task, 0), tree, rows)


def _task_row(tree, task, num_tasks: int):
    """Row ``task`` of every array of ``tree`` (a traced index), read through a conditional: its outputs are buffers
    of their own (XLA fuses nothing across a conditional). An update of a stack in place may then read them: had
    it read the stack itself, XLA would copy the stack first."""
    branches = [lambda t, i=i: jax.tree.map(lambda x: x[i], t) for i in range(num_tasks)]
    return lax.switch(task, branches, tree)


def _clip_fn(grads, max_norm: float):
    """optax.clip_by_global_norm as a function of one leaf (the norm is over all of ``grads``), so that each gated
    update clips only the gradients it reads."""
    g_norm = optax.tree.norm(grads)
    trigger = jnp.squeeze(g_norm < max_norm)
    return lambda t: lax.select(trigger, t, (t / g_norm.astype(t.dtype)) * max_norm)


# the gated updates must stay inside their loops of 0 or 1 trips (module docstring)
_COMPILER_OPTIONS = {"xla_disable_hlo_passes": "while-loop-invariant-code-motion"}


def make_budget_step(model: MultiTaskModel, tasks: Sequence[GlueTask], tx: optax.GradientTransformation, *,
                     max_grad_norm: float = 1.0, own_lr_scale: float = 1.0, distill_temperature: float | None = None):
    """step(state, batch [B, L], task, branch_point, lr, base_rng[, distill_weight]) -> (state, loss): one AdamW
    step of task ``task``'s discrete model (branch point b) on its batch, at learning rate ``lr``, dropout drawn from
    fold_in(base_rng, step); own units and heads at ``own_lr_scale`` x lr. Task, branch point, learning rate and key
    are data: one compiled step per padded length serves every tree and every seed.

    With ``distill_temperature`` set the batch also holds "teacher" [B, C] (the task's teacher's outputs on those
    rows) and the objective is (1 - w) x task loss + w x ``single_task_distillation`` at w = ``distill_weight`` (data:
    a schedule, such as teacher annealing, costs no recompilation). The returned loss is the task loss alone."""
    num_tasks = len(tasks)
    keys = [f"unit_{u}" for u in range(model.cfg.num_units)]
    if distill_temperature is not None and not distill_temperature > 0:
        raise ConfigError(f"distill_temperature must be > 0, got {distill_temperature}")

    def loss_fn(path, batch, task, rng, distill_weight):
        outputs = model.path_forward(path, batch, deterministic=False, rng=rng)
        loss = single_task_loss(tasks, outputs, batch, task)
        if distill_temperature is None:
            return loss, loss
        distill = single_task_distillation(tasks, outputs, batch["teacher"], batch, task, distill_temperature)
        return (1.0 - distill_weight) * loss + distill_weight * distill, loss

    def step(state: BudgetState, batch, task, b, lr, base_rng, distill_weight=0.0):
        rng = jax.random.fold_in(base_rng, state.step)
        params = state.params
        view = {"embeddings": params["embeddings"], "trunk": params["trunk"], "own": _row(params["own"], task),
                "head": _row(params["heads"], task)}
        path = model.view_path(view, b)
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(path, batch, task, rng, distill_weight)
        clip = _clip_fn(grads, max_grad_norm)
        # optimizer states as lists of nodes: parameter-shaped ones ({"embeddings", "trunk"} or {"own", "head"},
        # such as Adam's moments) and the rest (step counts); a part's state takes its part of every node
        shared, shared_def = jax.tree.flatten(state.shared_opt, is_leaf=_is_part)
        per_task, task_def = jax.tree.flatten(state.task_opt, is_leaf=_is_part)
        part = lambda nodes, pick: [pick(n) if _is_part(n) else n for n in nodes]

        def adamw(grads, treedef, nodes, p, rate):  # -> new parameters, the new state's nodes
            updates, new = tx.update(jax.tree.map(clip, grads), treedef.unflatten(nodes), p)
            return jax.tree.map(lambda x, u: x - rate * u, p, updates), treedef.flatten_up_to(new)

        own_rate = lr * own_lr_scale
        embeddings, emb_nodes = adamw(grads["embeddings"], shared_def, part(shared, lambda n: n["embeddings"]),
                                      params["embeddings"], lr)
        mine = _task_row(part(per_task, lambda n: n["head"]), task, num_tasks)  # the task's head state and count
        head, head_nodes = adamw(grads["head"], task_def, mine, view["head"], own_rate)
        trunk, own, trunk_nodes, own_nodes = {}, {}, {}, {}
        for u, key in enumerate(keys):
            def trunk_update(_, carry, key=key):
                p, nodes = carry
                return adamw(grads["units"][key], shared_def, nodes, p, lr)

            def own_update(_, carry, key=key):
                stack, nodes = carry
                row = _task_row(nodes, task, num_tasks)
                p, new = adamw(grads["units"][key], task_def, row, _row(stack, task), own_rate)
                return _put_row(stack, p, task), [_put_row(n, r, task) if _is_part(m) else n
                                                  for n, r, m in zip(nodes, new, per_task)]

            trunk_state = part(shared, lambda n: n["trunk"][key])
            trunk[key], trunk_nodes[key] = lax.fori_loop(0, (u < b).astype(jnp.int32), trunk_update,
                                                         (params["trunk"][key], trunk_state))
            own_state = part(per_task, lambda n: n["own"][key])
            own[key], own_nodes[key] = lax.fori_loop(0, (u >= b).astype(jnp.int32), own_update,
                                                     (params["own"][key], own_state))
        new_params = {"embeddings": embeddings, "trunk": trunk, "own": own,
                      "heads": _put_row(params["heads"], head, task)}
        shared_opt = shared_def.unflatten([
            {"embeddings": emb_nodes[i], "trunk": {k: trunk_nodes[k][i] for k in keys}} if _is_part(n)
            else emb_nodes[i] for i, n in enumerate(shared)])  # the shared step count advances every step
        task_opt = task_def.unflatten([
            {"own": {k: own_nodes[k][i] for k in keys}, "head": _put_row(n["head"], head_nodes[i], task)} if _is_part(n)
            else _put_row(n, head_nodes[i], task) for i, n in enumerate(per_task)])  # the task's step count
        return BudgetState(state.step + 1, new_params, shared_opt, task_opt), loss

    return jax.jit(step, donate_argnums=(0,), compiler_options=_COMPILER_OPTIONS)
