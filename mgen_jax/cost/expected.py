"""The differentiable cost model (DESIGN.md section 4): expected energy per request of a relaxed multi-task model.

Everything here is a pure JAX function of arrays, composable with jax.jit, jax.vmap and jax.grad. Inputs:

- ``p_tu`` [T, U]: p[t, u] = P(b_t > u) (0-based units), the probability that task t runs unit u on the shared
  trunk (DESIGN.md's P(b_t >= u) with 1-based units). ``branch_probs`` makes it from branch-point logits.
- ``tables`` (``CostTables``): action counts of every part as a polynomial in the token count n, and the energy of
  every action; built once from a spec and an architecture by ``build_tables``.
- ``workload`` (``Workload``): per task set S its probability, E[n | S] and E[n^2 | S].

For a request with task set S, trunk unit u runs once if any task of S uses it (E = 1 - prod_{t in S}(1 - p[t,u]),
tasks independent) and task t's own unit u runs with probability 1 - p[t,u]. Unit and head costs are linear in
E[n] and E[n^2], so the expectation over lengths is exact.

Base + compressed delta copies (hw/delta.py, ``build_tables(..., compression=plan)``): task t's own copy of unit u,
when the plan compresses it, costs the unit's counts plus its delta passes (``DeltaTables``) and stores its kept
blocks instead of the unit; its base is stored once: the pretrained unit u if some own copy in use needs it
(1 - prod_t (1 - (1 - p[t,u]) pre[t,u])), the trunk's unit u if a task runs the trunk there or an own copy in use
needs it as its base (1 - prod_t (1 - p[t,u]) (1 - trunk[t,u]))). With one-hot p this is the simulator's footprint.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.delta import BASE_KINDS, DeltaPlan
from mgen_jax.hw.density import InputDensities
from mgen_jax.hw.energy import ACTIONS, COMPONENTS, action_component_matrix, energy_per_action_pj
from mgen_jax.hw.ops import model_parts, part_coefficients, part_crossbars, part_latency_coefficients, plan_delta_ops
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.workload.trace import Trace, trace_moments


class DeltaTables(NamedTuple):
    """Base + compressed delta own copies (hw/delta.py) of a T-task model: own_delta_coef [T, U, 3, A], the counts
    of the delta passes of task t's own copy of unit u (0 where it is not compressed); own_crossbars [T, U], what
    that copy stores (its kept blocks if compressed, else the unit); pretrained_base and trunk_base [T, U], 0/1: the
    copy is compressed over the pretrained or the trunk's unit."""

    own_delta_coef: jax.Array
    own_crossbars: jax.Array
    pretrained_base: jax.Array
    trunk_base: jax.Array


class CostTables(NamedTuple):
    """Action-count coefficients (powers n^0, n^1, n^2) and per-action energy; a pytree of arrays.

    unit_coef [U, 3, A], head_coef [T, 3, A], embed_coef [3, A]: action counts of one run of the part.
    energy_pj [A]: energy per action in pJ (differentiable, e.g. for hardware sensitivity studies).
    unit_crossbars [U], head_crossbars [T]: crossbars per copy.
    unit_latency_ns [U, 2], head_latency_ns [T, 2]: latency estimate l0 + l1 * n in ns.
    deltas: base + compressed delta own copies (``DeltaTables``), or None (no copy compressed).
    """

    unit_coef: jax.Array
    head_coef: jax.Array
    embed_coef: jax.Array
    energy_pj: jax.Array
    unit_crossbars: jax.Array
    head_crossbars: jax.Array
    unit_latency_ns: jax.Array
    head_latency_ns: jax.Array
    deltas: DeltaTables | None = None


class Workload(NamedTuple):
    """Workload statistics per distinct task set S: subset_mask [M, T] (0/1), prob [M], mean_tokens [M] = E[n|S],
    mean_tokens_sq [M] = E[n^2|S]."""

    subset_mask: jax.Array
    prob: jax.Array
    mean_tokens: jax.Array
    mean_tokens_sq: jax.Array


