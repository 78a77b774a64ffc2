"""The central contract: the differentiable cost model equals the exact simulator (DESIGN.md section 4)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mgen_jax import cost, hw
from mgen_jax.errors import ConfigError
from mgen_jax.sim import simulate
from mgen_jax.workload import Trace, assign_subsets, fixed_trace


def _sim(spec, arch, b, trace, labels=None):
    return simulate(spec, arch, hw.SharingTree.from_branch_points(b, arch.num_units), trace, num_labels=labels)


@pytest.mark.parametrize("use_jit", [False, True])
def test_fixed_length_random_branch_points(isaac, minilm, use_jit):
    rng = np.random.default_rng(0)
    labels = (2, 3, 1, 2, 2)
    tables = cost.build_tables(isaac, minilm, labels)
    fn = jax.jit(cost.expected_energy) if use_jit else cost.expected_energy
    for _ in range(25):
        b = [int(x) for x in rng.integers(0, 13, 5)]
        n = int(rng.integers(1, 200))
        r = _sim(isaac, minilm, b, fixed_trace(5, n), labels)
        e = fn(cost.onehot_probs(b, 12), tables, cost.fixed_workload(5, n))
        assert float(e.total_j) == pytest.approx(r.total_energy_j, rel=1e-6)
        sim_c = np.array(list(r.energy_by_component_j.values()))
        np.testing.assert_allclose(np.asarray(e.by_component_j), sim_c, rtol=1e-6, atol=1e-6 * r.total_energy_j)
        assert float(cost.expected_crossbars(cost.onehot_probs(b, 12), tables)) == r.footprint.crossbars


def test_other_presets_and_bert_base():
    for name in ("isaac-1bit", "isaac-half"):
        spec, arch = hw.load_spec(name), hw.load_arch("bert-base")
        b = [0, 7, 24]
        r = _sim(spec, arch, b, fixed_trace(3, 50))
        e = cost.expected_energy(cost.onehot_probs(b, 24), cost.build_tables(spec, arch, (2, 2, 2)), cost.fixed_workload(3, 50))
        assert float(e.total_j) == pytest.approx(r.total_energy_j, rel=1e-6)


def test_real_lengths_and_task_subsets_equal_in_expectation(isaac, minilm, glue_dir):
    from mgen_jax.workload.glue import glue_trace

    trace = glue_trace(["MRPC", "RTE"], task_names=("a", "b", "c"), glue_dir=glue_dir)
    trace = assign_subsets(trace, {(0,): 0.3, (0, 1): 0.5, (0, 1, 2): 0.2}, seed=0)
    tables = cost.build_tables(isaac, minilm, (2, 2, 2))
    workload = cost.workload_from_trace(trace)
    for b in ([0, 0, 0], [12, 12, 12], [3, 8, 11]):
        r = _sim(isaac, minilm, b, trace)
        e = cost.expected_energy(cost.onehot_probs(b, 12), tables, workload)
        assert float(e.total_j) == pytest.approx(r.energy_per_request_j.mean(), rel=1e-6)
        assert float(cost.expected_latency_s(tables, workload)) == pytest.approx(r.latency_per_request_s.mean(), rel=1e-6)


def test_relaxed_p_is_the_expectation_over_discrete_models(isaac, tiny_arch):
    """With b_t drawn independently from softmax(logits_t), E[sim energy] = cost(branch_probs(logits))."""
    u, t = tiny_arch.num_units, 2
    logits = jax.random.normal(jax.random.PRNGKey(3), (t, u + 1))
    q = np.asarray(jax.nn.softmax(logits, axis=-1), dtype=np.float64)
    rng = np.random.default_rng(4)
    mask = rng.random((30, t)) < 0.7
    mask[~mask.any(axis=1), 0] = True
    trace = Trace(rng.integers(1, 60, 30), mask, ("a", "b"))
    expected = 0.0
    for b in itertools.product(range(u + 1), repeat=t):
        weight = np.prod([q[i, bi] for i, bi in enumerate(b)])
        expected += weight * _sim(isaac, tiny_arch, list(b), trace).energy_per_request_j.mean()
    with jax.enable_x64(True):
        tables = cost.build_tables(isaac, tiny_arch, (2, 2), dtype=jnp.float64)
        p = cost.branch_probs(jnp.asarray(logits, dtype=jnp.float64))
        got = cost.expected_energy(p, tables, cost.workload_from_trace(trace, dtype=jnp.float64)).total_j
        assert float(got) == pytest.approx(expected, rel=1e-9)


def test_gradients_match_finite_differences(isaac, minilm):
    with jax.enable_x64(True):
        tables = cost.build_tables(isaac, minilm, (2, 2, 2), dtype=jnp.float64)
        workload = cost.workload_from_trace(
            assign_subsets(fixed_trace(3, 33, num_requests=50), {(0,): 0.5, (0, 1, 2): 0.5}), dtype=jnp.float64
        )
        # jitted: the same function and derivatives, compiled once instead of dispatched op by op at every point
        f = jax.jit(lambda logits: cost.expected_energy(cost.branch_probs(logits), tables, workload).total_j * 1e3)
        logits = jax.random.normal(jax.random.PRNGKey(0), (3, 13), dtype=jnp.float64)
        check_grads(f, (logits,), order=2, modes=("fwd", "rev"), eps=1e-4)
        g = jax.jit(lambda p: cost.expected_energy(p, tables, workload).total_j * 1e3)
        check_grads(g, (jax.random.uniform(jax.random.PRNGKey(1), (3, 12), dtype=jnp.float64),), order=1, eps=1e-5)
        # The energy gradient always points toward sharing: dE/dp < 0 wherever another task is present.
        grad = jax.grad(g)(jnp.full((3, 12), 0.5, dtype=jnp.float64))
        assert bool(jnp.all(grad < 0))


def test_vmap_matches_loop(isaac, minilm):
    tables = cost.build_tables(isaac, minilm, (2,) * 4)
    workload = cost.fixed_workload(4, 24)
    p = jax.random.uniform(jax.random.PRNGKey(2), (16, 4, 12))
    batched = jax.jit(jax.vmap(lambda x: cost.expected_energy(x, tables, workload).total_j))(p)
    looped = [cost.expected_energy(x, tables, workload).total_j for x in p]
    np.testing.assert_allclose(batched, looped, rtol=1e-6)


def test_branch_probs_are_monotone_and_onehot_at_the_limit():
    logits = jax.random.normal(jax.random.PRNGKey(5), (4, 13))
    p = cost.branch_probs(logits)
    assert p.shape == (4, 12)
    assert bool(jnp.all(jnp.diff(p, axis=1) <= 1e-7)) and bool(jnp.all((p >= 0) & (p <= 1 + 1e-6)))
    b = [0, 3, 12, 7]
    sharp = 100.0 * jax.nn.one_hot(jnp.array(b), 13)
    np.testing.assert_allclose(cost.branch_probs(sharp), cost.onehot_probs(b, 12), atol=1e-6)


def test_shape_mismatch_is_a_clear_error(isaac, minilm):
    tables = cost.build_tables(isaac, minilm, (2, 2))
    with pytest.raises(ConfigError, match="disagree"):
        cost.expected_energy(jnp.zeros((2, 24)), tables, cost.fixed_workload(2, 8))
    with pytest.raises(ConfigError, match="workload"):
        cost.expected_energy(jnp.zeros((2, 12)), tables, cost.fixed_workload(3, 8))
