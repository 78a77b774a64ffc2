"""A planted branch-point problem on a real (tiny, random) BERT, with a known answer: for tests of the logits'
search and for comparing its gradient estimators (experiments/gradient/gradient_estimators.py).

Two teachers share embeddings: A (units a_u, head h_A) and B (units b_u, head h_B). Task 0's labels are A's
predictions, task 1's are B's, on random token sequences. The multi-task model's trunk holds A's units, task 0's own
units are A's plus heavy noise, task 1's own units are B's. So task 0 *gains* from sharing (b_0 = U runs A exactly)
and task 1 *loses* (b_1 = 0 runs B exactly; every trunk unit it takes is A's). With the weights frozen, every tree's
loss on a fixed evaluation set is computed exactly, and the best tree under an energy target is found by
enumeration: the answer the search must reach.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax import cost, hw
from mgen_jax.data.glue import get_task
from mgen_jax.model.bert import BertConfig, BertEncoder
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.budget import single_task_loss
from mgen_jax.search.constrained import tree_ratio
from mgen_jax.search.steps import EnergyModel


class Planted(NamedTuple):
    model: MultiTaskModel
    tasks: tuple  # two 2-class GlueTasks (their heads and losses)
    params: Any  # the multi-task parameter tree (frozen)
    energy: EnergyModel
    batch: Any  # batch(task, seed, rows) -> a batch [rows, L] of random tokens with the teacher's labels
    losses: np.ndarray  # [T, U + 1] every task's exact loss at every branch point on the evaluation set


def _scaled_head(head: Any, scale: float) -> Any:
    """A head whose classifier is ``scale`` x larger: confident teachers, so that labels are far from chance."""
    return {"pooler": head["pooler"], "classifier": jax.tree.map(lambda x: scale * x, head["classifier"])}


def planted_problem(*, layers: int = 2, hidden: int = 32, length: int = 16, vocab: int = 200, noise: float = 0.5,
                    init_scale: float = 0.3, head_scale: float = 8.0, eval_rows: int = 512, seed: int = 0) -> Planted:
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=2,
                     intermediate_size=2 * hidden, max_position=length, hidden_dropout=0.0, attention_dropout=0.0,
                     initializer_range=init_scale)
    ids = jnp.ones((1, 4), jnp.int32)
    init = lambda k: BertEncoder(cfg).init(jax.random.PRNGKey(k), ids, ids)["params"]
    a, b = init(seed), init(seed + 1)
    b = dict(b) | {"embeddings": a["embeddings"]}  # the teachers share embeddings (the trunk's are always shared)
    keys = jax.random.split(jax.random.PRNGKey(seed + 2), 64)
    leaves, tree = jax.tree.flatten(a)
    a_noisy = jax.tree.unflatten(tree, [x + noise * jnp.std(x) * jax.random.normal(k, x.shape) if x.ndim > 1 else x
                                        for x, k in zip(leaves, keys)])
    a_noisy = dict(a_noisy) | {"embeddings": a["embeddings"]}
    tasks = (get_task("SST-2"), get_task("RTE"))
    model = MultiTaskModel(cfg, (2, 2), pooling="cls")
    heads = [_scaled_head(model.init_head(jax.random.PRNGKey(seed + 10 + t)), head_scale) for t in range(2)]
    units = cfg.num_units
    teacher = jnp.asarray([units, 0], jnp.int32)  # task 0 on A, task 1 on B: exactly the teachers
    forward = jax.jit(lambda p, batch, t, bp: model.task_forward(p, t, bp, batch))

    def inputs(task: int, batch_seed: int, rows: int) -> dict:
        rng = np.random.default_rng([seed, task, batch_seed])
        tokens = jnp.asarray(rng.integers(5, vocab, (rows, length)), jnp.int32)
        return {"input_ids": tokens, "token_type_ids": jnp.zeros_like(tokens), "attention_mask": jnp.ones_like(tokens),
                "weights": jnp.ones((rows,), jnp.float32)}

    # balanced labels: each teacher's class-1 bias moved so that its median logit difference is 0
    params = model.from_encoders(a, [a_noisy, b], heads)
    for t in range(2):
        out = forward(params, inputs(t, 20_000, 1024), t, teacher[t])
        shift = float(jnp.median(out[:, 1] - out[:, 0]))
        heads[t]["classifier"]["bias"] = heads[t]["classifier"]["bias"].at[1].add(-shift)
    params = model.from_encoders(a, [a_noisy, b], heads)

    def batch(task: int, batch_seed: int, rows: int) -> dict:
        out = inputs(task, batch_seed, rows)
        logits = forward(params, out, task, teacher[task])
        return out | {"labels": jnp.argmax(logits[:, :2], axis=-1).astype(jnp.float32)}

    loss_at = jax.jit(lambda p, batch, t, bp: single_task_loss(tasks, model.task_forward(p, t, bp, batch), batch, t))
    losses = np.zeros((2, units + 1))
    for t in range(2):
        held = batch(t, 10_000, eval_rows)  # a fixed evaluation set, apart from the search's batches
        losses[t] = [float(loss_at(params, held, t, bp)) for bp in range(units + 1)]
    arch = hw.arch_from_hf_config(cfg.to_hf(), name="planted")
    tables = cost.build_tables(hw.load_spec("isaac"), arch, (2, 2))
    workload = cost.fixed_workload(2, tokens=length)
    zero = jnp.zeros((2, units))
    energy = EnergyModel(arch, tables, workload, float(cost.expected_energy(zero, tables, workload).total_j))
    return Planted(model, tasks, params, energy, batch, losses)


def best_tree(planted: Planted, target: float, weights: Sequence[float] | None = None) -> tuple[list[int], float]:
    """The tree of least sum_t w_t loss_t(b_t) (exact losses on the evaluation set) whose energy ratio is at most
    ``target``, by enumeration; w_t = 1 / the task's mean loss over branch points (the search's normalize_losses)
    unless given. Returns (tree, its ratio)."""
    losses = planted.losses
    w = np.asarray(weights if weights is not None else 1.0 / losses.mean(axis=1))
    e = planted.energy
    best = None
    for tree in itertools.product(range(losses.shape[1]), repeat=losses.shape[0]):
        ratio = tree_ratio(tree, e.tables, e.workload, e.independent_j)
        value = float(sum(w[t] * losses[t, b] for t, b in enumerate(tree)))
        if ratio <= target * (1 + 1e-6) and (best is None or value < best[0] - 1e-12):
            best = (value, list(tree), ratio)
    return best[1], best[2]