class EnergyEstimate(NamedTuple):
    """Expected energy per request in J: total, per component [C] (order of COMPONENTS), per action [A]."""

    total_j: jax.Array
    by_component_j: jax.Array
    by_action_j: jax.Array


def build_tables(
    spec: HardwareSpec, arch: BertArch, num_labels: Sequence[int], *, input_densities: InputDensities | None = None,
    dtype=jnp.float32, compression: DeltaPlan | None = None,
) -> CostTables:
    """Tables for a T-task model on ``arch`` (T = len(num_labels), head outputs per task) mapped on ``spec``; with
    data-dependent inputs, every matrix's drives follow ``input_densities`` (default: the spec's density); with
    ``compression``, every own copy it lists is a base + delta copy (its branch points are not used: p decides)."""
    labels = tuple(int(c) for c in num_labels)
    if not labels:
        raise ConfigError("build_tables: need at least one task (num_labels is empty)")
    parts = model_parts(spec, arch, labels, input_densities)
    as_array = lambda x: jnp.asarray(np.asarray(x, dtype=np.float64), dtype=dtype)
    deltas = None
    if compression is not None:
        t_count, u_count = len(labels), arch.num_units
        coef = np.zeros((t_count, u_count, 3, len(ACTIONS)))
        own = np.tile([float(part_crossbars(spec, ops)) for ops in parts.units], (t_count, 1))
        kinds = {kind: np.zeros((t_count, u_count)) for kind in BASE_KINDS}
        for (t, u), ops in plan_delta_ops(spec, parts, compression).items():
            coef[t, u] = part_coefficients(spec, ops)
            own[t, u] = part_crossbars(spec, ops)
            kinds[compression.units[(t, u)].base][t, u] = 1.0
        deltas = DeltaTables(as_array(coef), as_array(own), as_array(kinds["pretrained"]), as_array(kinds["trunk"]))
    return CostTables(
        unit_coef=as_array([part_coefficients(spec, ops) for ops in parts.units]),
        head_coef=as_array([part_coefficients(spec, ops) for ops in parts.heads]),
        embed_coef=as_array(part_coefficients(spec, parts.embedding)),
        energy_pj=as_array(energy_per_action_pj(spec)),
        unit_crossbars=as_array([part_crossbars(spec, ops) for ops in parts.units]),
        head_crossbars=as_array([part_crossbars(spec, ops) for ops in parts.heads]),
        unit_latency_ns=as_array([part_latency_coefficients(spec, ops) for ops in parts.units]),
        head_latency_ns=as_array([part_latency_coefficients(spec, ops) for ops in parts.heads]),
        deltas=deltas,
    )


def fixed_workload(num_tasks: int, tokens: float, *, dtype=jnp.float32) -> Workload:
    """Every request has ``tokens`` tokens and needs every task."""
    return Workload(
        subset_mask=jnp.ones((1, num_tasks), dtype=dtype),
        prob=jnp.ones((1,), dtype=dtype),
        mean_tokens=jnp.full((1,), tokens, dtype=dtype),
        mean_tokens_sq=jnp.full((1,), float(tokens) ** 2, dtype=dtype),
    )


def workload_from_trace(trace: Trace, *, dtype=jnp.float32) -> Workload:
    """The exact statistics of a trace: the cost model then equals the simulator's mean over its requests."""
    m = trace_moments(trace)
    return Workload(*(jnp.asarray(x, dtype=dtype) for x in (m.subset_mask, m.prob, m.mean_tokens, m.mean_tokens_sq)))


def workload_from_lengths(
    tokens: np.ndarray, subsets: dict[tuple[int, ...], float], num_tasks: int, *, dtype=jnp.float32
) -> Workload:
    """Lengths independent of the task set: every subset S (tuple of task indices, with its probability) shares the
    moments of ``tokens``."""
    n = np.asarray(tokens, dtype=np.float64)
    mask = np.zeros((len(subsets), num_tasks))
    for i, key in enumerate(subsets):
        mask[i, list(key)] = 1.0
    prob = np.asarray(list(subsets.values()), dtype=np.float64)
    return Workload(
        jnp.asarray(mask, dtype=dtype),
        jnp.asarray(prob / prob.sum(), dtype=dtype),
        jnp.full((len(subsets),), n.mean(), dtype=dtype),
        jnp.full((len(subsets),), (n * n).mean(), dtype=dtype),
    )


