"""Base + compressed deltas (mgen_jax.compress) on a tiny random BERT: the block math, exact reproduction at keep
fraction 1 and full bits, the stored form, the held-out walk, and multi-task (searched) model folders."""

import json

import jax
import numpy as np
import pytest

from mgen_jax import cost, hw
from mgen_jax.compress.blocks import (
    Choice, allocate_to_budget, bit_option, block_effects, column_effects, compress_matrix, quantize_delta,
)
from mgen_jax.compress.files import load_compressed
from mgen_jax.compress.models import Evaluator, encoded_split, load_models
from mgen_jax.compress.pipeline import compress_folder
from mgen_jax.compress.profiler import ProfileSettings, compressed_model, matrices, _key
from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import delta_grid

FAST = ProfileSettings(tolerance_points=3.0, budgets=(1.0, 0.5, 0.0), refine_steps=1, calibration_rows=16)


# ----- the math --------------------------------------------------------------------------------------------------
def test_quantisation(isaac):
    rng = np.random.default_rng(0)
    d = rng.normal(size=(40, 7)) * np.array([1, 10, 0.1, 1, 1, 1, 0])
    assert quantize_delta(d, 8, 8).exact and quantize_delta(d, 8, 8).values is not None
    np.testing.assert_array_equal(quantize_delta(d, 8, 8).values, d)
    q2 = quantize_delta(d, 2, 8)
    assert set(np.unique(q2.codes)) <= {-1, 0, 1}  # ternary
    np.testing.assert_allclose(q2.values, q2.codes * q2.scale[None, :])
    errors = [np.square(d - quantize_delta(d, b, 8).values).sum() for b in (2, 4, 6)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert not np.any(quantize_delta(d, 4, 8).values[:, 6])  # an all-zero column stays zero


def test_block_effects_are_the_output_error(isaac):
    """Dropping block b changes the output of inputs x by x_r D_b: with S = E[x x^T] and F = 1, its effect is
    E ||x_r D_b||^2, checked against Monte Carlo over the inputs the moment came from."""
    rng = np.random.default_rng(1)
    k, n = 200, 70
    x = rng.normal(size=(5000, k)) @ rng.normal(size=(k, k)) * 0.1
    s = x.T @ x / len(x)
    d = rng.normal(size=(k, n))
    grid = delta_grid(isaac, k, n, 8)  # 2 x 3 blocks of 128 rows x 32 weights
    effects = block_effects(column_effects(s, d, grid.rows_per_block), np.ones(n), grid)
    for b in range(grid.num_blocks):
        rows, cols = grid.block_slices(b)
        direct = np.mean(np.sum(np.square(x[:, rows] @ d[rows, cols]), axis=1))
        assert effects[b] == pytest.approx(direct, rel=1e-9)
    option = bit_option(d, grid, s, np.ones(n), 8)
    assert option.error[-1] == pytest.approx(0.0, abs=1e-9) and option.error[0] == pytest.approx(effects.sum())
    assert list(option.order[:2]) == list(np.argsort(-effects)[:2])
    assert np.all(np.diff(option.error) <= 1e-9)  # keeping more blocks never predicts more error


def test_error_feedback_lowers_the_output_error(isaac):
    """OPTQ-style rounding: the stored codes stay on the grid (values = codes x scale, dropped blocks 0) and the
    output error e^T S e under correlated inputs is lower than plain rounding's, at every bit level and with blocks
    dropped; keeping everything at full bits is exact either way."""
    rng = np.random.default_rng(3)
    k, n = 256, 64
    x = rng.normal(size=(4000, k)) @ (np.eye(k) + 0.3 * rng.normal(size=(k, k)) / np.sqrt(k))
    s = x.T @ x / len(x)
    d = rng.normal(size=(k, n)) * 0.01
    out_error = lambda v: float(np.sum((s @ (d - v)) * (d - v)))
    for bits, kept in ((2, (0, 1, 2, 3)), (4, (0, 2, 3, 5)), (8, (1, 2, 3, 4, 5))):
        grid = delta_grid(isaac, k, n, bits)
        choice = Choice(bits, kept, len(kept), 0.0)
        plain = compress_matrix(d, grid, choice, 8)
        fed = compress_matrix(d, grid, choice, 8, hessian=s)
        assert out_error(fed.values) < out_error(plain.values)
        assert not fed.values[~grid.block_mask(kept)].any()
        if bits < 8:
            np.testing.assert_array_equal(fed.values, fed.codes * fed.scale[None, :])
            assert np.abs(fed.codes).max() <= 2 ** (bits - 1) - 1
    every = Choice(8, tuple(range(delta_grid(isaac, k, n, 8).num_blocks)), 16, 0.0)
    np.testing.assert_array_equal(compress_matrix(d, delta_grid(isaac, k, n, 8), every, 8, hessian=s).values, d)


def test_allocation_fits_the_budget(isaac):
    rng = np.random.default_rng(2)
    options = {}
    for name, (k, n) in {"a": (384, 384), "b": (384, 1536)}.items():
        d = rng.normal(size=(k, n)) * rng.gamma(0.5, size=(1, n))
        s, f = np.eye(k), rng.gamma(1.0, size=n)
        options[name] = [bit_option(d, delta_grid(isaac, k, n, b), s, f, 8) for b in (2, 4, 8)]
    full = 36 + 144
    last = None
    for budget in (full, 60, 20, 5, 0):
        _, choices = allocate_to_budget(options, budget)
        xbars = sum(c.crossbars for c in choices.values())
        error = sum(c.error for c in choices.values())
        assert xbars <= budget
        if last is not None:
            assert error >= last - 1e-9  # a smaller budget never predicts less error
        last = error
    _, choices = allocate_to_budget(options, 30)
    assert {c.bits for c in choices.values()} <= {2, 4, 8}


def test_keep_everything_at_full_bits_reproduces_the_outputs_exactly(tiny_runs, tiny_bert_dir, isaac, glue_dir):
    from mgen_jax.model.pretrained import load_pretrained

    models = load_models(tiny_runs)
    assert [m.task.name for m in models.models] == ["RTE", "STS-B"] and models.branch_points == (0, 0)
    pre = load_pretrained(tiny_bert_dir)
    evaluator = Evaluator(pre.config, "mean")
    for model in models.models:
        choices, calibration = {}, {}
        rng = np.random.default_rng(0)
        for u, flax, op in matrices(model):
            k, n = np.shape(model.params["encoder"][f"unit_{u}"][flax]["kernel"])
            grid = delta_grid(isaac, k, n, 8)
            choices[_key(u, op)] = Choice(8, tuple(range(grid.num_blocks)), grid.num_blocks, 0.0)
            x = rng.normal(size=(50, k))  # error feedback and bias correction of a zero error change nothing
            calibration[_key(u, op)] = {"moment": x.T @ x / 50, "mean": x.mean(axis=0)}
        params, _ = compressed_model(model, "pretrained", choices, isaac, calibration)
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(model.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        data = encoded_split(models, model.task, "heldout", pre.tokenizer, glue_dir)
        np.testing.assert_array_equal(evaluator.outputs(model.task, params, data),
                                      evaluator.outputs(model.task, model.params, data))
        # and dropping every block is the pretrained encoder's kernels
        none = {k: Choice(2, (), 0, 0.0) for k in choices}
        dropped, _ = compressed_model(model, "pretrained", none, isaac)
        np.testing.assert_array_equal(dropped["encoder"]["unit_1"]["intermediate"]["kernel"],
                                      np.asarray(pre.params["unit_1"]["intermediate"]["kernel"]))


def test_held_out_split_is_the_runs_own(tiny_runs, glue_dir, tiny_bert_dir):
    from mgen_jax.data.splits import HeldoutSpec, train_and_heldout
    from mgen_jax.model.pretrained import load_pretrained

    models = load_models(tiny_runs, ["RTE"])
    data = encoded_split(models, models.models[0].task, "heldout", load_pretrained(tiny_bert_dir).tokenizer,
                         glue_dir)
    train, held = train_and_heldout("RTE", HeldoutSpec(0.1, 40, 0), glue_dir=glue_dir)
    assert len(data) == len(held) == 40 and set(data.row_ids) == set(held.row_ids)
    assert not set(data.row_ids) & set(train.row_ids)


def test_compress_folder_end_to_end(tiny_runs, tiny_bert_dir, isaac, glue_dir, tmp_path):
    arch = hw.load_arch(tiny_bert_dir)
    logs = []
    report = compress_folder(tiny_runs, tmp_path / "out", isaac, arch, FAST, glue_dir=glue_dir, evaluate_dev=True,
                             log=logs.append)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["plan"] == report["plan"] and on_disk["tasks"] == ["RTE", "STS-B"]
    for name in ("RTE", "STS-B"):  # the held-out tolerance holds for what was chosen
        assert report["heldout"]["uncompressed"][name] - report["heldout"]["compressed"][name] <= 3.0 + 1e-9
        walk = report["tasks_profiled"][name]["pretrained"]["walk"]
        assert walk and walk[0]["budget_fraction"] == 1.0
    assert set(report["dev"]["compressed"]) == {"RTE", "STS-B"}
    hwr = report["hardware"]
    assert hwr["compressed"]["crossbars"] == hwr["uncompressed"]["crossbars"] - _own_crossbars(isaac, arch, report) + \
        hwr["compressed"]["delta_crossbars"] + hwr["compressed"]["base_crossbars"]
    # the stored form loads back to the models the profiler evaluated, and simulate/cost accept the plan
    _, params = load_compressed(tmp_path / "out", isaac)
    plan = hw.load_delta_plan(tmp_path / "out" / "report.json")
    assert set(params) == {"RTE", "STS-B"} and plan.branch_points == (0, 0)
    tables = cost.build_tables(isaac, arch, (2, 1), compression=plan)
    p = cost.onehot_probs(plan.branch_points, arch.num_units)
    assert float(cost.expected_crossbars(p, tables)) == hwr["compressed"]["crossbars"]


def test_paired_bootstrap_drop_by_hand():
    """Reference right on all 400 rows, the other model wrong on 20: a resample's drop is 100 K / 400 with K ~
    Binomial(400, 0.05), so the bootstrap quantiles are the binomial's; equal outputs drop by nothing."""
    from scipy import stats

    from mgen_jax.compress.profiler import paired_drop_quantile
    from mgen_jax.data.glue import get_task

    task, n, wrong = get_task("SST-2"), 400, 20
    labels = np.arange(n) % 2
    right = np.eye(2)[labels] * 3.0
    broken = right.copy()
    broken[:wrong] = right[:wrong, ::-1]
    assert paired_drop_quantile(task, right, right, labels, 0.9) == 0.0
    for q in (0.5, 0.9):
        expected = 100 * stats.binom.ppf(q, n, wrong / n) / n
        assert abs(paired_drop_quantile(task, right, broken, labels, q) - expected) <= 0.3, q
    assert paired_drop_quantile(task, right, broken, labels, 0.9) > 100 * wrong / n + 0.5  # stricter than the drop


def test_confidence_walk_bounds_the_bootstrap_quantile(tiny_runs, tiny_bert_dir, isaac, glue_dir, tmp_path):
    import dataclasses

    settings = dataclasses.replace(FAST, heldout_confidence=0.9)
    report = compress_folder(tiny_runs, tmp_path / "out", isaac, hw.load_arch(tiny_bert_dir), settings,
                             glue_dir=glue_dir, log=lambda _: None)
    assert report["settings"]["heldout_confidence"] == 0.9
    for name in ("RTE", "STS-B"):
        walk = report["tasks_profiled"][name]["pretrained"]["walk"]
        assert walk[0]["drop_quantile_points"] == 0.0  # the full budget is exact
        for step in walk:
            assert step["passed"] == (step["drop_quantile_points"] <= 3.0)
    for bad in (0.4, 1.0, True, "high"):
        with pytest.raises(ConfigError, match="heldout_confidence"):
            ProfileSettings(heldout_confidence=bad)


def _own_crossbars(spec, arch, report):
    """Crossbars of the own unit copies the plan compresses (their uncompressed size)."""
    from mgen_jax.hw.ops import model_parts, part_crossbars

    parts = model_parts(spec, arch, (2,))
    return sum(part_crossbars(spec, parts.units[d["unit"]]) for d in report["plan"]["deltas"])


def test_bad_sources_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="not a fine-tuning run folder"):
        load_models(tmp_path)
    with pytest.raises(ConfigError, match="tolerance_points"):
        ProfileSettings(tolerance_points=-1)
    with pytest.raises(ConfigError, match="budgets"):
        ProfileSettings(budgets=(0.1, 0.5))


# ----- a searched (multi-task) model folder (conftest.py: tiny_sweep) ---------------------------------------------
def test_searched_model_with_deltas(tiny_sweep, tiny_bert_dir, isaac, glue_dir, tmp_path):
    models = load_models(tiny_sweep)
    assert models.kind == "multitask" and models.branch_points == (1, 3)
    assert [m.private for m in models.models] == [(1, 2, 3), (3,)]
    assert set(models.base_kinds) == {"pretrained", "trunk"}
    arch = hw.load_arch(tiny_bert_dir)
    report = compress_folder(tiny_sweep, tmp_path / "out", isaac, arch, FAST, glue_dir=glue_dir, log=lambda _: None)
    plan = hw.load_delta_plan(tmp_path / "out" / "report.json")
    assert plan.branch_points == (1, 3)
    assert all(u >= plan.branch_points[t] for t, u in plan.units)
    assert set(report["base_choice"]["crossbars_with_one_base_kind"]) == {"pretrained", "trunk"}
    for kinds in report["tasks_profiled"].values():
        assert set(kinds) == {"pretrained", "trunk"}
    # the chosen combination is the one with the fewest crossbars
    assert report["base_choice"]["crossbars"] <= min(report["base_choice"]["crossbars_with_one_base_kind"].values())
    tree = hw.SharingTree.from_branch_points([1, 3], arch.num_units)
    from mgen_jax.schedule import SchedulingProblem, solve
    from mgen_jax.workload import fixed_trace

    problem = SchedulingProblem(isaac, arch, tree, fixed_trace(2, 12), num_labels=(2, 1), compression=plan)
    assert solve(problem, "fast").cost.loads == 0


def test_trunk_bases_beside_a_fully_shared_task(make_sweep_folder, tiny_bert_dir, isaac, glue_dir, tmp_path):
    """A task without private units listed first (as SST-2 at b = 12 in a glue5 model) and trunk bases for the
    other's units: the trunk units are stored once, from the task that owns copies of them, and load back exactly."""
    import dataclasses

    folder = make_sweep_folder(tmp_path / "sweep", (("STS-B", 1), ("RTE", 2)), (4, 2))
    trunk_only = dataclasses.replace(FAST, base_kinds=("trunk",))
    report = compress_folder(folder, tmp_path / "out", isaac, hw.load_arch(tiny_bert_dir), trunk_only,
                             glue_dir=glue_dir, log=lambda _: None)
    plan = hw.load_delta_plan(tmp_path / "out" / "report.json")
    assert report["base_choice"]["per_task"] == {"STS-B": "trunk", "RTE": "trunk"}
    assert {u for t, u in plan.active()} == {2, 3} and {t for t, u in plan.active()} == {1}
    assert {e.base for e in plan.active().values()} == {"trunk"}
    _, loaded = load_compressed(tmp_path / "out", isaac, report=report)  # compress_folder checked it is exact
    assert set(loaded) == {"STS-B", "RTE"}
