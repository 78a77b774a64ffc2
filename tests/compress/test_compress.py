"""Base + compressed deltas (mgen_jax.compress) on a tiny random BERT: the block math, exact reproduction at keep
fraction 1 and full bits, the stored form, the held-out walk, and multi-task (searched) model folders."""

import json

import jax
import numpy as np
import pytest

from mgen_jax import cost, hw
from mgen_jax.compress.blocks import (
    Choice, allocate_to_budget, bit_option, block_effects, column_effects, quantize_delta, reconstruct,
)
from mgen_jax.compress.files import load_compressed
from mgen_jax.compress.models import Evaluator, encoded_split, load_models
from mgen_jax.compress.pipeline import compress_folder
from mgen_jax.compress.profiler import ProfileSettings, compressed_params, matrices, _key
from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import delta_grid
from mgen_jax.train.checkpoint import save_checkpoint

FAST = ProfileSettings(tolerance_points=3.0, budgets=(1.0, 0.5, 0.0), refine_steps=1, calibration_rows=16)
RUN_FIELDS = dict(pooling="mean", max_length=64, heldout_fraction=0.1, heldout_max_rows=40, heldout_seed=0,
                  data_seed=0, max_train_examples=None)


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


# ----- tiny models -----------------------------------------------------------------------------------------------
def _tiny_classifier(tiny_bert_dir, num_labels, seed, scale=0.05):
    """The tiny pretrained encoder plus noise (a stand-in for fine-tuning) and a random head."""
    import jax.numpy as jnp

    from mgen_jax.model.bert import SequenceClassifier
    from mgen_jax.model.pretrained import load_pretrained

    pre = load_pretrained(tiny_bert_dir)
    module = SequenceClassifier(pre.config, num_labels, "mean")
    ones = jnp.ones((1, 4), jnp.int32)
    head = module.init(jax.random.PRNGKey(seed), ones, ones, ones)["params"]["head"]
    rng = np.random.default_rng(seed)
    encoder = jax.tree.map(lambda w: np.asarray(w) + scale * rng.normal(size=np.shape(w)).astype(np.float32),
                           jax.device_get(pre.params))
    return {"encoder": encoder, "head": jax.device_get(head)}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_bert_dir):
    """Two 'fine-tuning run' folders (RTE, MRPC) of the tiny BERT."""
    root = tmp_path_factory.mktemp("runs")
    for seed, (task, labels) in enumerate((("RTE", 2), ("STS-B", 1))):
        run = root / task
        run.mkdir()
        save_checkpoint(run / "final_params.msgpack", _tiny_classifier(tiny_bert_dir, labels, seed))
        (run / "config.json").write_text(json.dumps({"config": RUN_FIELDS | {"task": task,
                                                                             "model": str(tiny_bert_dir)}}))
    return root


def test_keep_everything_at_full_bits_reproduces_the_outputs_exactly(tiny_runs, tiny_bert_dir, isaac, glue_dir):
    from mgen_jax.model.pretrained import load_pretrained

    models = load_models(tiny_runs)
    assert [m.task.name for m in models.models] == ["RTE", "STS-B"] and models.branch_points == (0, 0)
    pre = load_pretrained(tiny_bert_dir)
    evaluator = Evaluator(pre.config, "mean")
    for model in models.models:
        choices, means = {}, {}
        for u, flax, op in matrices(model):
            k, n = np.shape(model.params["encoder"][f"unit_{u}"][flax]["kernel"])
            grid = delta_grid(isaac, k, n, 8)
            choices[_key(u, op)] = Choice(8, tuple(range(grid.num_blocks)), grid.num_blocks, 0.0)
            means[_key(u, op)] = np.ones(k)  # bias correction of a zero error changes nothing
        params = compressed_params(model, "pretrained", choices, isaac, means)
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(model.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        data = encoded_split(models, model.task, "heldout", pre.tokenizer, glue_dir)
        np.testing.assert_array_equal(evaluator.outputs(model.task, params, data),
                                      evaluator.outputs(model.task, model.params, data))
        # and dropping every block is the pretrained encoder's kernels
        none = {k: Choice(2, (), 0, 0.0) for k in choices}
        dropped = compressed_params(model, "pretrained", none, isaac)
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


# ----- a searched (multi-task) model folder -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, tiny_bert_dir):
    """<sweep>/settings.json + <sweep>/models/b_1-3/{params.msgpack, result.json}: RTE branches after unit 1, STS-B
    after unit 3 (of 4)."""
    from mgen_jax.model.multitask import MultiTaskModel
    from mgen_jax.model.pretrained import load_pretrained

    root = tmp_path_factory.mktemp("sweep")
    pre = load_pretrained(tiny_bert_dir)
    rte, stsb = _tiny_classifier(tiny_bert_dir, 2, 5), _tiny_classifier(tiny_bert_dir, 1, 6)
    trunk = _tiny_classifier(tiny_bert_dir, 2, 7, scale=0.02)["encoder"]
    params = MultiTaskModel(pre.config, (2, 1), "mean").from_encoders(trunk, [rte["encoder"], stsb["encoder"]],
                                                                      [rte["head"], stsb["head"]])
    folder = root / "models" / "b_1-3"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "params.msgpack", jax.device_get(params))
    (folder / "result.json").write_text(json.dumps({"branch_points": [1, 3], "scores": {}}))
    (root / "settings.json").write_text(json.dumps(RUN_FIELDS | {"tasks": ["RTE", "STS-B"], "model": str(tiny_bert_dir),
                                                                 "max_train_per_task": None}))
    return folder


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