def branch_probs(logits_tb: jax.Array) -> jax.Array:
    """p[t, u] = P(b_t > u) from branch-point logits [T, U+1] (softmax over b_t in 0..U) -> [T, U]."""
    return branch_probs_from_dist(jax.nn.softmax(logits_tb, axis=-1))


def branch_probs_from_dist(q_tb: jax.Array) -> jax.Array:
    """p[t, u] = sum_{b > u} q[t, b] from a distribution (or a one-hot sample) over b_t in 0..U [T, U+1] -> [T, U]."""
    num_choices = q_tb.shape[-1]
    # above[b, u] = 1 if b > u (a matmul vectorizes better than a reversed cumsum).
    above = jnp.asarray(np.arange(num_choices)[:, None] > np.arange(num_choices - 1)[None, :], dtype=q_tb.dtype)
    return q_tb @ above


def onehot_probs(branch_points: Sequence[int], num_units: int, *, dtype=jnp.float32) -> jax.Array:
    """p for a discrete model: p[t, u] = 1 if u < b_t else 0."""
    b = np.asarray(branch_points)
    if b.ndim != 1 or np.any(b < 0) or np.any(b > num_units):
        raise ConfigError(f"branch points must be integers in 0..{num_units}, got {list(branch_points)}")
    return jnp.asarray(np.arange(num_units)[None, :] < b[:, None], dtype=dtype)


def _powers(workload: Workload) -> jax.Array:
    """[M, 3] = (1, E[n|S], E[n^2|S])."""
    return jnp.stack([jnp.ones_like(workload.mean_tokens), workload.mean_tokens, workload.mean_tokens_sq], axis=-1)


def expected_unit_runs(p_tu: jax.Array, workload: Workload) -> jax.Array:
    """[M, U] expected number of runs of unit u (trunk + own copies) for a request with task set S_m."""
    mask = workload.subset_mask[:, :, None]  # [M, T, 1]
    trunk = 1.0 - jnp.prod(1.0 - mask * p_tu[None], axis=1)
    own = jnp.sum(mask * (1.0 - p_tu[None]), axis=1)
    return trunk + own


def expected_counts(p_tu: jax.Array, tables: CostTables, workload: Workload) -> jax.Array:
    """[A] expected action counts per request."""
    _check_shapes(p_tu, tables, workload)
    powers = _powers(workload)  # [M, 3]
    runs = expected_unit_runs(p_tu, workload)  # [M, U]
    unit_counts = jnp.einsum("mk,uka->mua", powers, tables.unit_coef)  # [M, U, A]
    head_counts = jnp.einsum("mk,tka->mta", powers, tables.head_coef)  # [M, T, A]
    embed_counts = powers @ tables.embed_coef  # [M, A]
    per_subset = (
        jnp.einsum("mu,mua->ma", runs, unit_counts)
        + jnp.einsum("mt,mta->ma", workload.subset_mask, head_counts)
        + embed_counts
    )
    if tables.deltas is not None:  # the delta passes of the compressed own copies that run
        delta_counts = jnp.einsum("mk,tuka->mtua", powers, tables.deltas.own_delta_coef)
        per_subset = per_subset + jnp.einsum("mt,tu,mtua->ma", workload.subset_mask, 1.0 - p_tu, delta_counts)
    return workload.prob @ per_subset


def expected_energy(p_tu: jax.Array, tables: CostTables, workload: Workload) -> EnergyEstimate:
    """Expected energy per request (J), with its breakdown by component and by action.

    >>> import jax.numpy as jnp
    >>> from mgen_jax import hw, cost
    >>> tables = cost.build_tables(hw.load_spec("isaac"), hw.load_arch("minilm-l6"), num_labels=(2, 2))
    >>> p = cost.onehot_probs([12, 12], num_units=12)          # both tasks share the whole encoder
    >>> e = cost.expected_energy(p, tables, cost.fixed_workload(2, tokens=32))
    >>> round(float(e.total_j) * 1e6, 1)                        # uJ per request
    197.8
    """
    by_action_j = expected_counts(p_tu, tables, workload) * tables.energy_pj * 1e-12
    by_component_j = by_action_j @ jnp.asarray(action_component_matrix(), dtype=by_action_j.dtype)
    return EnergyEstimate(jnp.sum(by_action_j), by_component_j, by_action_j)


