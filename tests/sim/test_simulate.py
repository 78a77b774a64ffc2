"""The exact simulator's invariants and hand checks."""

import numpy as np
import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.energy import energy_per_action_pj
from mgen_jax.hw.ops import model_parts, op_counts
from mgen_jax.sim import simulate
from mgen_jax.workload import Trace, fixed_trace


def _random_trace(rng, num_tasks, num_requests=40):
    tokens = rng.integers(1, 129, num_requests)
    mask = rng.random((num_requests, num_tasks)) < 0.6
    mask[np.arange(num_requests), rng.integers(0, num_tasks, num_requests)] = True
    return Trace(tokens, mask, tuple(f"t{i}" for i in range(num_tasks)))


def test_breakdowns_sum_to_total(isaac, minilm):
    rng = np.random.default_rng(1)
    trace = _random_trace(rng, 4)
    tree = hw.SharingTree.from_branch_points([0, 5, 9, 12], minilm.num_units)
    r = simulate(isaac, minilm, tree, trace, num_labels=(2, 2, 3, 1))
    total = r.total_energy_j
    assert sum(r.energy_by_component_j.values()) == pytest.approx(total, rel=1e-12)
    assert r.energy_per_request_j.sum() == pytest.approx(total, rel=1e-12)
    assert sum(r.energy_by_part_j.values()) == pytest.approx(total, rel=1e-12)
    assert sum(r.energy_by_task_j.values()) == pytest.approx(total, rel=1e-12)


def test_energy_never_decreases_when_a_request_adds_a_task(isaac, minilm):
    rng = np.random.default_rng(2)
    for _ in range(20):
        b = [int(x) for x in rng.integers(0, 13, 4)]
        tree = hw.SharingTree.from_branch_points(b, 12)
        n = int(rng.integers(1, 100))
        base = list(rng.choice(4, size=int(rng.integers(1, 4)), replace=False))
        extra = int(rng.choice([t for t in range(4) if t not in base]))
        energies = []
        for tasks in (base, base + [extra]):
            mask = np.zeros((1, 4), bool)
            mask[0, tasks] = True
            energies.append(simulate(isaac, minilm, tree, Trace(np.array([n]), mask, ("a", "b", "c", "d"))).total_energy_j)
        assert energies[1] > energies[0]


def test_shared_unit_counted_once_per_request(isaac, minilm):
    one = simulate(isaac, minilm, hw.SharingTree.from_branch_points([0], 12), fixed_trace(1, 40))
    shared = simulate(isaac, minilm, hw.SharingTree.from_branch_points([12] * 5, 12), fixed_trace(5, 40))
    independent = simulate(isaac, minilm, hw.SharingTree.from_branch_points([0] * 5, 12), fixed_trace(5, 40))
    for unit in minilm.unit_names():
        assert shared.energy_by_part_j[unit] == pytest.approx(one.energy_by_part_j[unit], rel=1e-12)
        assert independent.energy_by_part_j[unit] == pytest.approx(5 * one.energy_by_part_j[unit], rel=1e-12)
    assert shared.energy_by_part_j["heads"] == pytest.approx(5 * one.energy_by_part_j["heads"], rel=1e-12)
    assert shared.footprint.crossbars == 2592 + 5 * 39
    assert independent.footprint.crossbars == 5 * 2592 + 5 * 39


def test_one_task_energy_by_hand(isaac, minilm):
    """Sum every operation's counts by hand for a one-task model on one 17-token request."""
    n = 17
    parts = model_parts(isaac, minilm, (2,))
    ops = list(parts.embedding) + [op for unit in parts.units for op in unit] + list(parts.heads[0])
    counts = sum(op_counts(isaac, op, np.array([n]))[0] for op in ops)
    expected_j = float(counts @ energy_per_action_pj(isaac)) * 1e-12
    r = simulate(isaac, minilm, hw.SharingTree.from_branch_points([3], 12), fixed_trace(1, n))
    assert r.total_energy_j == pytest.approx(expected_j, rel=1e-12)
    # ADC energy: 6 layers x (4 x 384x384 + 384x1536 + 1536x384) matrices x n tokens, + head once.
    adc_per_token = 6 * (4 * 36_864 + 8 * 3 * 1536 * 4 + 8 * 12 * 384 * 4)
    head_adc = 36_864 + 8 * 3 * 2 * 4
    assert r.energy_by_component_j["adc"] == pytest.approx((adc_per_token * n + head_adc) * 1.5625e-12, rel=1e-12)


def test_area_and_latency(isaac, minilm):
    r = simulate(isaac, minilm, hw.SharingTree.from_branch_points([0] * 8, 12), fixed_trace(8, 32))
    assert r.footprint.crossbars == 8 * 2592 + 8 * 39
    assert not r.footprint.fits_on_chip
    assert r.footprint.tiles == -(-r.footprint.crossbars // 96)
    assert r.footprint.area_mm2 == pytest.approx(r.footprint.tiles * 0.372)
    # 12 units x (32 + 2 - 1) stages of 800 ns, + head 2 stages.
    assert r.latency_per_request_s[0] == pytest.approx((12 * 33 + 2) * 800e-9)


def test_mismatched_inputs(isaac, minilm):
    with pytest.raises(ConfigError, match="units"):
        simulate(isaac, minilm, hw.SharingTree.from_branch_points([0], 10), fixed_trace(1, 8))
    with pytest.raises(ConfigError, match="tasks"):
        simulate(isaac, minilm, hw.SharingTree.from_branch_points([0, 0], 12), fixed_trace(3, 8))
    with pytest.raises(ConfigError, match="num_labels"):
        simulate(isaac, minilm, hw.SharingTree.from_branch_points([0, 0], 12), fixed_trace(2, 8), num_labels=(2,))
