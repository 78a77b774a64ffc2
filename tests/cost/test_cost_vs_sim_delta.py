"""cost == simulator for models whose own unit copies are base + compressed delta (hw/delta.py)."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax import cost, hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import DeltaPlan
from mgen_jax.sim import simulate
from mgen_jax.workload import Trace, assign_subsets, fixed_trace


def _sim(spec, arch, plan, trace, labels):
    tree = hw.SharingTree.from_branch_points(list(plan.branch_points), arch.num_units)
    return simulate(spec, arch, tree, trace, num_labels=labels, compression=plan)


@pytest.mark.parametrize("use_jit", [False, True])
def test_fixed_length_random_plans(isaac, minilm, random_plan, use_jit):
    rng = np.random.default_rng(1)
    labels = (2, 3, 1, 2)
    energy = jax.jit(cost.expected_energy) if use_jit else cost.expected_energy
    latency = jax.jit(cost.expected_latency_s) if use_jit else cost.expected_latency_s
    for i in range(8):
        b = [int(x) for x in rng.integers(0, 13, 4)]
        if i == 0:
            b = [0, 0, 0, 0]  # independent models over one base
        plan = random_plan(isaac, minilm, b, seed=i)
        tables = cost.build_tables(isaac, minilm, labels, compression=plan)
        n = int(rng.integers(1, 150))
        r = _sim(isaac, minilm, plan, fixed_trace(4, n), labels)
        p = cost.onehot_probs(b, 12)
        e = energy(p, tables, cost.fixed_workload(4, n))
        assert float(e.total_j) == pytest.approx(r.total_energy_j, rel=1e-6)
        sim_c = np.array(list(r.energy_by_component_j.values()))
        np.testing.assert_allclose(np.asarray(e.by_component_j), sim_c, rtol=1e-6, atol=1e-6 * r.total_energy_j)
        assert float(cost.expected_crossbars(p, tables)) == r.footprint.crossbars
        assert float(latency(tables, cost.fixed_workload(4, n), p)) == pytest.approx(
            r.latency_per_request_s.mean(), rel=1e-6)


def test_compression_changes_the_answer(isaac, minilm, random_plan):
    """The delta tables are not inert: energy grows (extra passes), crossbars shrink for sparse deltas."""
    b = [0, 0, 0]
    plan = random_plan(isaac, minilm, b, seed=5, share=1.0)
    p, w = cost.onehot_probs(b, 12), cost.fixed_workload(3, 40)
    plain = cost.build_tables(isaac, minilm, (2, 2, 2))
    tables = cost.build_tables(isaac, minilm, (2, 2, 2), compression=plan)
    assert float(cost.expected_energy(p, tables, w).total_j) > float(cost.expected_energy(p, plain, w).total_j)
    assert float(cost.expected_crossbars(p, tables)) != float(cost.expected_crossbars(p, plain))
    with pytest.raises(ConfigError, match="pass p_tu"):
        cost.expected_latency_s(tables, w)


def test_real_lengths_and_task_subsets_equal_in_expectation(isaac, minilm, random_plan, glue_dir):
    from mgen_jax.workload.glue import glue_trace

    trace = glue_trace(["MRPC", "RTE"], task_names=("a", "b", "c"), glue_dir=glue_dir)
    trace = assign_subsets(trace, {(0,): 0.3, (0, 1): 0.5, (0, 1, 2): 0.2}, seed=0)
    workload = cost.workload_from_trace(trace)
    for seed, b in enumerate(([0, 0, 0], [12, 12, 12], [3, 8, 11])):
        plan = random_plan(isaac, minilm, b, seed=10 + seed)
        tables = cost.build_tables(isaac, minilm, (2, 2, 2), compression=plan)
        r = _sim(isaac, minilm, plan, trace, (2, 2, 2))
        p = cost.onehot_probs(b, 12)
        assert float(cost.expected_energy(p, tables, workload).total_j) == pytest.approx(
            r.energy_per_request_j.mean(), rel=1e-6)
        assert float(cost.expected_latency_s(tables, workload, p)) == pytest.approx(
            r.latency_per_request_s.mean(), rel=1e-6)


def test_data_dependent_inputs(isaac, tiny_arch, random_plan, random_densities):
    spec = dataclasses.replace(isaac, data_dependent_inputs=True, input_latch_energy_pj=0.02, cell_read_energy_pj=0.001)
    densities = random_densities(spec, tiny_arch, 3)
    b = [1, 0]
    plan = random_plan(spec, tiny_arch, b, seed=4, share=1.0)
    tables = cost.build_tables(spec, tiny_arch, (2, 2), input_densities=densities, compression=plan)
    tree = hw.SharingTree.from_branch_points(b, tiny_arch.num_units)
    r = simulate(spec, tiny_arch, tree, fixed_trace(2, 17), num_labels=(2, 2), input_densities=densities,
                 compression=plan)
    e = cost.expected_energy(cost.onehot_probs(b, 4), tables, cost.fixed_workload(2, 17))
    assert float(e.total_j) == pytest.approx(r.total_energy_j, rel=1e-6)


def test_relaxed_p_is_the_expectation_over_discrete_models(isaac, tiny_arch, random_plan):
    """With b_t drawn independently, E[sim energy] and E[sim crossbars] = the cost model at branch_probs(logits),
    the compressed copies (the same entries whatever b is) included."""
    u, t = tiny_arch.num_units, 2
    units = random_plan(isaac, tiny_arch, (0, 0), seed=7, share=0.8).units
    logits = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (t, u + 1)), dtype=np.float64)
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rng = np.random.default_rng(6)
    mask = rng.random((20, t)) < 0.7
    mask[~mask.any(axis=1), 0] = True
    trace = Trace(rng.integers(1, 60, 20), mask, ("a", "b"))
    energy, crossbars = 0.0, 0.0
    for b in itertools.product(range(u + 1), repeat=t):
        weight = np.prod([q[i, bi] for i, bi in enumerate(b)])
        r = _sim(isaac, tiny_arch, DeltaPlan(b, units), trace, (2, 2))
        energy += weight * r.energy_per_request_j.mean()
        crossbars += weight * r.footprint.crossbars
    with jax.enable_x64(True):
        tables = cost.build_tables(isaac, tiny_arch, (2, 2), dtype=jnp.float64, compression=DeltaPlan((0, 0), units))
        p = cost.branch_probs(jnp.asarray(logits, dtype=jnp.float64))
        got = cost.expected_energy(p, tables, cost.workload_from_trace(trace, dtype=jnp.float64)).total_j
        assert float(got) == pytest.approx(energy, rel=1e-9)
        assert float(cost.expected_crossbars(p, tables)) == pytest.approx(crossbars, rel=1e-9)
        grad = jax.grad(lambda p: cost.expected_crossbars(p, tables) + cost.expected_energy(
            p, tables, cost.workload_from_trace(trace, dtype=jnp.float64)).total_j)(p)
        assert np.all(np.isfinite(np.asarray(grad)))
