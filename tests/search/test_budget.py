"""Equal-budget fine-tuning (search/budget.py) on a tiny random BERT: the interleaving spends every task's steps in
proportion, a step trains exactly what its task uses (lazy AdamW), and it equals plain AdamW on that part."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError
from mgen_jax.model.bert import BertConfig, BertEncoder
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.budget import (
    BudgetState, budget_optimizer, init_budget_state, interleave, make_budget_step, single_task_distillation,
    single_task_loss, task_steps, teacher_weight,
)
from mgen_jax.train.optim import decay_mask

TINY = BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48, max_position=32)
TASKS = [get_task("SST-2"), get_task("STS-B")]


def _params(seed=0):
    model = MultiTaskModel(TINY, [t.num_labels for t in TASKS])
    init = jax.jit(lambda key: BertEncoder(TINY).init(key, jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32)))
    enc = lambda s: init(jax.random.PRNGKey(s))["params"]
    heads = [model.init_head(jax.random.PRNGKey(10 + i)) for i in range(len(TASKS))]
    return model, model.from_encoders(enc(seed), [enc(seed + 1), enc(seed + 2)], heads)


def _batch(task, seed=0, b=4, length=6):
    rng = np.random.default_rng(seed)
    mask = np.ones((b, length), np.int32)
    mask[1, 4:] = 0
    labels = rng.integers(0, 2, b).astype(np.float32) if task == 0 else rng.random(b).astype(np.float32) * 5
    return {"input_ids": jnp.asarray(rng.integers(1, 64, (b, length)), jnp.int32),
            "token_type_ids": jnp.zeros((b, length), jnp.int32), "attention_mask": jnp.asarray(mask),
            "labels": jnp.asarray(labels), "weights": jnp.ones(b)}


def test_interleave_spends_steps_in_proportion():
    steps = [1250, 723, 413, 647, 351]  # glue5's independent step counts: tasks 3.6x apart
    order = interleave(steps)
    assert len(order) == sum(steps)
    assert np.bincount(order).tolist() == steps
    counts = np.cumsum(np.eye(5, dtype=np.int64)[order], axis=0)  # steps of each task after every prefix
    fractions = counts / np.asarray(steps)
    assert np.max(fractions.max(1) - fractions.min(1)) <= max(1 / s for s in steps) + 1e-12
    np.testing.assert_array_equal(order, interleave(steps))  # deterministic
    idx = task_steps(order, 5)
    for t in range(5):
        assert idx[order == t].tolist() == list(range(steps[t]))
    assert interleave([0, 3]).tolist() == [1, 1, 1]
    with pytest.raises(ConfigError):
        interleave([0, 0])


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("b", [0, 2, 4])
def test_a_step_trains_exactly_what_its_task_uses(b):
    model, params = _params()
    tx = budget_optimizer(0.01)
    step = make_budget_step(model, TASKS, tx)
    state = init_budget_state(params, tx)
    before = _flat(state.params), _flat(state.task_opt), _flat(state.shared_opt)
    state, loss = step(state, _batch(0), jnp.int32(0), jnp.int32(b), jnp.float32(1e-3), jax.random.PRNGKey(0))
    assert np.isfinite(float(loss))
    after = _flat(state.params)
    moved = {k for k in after if not np.array_equal(after[k], before[0][k])}

    def used(key):
        if key.startswith("['embeddings']"):
            return True
        if key.startswith("['trunk']"):
            return int(key.split("unit_")[1][0]) < b
        if key.startswith("['own']"):
            return int(key.split("unit_")[1][0]) >= b  # task 0's rows only: checked below
        return key.startswith("['heads']")

    for key in after:
        assert (key in moved) == used(key), key
    for key, x in after.items():  # task 1's rows of the stacked own units and heads never move
        if key.startswith("['own']") or key.startswith("['heads']"):
            np.testing.assert_array_equal(x[1], before[0][key][1])
    task_opt = _flat(state.task_opt)
    for key, x in task_opt.items():  # nor do its moments and its step count
        np.testing.assert_array_equal(x[1], before[1][key][1])
    counts = [x for key, x in task_opt.items() if key.endswith(".count")]
    assert [c.tolist() for c in counts] == [[1, 0]]
    shared_opt = _flat(state.shared_opt)
    for key, x in shared_opt.items():  # unused trunk units keep their moments
        if "['trunk']" in key and int(key.split("unit_")[1][0]) >= b:
            np.testing.assert_array_equal(x, before[2][key])


def test_first_step_is_plain_adamw_on_the_used_parameters():
    """From fresh moments, one step equals optax's clip + AdamW on the parameters task 1 uses at b = 2 (STS-B,
    regression), with decay masked as in independent fine-tuning."""
    model, params = _params(3)
    b, lr = 2, 3e-3
    tx = budget_optimizer(0.01)
    step = make_budget_step(model, TASKS, tx, max_grad_norm=0.5)
    batch = _batch(1, seed=4)
    new, _ = step(init_budget_state(params, tx), batch, jnp.int32(1), jnp.int32(b), jnp.float32(lr),
                  jax.random.PRNGKey(5))

    view = model.task_view(params, 1)
    rng = jax.random.fold_in(jax.random.PRNGKey(5), 0)
    loss = lambda v: single_task_loss(TASKS, model.view_forward(v, b, batch, deterministic=False, rng=rng), batch, 1)
    grads = jax.jit(jax.grad(loss))(view)
    used = lambda tree: {"embeddings": tree["embeddings"], "trunk": {f"unit_{u}": tree["trunk"][f"unit_{u}"]
                                                                     for u in range(b)},
                         "own": {f"unit_{u}": tree["own"][f"unit_{u}"] for u in range(b, 4)}, "head": tree["head"]}
    ref_tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(lr, weight_decay=0.01, mask=decay_mask))

    @jax.jit
    def reference(grads, view):
        updates, _ = ref_tx.update(grads, ref_tx.init(view), view)
        return optax.apply_updates(view, updates)

    expected = reference(used(grads), used(view))
    got = used(model.task_view(new.params, 1))
    # Adam's first step is about lr x sign(g): a gradient element near eps may round differently in the compiled
    # step, so the tolerance is 1e-3 of the step size (a missing or doubled update is off by the whole lr)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-3 * lr, err_msg=jax.tree_util.keystr(path))


def test_distillation_loss_by_hand_and_teacher_annealing_target():
    """single_task_distillation: zero when the student agrees with its teacher, T^2 x KL by hand for a
    classification task, the squared difference for regression; and (1 - w) x task loss + w x distillation at T = 1
    has the gradient of cross-entropy against the mixed target (1 - w) x one-hot + w x teacher probabilities (BAM)."""
    outputs = jnp.asarray([[1.0, -0.5], [0.2, 0.3], [2.0, 0.0]])
    teacher = jnp.asarray([[0.5, 0.5], [-1.0, 1.0], [0.0, 0.0]])
    batch = {"labels": jnp.asarray([1.0, 0.0, 1.0]), "weights": jnp.asarray([1.0, 1.0, 0.0])}  # row 3: padding
    assert float(single_task_distillation(TASKS, outputs, outputs, batch, 0, 2.0)) == pytest.approx(0.0, abs=1e-7)
    p = np.exp(np.asarray(teacher) / 2) / np.exp(np.asarray(teacher) / 2).sum(1, keepdims=True)
    q = np.exp(np.asarray(outputs) / 2) / np.exp(np.asarray(outputs) / 2).sum(1, keepdims=True)
    kl = (p * (np.log(p) - np.log(q))).sum(1)
    assert float(single_task_distillation(TASKS, outputs, teacher, batch, 0, 2.0)) == pytest.approx(
        4 * kl[:2].mean(), rel=1e-5)
    assert float(single_task_distillation(TASKS, outputs, teacher, batch, 1, 1.0)) == pytest.approx(
        ((np.asarray(outputs)[:2, 0] - np.asarray(teacher)[:2, 0]) ** 2).mean(), rel=1e-6)

    w = 0.3
    mixed = lambda o: (1 - w) * single_task_loss(TASKS, o, batch, 0) + w * single_task_distillation(
        TASKS, o, teacher, batch, 0, 1.0)
    target = (1 - w) * jax.nn.one_hot(batch["labels"].astype(jnp.int32), 2) + w * jax.nn.softmax(teacher, axis=-1)
    soft_ce = lambda o: jnp.sum(optax.softmax_cross_entropy(o, target) * batch["weights"]) / 2
    np.testing.assert_allclose(jax.grad(mixed)(outputs), jax.grad(soft_ce)(outputs), rtol=1e-5, atol=1e-7)


def test_teacher_weight_schedule():
    assert [teacher_weight(k, 5, 0.5, False) for k in range(5)] == [0.5] * 5
    assert [teacher_weight(k, 5, 1.0, True) for k in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert teacher_weight(0, 1, 1.0, True) == 1.0


def test_budget_step_with_teacher_at_weight_zero_is_the_plain_step_and_weight_one_follows_the_teacher():
    model, params = _params(1)
    tx = budget_optimizer(0.01)
    plain = make_budget_step(model, TASKS, tx)
    distill = make_budget_step(model, TASKS, tx, distill_temperature=1.0)
    batch = _batch(0, seed=2)
    with_teacher = dict(batch, teacher=jnp.asarray([[3.0, -3.0]] * 4))  # a teacher sure of class 0 everywhere
    args = (jnp.int32(0), jnp.int32(2), jnp.float32(1e-3), jax.random.PRNGKey(0))
    a, loss_a = plain(init_budget_state(params, tx), batch, *args)
    b, loss_b = distill(init_budget_state(params, tx), with_teacher, *args, jnp.float32(0.0))
    assert float(loss_a) == float(loss_b)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    # weight 1: the gold labels no longer matter, only the teacher (the reported loss stays the task loss)
    flipped = dict(with_teacher, labels=1.0 - batch["labels"])
    c, loss_c = distill(init_budget_state(params, tx), with_teacher, *args, jnp.float32(1.0))
    d, loss_d = distill(init_budget_state(params, tx), flipped, *args, jnp.float32(1.0))
    assert float(loss_c) != float(loss_d)
    for x, y in zip(jax.tree.leaves(c.params), jax.tree.leaves(d.params)):
        np.testing.assert_array_equal(x, y)
    logits = jax.jit(lambda p: model.view_forward(model.task_view(p, 0), 2, batch)[:, :2])
    before = jax.nn.softmax(logits(params))[:, 0]
    after = jax.nn.softmax(logits(c.params))[:, 0]
    assert float(after.mean()) > float(before.mean())  # moved toward the teacher's class


# ----- the step as it was before it was made as cheap as an independent step (commit 57cdc3d): the reference -----
def _reference_select_units(new, old, keep_new, group):
    def pick(path, a, b):
        keys = [getattr(k, "key", None) for k in path]
        if group in keys:
            for key in keys[keys.index(group) + 1:]:
                match = re.match(r"unit_(\d+)$", str(key)) if key is not None else None
                if match:
                    return jnp.where(keep_new[int(match.group(1))], a, b)
        return a

    return jax.tree_util.tree_map_with_path(pick, new, old)


def _reference_step(model, tasks, tx, *, max_grad_norm=1.0, own_lr_scale=1.0, distill_temperature=None):
    units = model.cfg.num_units
    clip = optax.clip_by_global_norm(max_grad_norm)
    shared_of = lambda tree: {"embeddings": tree["embeddings"], "trunk": tree["trunk"]}

    def loss_fn(view, batch, b, task, rng, distill_weight):
        outputs = model.view_forward(view, b, batch, deterministic=False, rng=rng)
        loss = single_task_loss(tasks, outputs, batch, task)
        if distill_temperature is None:
            return loss, loss
        distill = single_task_distillation(tasks, outputs, batch["teacher"], batch, task, distill_temperature)
        return (1.0 - distill_weight) * loss + distill_weight * distill, loss

    def step(state, batch, task, b, lr, base_rng, distill_weight=0.0):
        rng = jax.random.fold_in(base_rng, state.step)
        view = model.task_view(state.params, task)
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(view, batch, b, task, rng, distill_weight)
        grads, _ = clip.update(grads, clip.init(grads))
        uses_trunk = jnp.arange(units) < b
        shared = shared_of(view)
        updates, shared_opt = tx.update(shared_of(grads), state.shared_opt, shared)
        new_shared = jax.tree.map(lambda p, u: p - lr * u, shared, updates)
        new_shared = _reference_select_units(new_shared, shared, uses_trunk, "trunk")
        shared_opt = _reference_select_units(shared_opt, state.shared_opt, uses_trunk, "trunk")
        uses_own = jnp.arange(units) >= b
        mine = {"own": view["own"], "head": view["head"]}
        my_opt = jax.tree.map(lambda x: x[task], state.task_opt)
        updates, new_opt = tx.update({"own": grads["own"], "head": grads["head"]}, my_opt, mine)
        new_mine = jax.tree.map(lambda p, u: p - lr * own_lr_scale * u, mine, updates)
        new_mine = _reference_select_units(new_mine, mine, uses_own, "own")
        new_opt = _reference_select_units(new_opt, my_opt, uses_own, "own")
        put = lambda full, new: jax.tree.map(lambda f, n: f.at[task].set(n), full, new)
        params = {"embeddings": new_shared["embeddings"], "trunk": new_shared["trunk"],
                  "own": put(state.params["own"], new_mine["own"]),
                  "heads": put(state.params["heads"], new_mine["head"])}
        return BudgetState(state.step + 1, params, shared_opt, put(state.task_opt, new_opt)), loss

    return jax.jit(step)


@pytest.mark.parametrize("options", [{}, {"max_grad_norm": 0.05, "own_lr_scale": 2.0},
                                     {"distill_temperature": 2.0}])
def test_steps_match_the_reference_step(options):
    """Seven steps over both tasks at branch points 0..4 (every unit trained from the trunk and from a task's own
    copy, the clip active or not, distillation on or off) give the reference step's losses, weights, moments and
    step counts: the same numbers up to float rounding (XLA orders a few sums differently)."""
    model, params = _params(5)
    tx = budget_optimizer(0.01)
    ours, ref = make_budget_step(model, TASKS, tx, **options), _reference_step(model, TASKS, tx, **options)
    a, b = init_budget_state(params, tx), init_budget_state(params, tx)
    for k, (task, branch) in enumerate([(0, 2), (1, 0), (0, 4), (1, 3), (0, 1), (1, 2), (1, 4)]):
        batch = _batch(task, seed=k)
        args = [jnp.int32(task), jnp.int32(branch), jnp.float32(1e-3), jax.random.PRNGKey(7)]
        if "distill_temperature" in options:
            batch = dict(batch, teacher=jnp.asarray(np.random.default_rng(k).normal(size=(4, 2)), jnp.float32))
            args.append(jnp.float32(0.3))
        a, loss_a = ours(a, batch, *args)
        b, loss_b = ref(b, batch, *args)
        assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6), k
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert int(a.step) == 7
    for field in ("params", "shared_opt", "task_opt"):
        ours_leaves = jax.tree_util.tree_leaves_with_path(getattr(a, field))
        ref_leaves = jax.tree.leaves(getattr(b, field))
        # per-leaf tolerance: 1e-6 of the largest value of its kind (weights, mu, nu), since a value near zero, such
        # as an attention key bias and its moments (its gradient is zero up to rounding), differs by its rounding;
        # step counts exactly
        kind = lambda path: jax.tree_util.keystr(path[:2]) if field != "params" else ""
        scale = {}
        for (path, _), y in zip(ours_leaves, ref_leaves):
            if np.issubdtype(y.dtype, np.floating):
                scale[kind(path)] = max(scale.get(kind(path), 0.0), float(np.max(np.abs(y))))
        for (path, x), y in zip(ours_leaves, ref_leaves):
            where = field + jax.tree_util.keystr(path)
            if np.issubdtype(y.dtype, np.integer):
                np.testing.assert_array_equal(x, y, err_msg=where)
            else:
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6 * scale[kind(path)], err_msg=where)
    counts = [x.tolist() for p, x in jax.tree_util.tree_leaves_with_path(a.task_opt)
              if jax.tree_util.keystr(p).endswith("count")]
    assert counts == [[3, 4]]
