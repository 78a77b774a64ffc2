"""The simulator with data-dependent input activity (issue 17): hand counts, the switch, invariants."""

import dataclasses

import numpy as np
import pytest

from mgen_jax import hw
from mgen_jax.hw.density import InputDensities
from mgen_jax.hw.energy import ACTION_INDEX
from mgen_jax.sim import simulate
from mgen_jax.workload import Trace, fixed_trace


def _sim(spec, arch, b, trace, labels, dens):
    return simulate(spec, arch, hw.SharingTree.from_branch_points(b, arch.num_units), trace, num_labels=labels,
                    input_densities=dens)


def test_drive_and_array_energy_by_hand(minilm, random_densities):
    """One task, one 20-token request: input drive = sum over matrices of (d x e_drive + e_latch) x row slots x
    tokens; array read = sum of d x e_cell x K x 4N x 8 x tokens (head matrices once per sequence)."""
    spec = hw.load_spec("rram-32nm-sar")
    dens = random_densities(spec, minilm, 2)
    n = 20
    drive = cells = 0.0
    shapes = {"attention": (("query", 384, 384), ("key", 384, 384), ("value", 384, 384), ("output", 384, 384)),
              "ffn": (("ffn_in", 384, 1536), ("ffn_out", 1536, 384))}
    matrices = [(f"{u.name}/{op}", k, m, n) for u in minilm.units() for op, k, m in shapes[u.kind]]
    matrices += [("head/pooler", 384, 384, 1), ("head/classifier", 384, 2, 1)]
    for key, k, m, vectors in matrices:
        d = dens.density(key)
        slots = 8 * (-(-m * 4 // 128)) * k  # cycles x column blocks x rows
        drive += vectors * slots * (d * spec.dac_drive_energy_pj + spec.input_latch_energy_pj)
        cells += vectors * d * 8 * k * 4 * m * spec.cell_read_energy_pj
    r = _sim(spec, minilm, [0], fixed_trace(1, n), (2,), dens)
    assert r.energy_by_component_j["dac"] == pytest.approx(drive * 1e-12, rel=1e-9)
    assert r.energy_by_component_j["crossbar"] == pytest.approx(cells * 1e-12, rel=1e-9)
    # the switch off: every row in every cycle, whatever the densities
    off = _sim(dataclasses.replace(spec, data_dependent_inputs=False), minilm, [0], fixed_trace(1, n), (2,), dens)
    assert off.counts_by_action[ACTION_INDEX["dac_drive"]] == off.counts_by_action[ACTION_INDEX["input_latch"]]
    assert off.total_energy_j > r.total_energy_j
    # lower densities never cost more
    half = InputDensities({k: v / 2 for k, v in dens.values.items()}, 8, 1, "offset")
    assert _sim(spec, minilm, [0], fixed_trace(1, n), (2,), half).total_energy_j < r.total_energy_j


def test_invariants_hold_with_densities(minilm, random_densities):
    spec = hw.load_spec("rram-32nm-sar")
    dens = random_densities(spec, minilm, 5)
    rng = np.random.default_rng(5)
    mask = rng.random((30, 3)) < 0.6
    mask[np.arange(30), rng.integers(0, 3, 30)] = True
    trace = Trace(rng.integers(1, 129, 30), mask, ("a", "b", "c"))
    r = _sim(spec, minilm, [2, 7, 12], trace, (2, 3, 1), dens)
    total = r.total_energy_j
    for parts in (r.energy_by_component_j, r.energy_by_part_j, r.energy_by_task_j):
        assert sum(parts.values()) == pytest.approx(total, rel=1e-12)
    # a shared unit is counted once per request, with the same densities as a lone copy
    one = _sim(spec, minilm, [0], fixed_trace(1, 40), (2,), dens)
    shared = _sim(spec, minilm, [12] * 4, fixed_trace(4, 40), (2,) * 4, dens)
    for unit in minilm.unit_names():
        assert shared.energy_by_part_j[unit] == pytest.approx(one.energy_by_part_j[unit], rel=1e-12)