def expected_crossbars(p_tu: jax.Array, tables: CostTables) -> jax.Array:
    """Expected crossbars to store the model: trunk copy of u if any task uses it, own copy where a task does not
    (with compressed copies: their kept blocks, and each base once, module docstring)."""
    trunk = 1.0 - jnp.prod(1.0 - p_tu, axis=0)
    own = jnp.sum(1.0 - p_tu, axis=0)
    if tables.deltas is None:
        return jnp.sum((trunk + own) * tables.unit_crossbars) + jnp.sum(tables.head_crossbars)
    d = tables.deltas
    trunk = 1.0 - jnp.prod((1.0 - p_tu) * (1.0 - d.trunk_base), axis=0)
    pretrained = 1.0 - jnp.prod(1.0 - (1.0 - p_tu) * d.pretrained_base, axis=0)
    own = jnp.sum((1.0 - p_tu) * d.own_crossbars, axis=0)
    return jnp.sum((trunk + pretrained) * tables.unit_crossbars + own) + jnp.sum(tables.head_crossbars)


def expected_latency_s(tables: CostTables, workload: Workload, p_tu: jax.Array | None = None) -> jax.Array:
    """Latency estimate per request (s): every unit on a task's path, then its head; tasks' branches run in parallel
    (the slowest head counts). Independent of p, unless copies are compressed (then ``p_tu`` is needed): a base
    time-shared by k passes of a request streams k x n tokens (the most used weight set of each unit counts; with
    relaxed p, k is its expectation, exact for one-hot p)."""
    if tables.deltas is None:
        l_units = jnp.sum(tables.unit_latency_ns[:, 0]) + jnp.sum(tables.unit_latency_ns[:, 1]) * workload.mean_tokens
    else:
        if p_tu is None:
            raise ConfigError("expected_latency_s: compressed copies make the latency depend on p; pass p_tu")
        d, mask = tables.deltas, workload.subset_mask[:, :, None]  # [M, T, 1]
        own = mask * (1.0 - p_tu[None])  # [M, T, U]
        pretrained = jnp.sum(own * d.pretrained_base[None], axis=1)
        trunk = 1.0 - jnp.prod(1.0 - mask * p_tu[None], axis=1) + jnp.sum(own * d.trunk_base[None], axis=1)
        passes = jnp.maximum(1.0, jnp.maximum(pretrained, trunk))  # [M, U]
        l_units = jnp.sum(tables.unit_latency_ns[:, 0]) + (
            passes @ tables.unit_latency_ns[:, 1]) * workload.mean_tokens
    head = tables.head_latency_ns[None, :, 0] + tables.head_latency_ns[None, :, 1] * workload.mean_tokens[:, None]
    slowest = jnp.max(jnp.where(workload.subset_mask > 0, head, -jnp.inf), axis=1)
    return workload.prob @ (l_units + slowest) * 1e-9


def component_dict(values_c: jax.Array) -> dict[str, float]:
    return {c: float(v) for c, v in zip(COMPONENTS, np.asarray(values_c))}


def action_dict(values_a: jax.Array) -> dict[str, float]:
    return {a: float(v) for a, v in zip(ACTIONS, np.asarray(values_a))}


def _check_shapes(p_tu: jax.Array, tables: CostTables, workload: Workload) -> None:
    t, u = tables.head_coef.shape[0], tables.unit_coef.shape[0]
    if p_tu.shape != (t, u):
        raise ConfigError(
            f"cost model: p has shape {tuple(p_tu.shape)} but the tables describe {t} tasks x {u} units "
            "(the model's architecture and the cost model disagree)"
        )
    if workload.subset_mask.shape[-1] != t:
        raise ConfigError(f"cost model: workload has {workload.subset_mask.shape[-1]} tasks, tables have {t}")
