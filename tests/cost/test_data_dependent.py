"""cost == simulator with data-dependent input activity and per-matrix densities (issue 17)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax import cost, hw
from mgen_jax.hw.density import InputDensities
from mgen_jax.sim import simulate
from mgen_jax.workload import assign_subsets, fixed_trace


def _sim(spec, arch, b, trace, labels, dens):
    tree = hw.SharingTree.from_branch_points(b, arch.num_units)
    return simulate(spec, arch, tree, trace, num_labels=labels, input_densities=dens)


@pytest.mark.parametrize("preset", ["rram-32nm-sar", "isaac"])
def test_cost_equals_sim_on_fixed_traces_with_random_densities(preset, minilm, random_densities):
    spec = dataclasses.replace(hw.load_spec(preset), data_dependent_inputs=True)
    rng = np.random.default_rng(0)
    labels = (2, 3, 1)
    for seed in range(6):
        dens = random_densities(spec, minilm, seed)
        tables = cost.build_tables(spec, minilm, labels, input_densities=dens)
        for _ in range(3):
            b = [int(x) for x in rng.integers(0, 13, 3)]
            n = int(rng.integers(1, 129))
            r = _sim(spec, minilm, b, fixed_trace(3, n), labels, dens)
            e = cost.expected_energy(cost.onehot_probs(b, 12), tables, cost.fixed_workload(3, n))
            assert float(e.total_j) == pytest.approx(r.total_energy_j, rel=1e-6)
            np.testing.assert_allclose(np.asarray(e.by_component_j), list(r.energy_by_component_j.values()),
                                       rtol=1e-6, atol=1e-6 * r.total_energy_j)


def test_cost_equals_sim_in_expectation_on_real_lengths(minilm, glue_dir, random_densities):
    from mgen_jax.workload.glue import glue_trace

    spec = hw.load_spec("rram-32nm-sar")
    dens = random_densities(spec, minilm, 1)
    trace = assign_subsets(glue_trace(["MRPC", "RTE"], glue_dir=glue_dir), {(0,): 0.4, (0, 1): 0.6}, seed=0)
    tables = cost.build_tables(spec, minilm, (2, 2), input_densities=dens)
    for b in ([0, 0], [5, 12], [12, 12]):
        r = _sim(spec, minilm, b, trace, (2, 2), dens)
        e = cost.expected_energy(cost.onehot_probs(b, 12), tables, cost.workload_from_trace(trace))
        assert float(e.total_j) == pytest.approx(r.energy_per_request_j.mean(), rel=1e-6)


def test_density_one_reproduces_isaac_through_cost_and_sim(isaac, minilm, random_densities):
    ones = InputDensities({k: 1.0 for k in random_densities(isaac, minilm, 3).values}, 8, 1, "offset")
    on = dataclasses.replace(isaac, data_dependent_inputs=True)
    for b in ([0, 0, 0], [3, 12, 7]):
        base = _sim(isaac, minilm, b, fixed_trace(3, 40), (2, 2, 2), None)
        dd = _sim(on, minilm, b, fixed_trace(3, 40), (2, 2, 2), ones)
        np.testing.assert_array_equal(dd.counts_by_action, base.counts_by_action)
        assert dd.total_energy_j == base.total_energy_j
    t_base = cost.build_tables(isaac, minilm, (2, 2, 2))
    t_dd = cost.build_tables(on, minilm, (2, 2, 2), input_densities=ones)
    for a, b in zip(t_base, t_dd):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_energy_table_gradient_is_the_action_energy(minilm, random_densities):
    """d E / d energy_pj[a] = expected count of a (x 1e-12): the sensitivity study's gradient, checked by hand."""
    spec = hw.load_spec("rram-32nm-sar")
    dens = random_densities(spec, minilm, 4)
    with jax.enable_x64(True):
        tables = cost.build_tables(spec, minilm, (2, 2), input_densities=dens, dtype=jnp.float64)
        load = cost.fixed_workload(2, 33, dtype=jnp.float64)
        p = cost.onehot_probs([4, 9], 12, dtype=jnp.float64)
        grad = jax.grad(lambda e: cost.expected_energy(p, tables._replace(energy_pj=e), load).total_j)(tables.energy_pj)
        counts = cost.expected_counts(p, tables, load)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(counts) * 1e-12, rtol=1e-12)
        r = _sim(spec, minilm, [4, 9], fixed_trace(2, 33), (2, 2), dens)
        np.testing.assert_allclose(np.asarray(counts), r.counts_by_action, rtol=1e-9)


def test_cli_takes_the_preset_and_a_density_file(tmp_path, capsys, minilm, random_densities):
    import json

    from mgen_jax.cli import main
    from mgen_jax.hw.density import save_density_file

    spec = hw.load_spec("rram-32nm-sar")
    dens = random_densities(spec, minilm, 6)
    records = {k: {"density": v, "per_bit": [v] * 8} for k, v in dens.values.items()}
    path = save_density_file(tmp_path / "d.json", {"model": "minilm-l6", "input_bits": 8, "dac_bits": 1, "scale": "x"},
                             {"m": {"encodings": {"offset": records}}})
    args = ["--hw", "rram-32nm-sar", "--tasks", "2", "--branch-points", "3,9", "--tokens", "30", "--json"]
    got = {}
    for command in ("simulate", "cost"):
        for extra in ([], ["--input-densities", str(path)]):
            assert main([command, *args, *extra]) == 0
            got[command, bool(extra)] = json.loads(capsys.readouterr().out)["energy_per_request_j"]
    assert got["cost", True] == pytest.approx(got["simulate", True], rel=1e-6)
    assert got["cost", False] == pytest.approx(got["simulate", False], rel=1e-6)
    assert got["simulate", True] != pytest.approx(got["simulate", False], rel=1e-3)
    tables = cost.build_tables(spec, minilm, (2, 2), input_densities=dens)
    e = cost.expected_energy(cost.onehot_probs([3, 9], 12), tables, cost.fixed_workload(2, 30))
    assert got["cost", True] == pytest.approx(float(e.total_j), rel=1e-6)
    # a density file measured for another input encoding: exit 2, naming the field
    # a preset that drives every row whatever the density: the file would be silently ignored (issue 35)
    capsys.readouterr()
    assert main(["simulate", *args, "--hw", "isaac", "--input-densities", str(path)]) == 2
    assert "--input-densities has no effect" in capsys.readouterr().err
    bad = tmp_path / "sm.yaml"
    bad.write_text("extends: rram-32nm-sar\ninput_encoding: sign_magnitude\n")
    capsys.readouterr()
    assert main(["simulate", *args, "--hw", str(bad), "--input-densities", str(path)]) == 2
    assert "input_encoding" in capsys.readouterr().err
