"""Equal-budget fine-tuning (search/budget.py) on a tiny random BERT: the interleaving spends every task's steps in
proportion, a step trains exactly what its task uses (lazy AdamW), and it equals plain AdamW on that part."""

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
    budget_optimizer, init_budget_state, interleave, make_budget_step, single_task_loss, task_steps,
)
from mgen_jax.train.optim import decay_mask

TINY = BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48, max_position=32)
TASKS = [get_task("SST-2"), get_task("STS-B")]


def _params(seed=0):
    model = MultiTaskModel(TINY, [t.num_labels for t in TASKS])
    enc = lambda s: BertEncoder(TINY).init(jax.random.PRNGKey(s), jnp.ones((1, 4), jnp.int32),
                                           jnp.ones((1, 4), jnp.int32))["params"]
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
    grads = jax.grad(loss)(view)
    used = lambda tree: {"embeddings": tree["embeddings"], "trunk": {f"unit_{u}": tree["trunk"][f"unit_{u}"]
                                                                     for u in range(b)},
                         "own": {f"unit_{u}": tree["own"][f"unit_{u}"] for u in range(b, 4)}, "head": tree["head"]}
    ref_tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(lr, weight_decay=0.01, mask=decay_mask))
    updates, _ = ref_tx.update(used(grads), ref_tx.init(used(view)), used(view))
    expected = optax.apply_updates(used(view), updates)
    got = used(model.task_view(new.params, 1))
    # Adam's first step is about lr x sign(g): a gradient element near eps may round differently in the compiled
    # step, so the tolerance is 1e-3 of the step size (a missing or doubled update is off by the whole lr)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-3 * lr, err_msg=jax.tree_util.keystr(path))
