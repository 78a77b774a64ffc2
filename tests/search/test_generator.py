"""Model generator, the work-folder side: phases that resume exactly, settings checked per folder, the sweep's
record and its budget selection, the shipped search configs. On the tiny BERT (2 layers, 4 units)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from mgen_jax import cost
from mgen_jax.errors import ConfigError
from mgen_jax.search import ModelGenerator, load_search_config
from mgen_jax.search.finetune import FINETUNE_FIELDS
from mgen_jax.search.generator import Interrupted
from mgen_jax.search.relaxed import SEARCH_FIELDS
from mgen_jax.search.baselines import heuristic_branch_points
from mgen_jax.search.points import pareto_front
from mgen_jax.search.sweep import run_sweep

REPO = Path(__file__).parents[2]
# 256 training rows per task (not all of SST-2's 60,000, tokenized anew by every ModelGenerator), 64 held-out rows
# and one padded length (each length is one more compilation of every step); what these tests check (settings,
# resume, plumbing) does not depend on the rows
TINY_DATA = dict(max_train_per_task={"SST-2": 256, "MRPC": 256}, heldout_max_rows=64, max_length=32, buckets=[32])


def test_warmup_sampling_reaches_the_warmup_and_is_a_workdir_setting(tmp_path, glue_dir, tiny_bert_dir, monkeypatch):
    import mgen_jax.search.relaxed as relaxed

    seen = []
    real = relaxed.make_relaxed_step
    monkeypatch.setattr(relaxed, "make_relaxed_step",
                        lambda *a, sampling, **k: seen.append(sampling) or real(*a, sampling=sampling, **k))
    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                             warmup_steps=1, search_steps=1, warmup_sampling="hard", sampling="gumbel")
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    gen.search(1.0, gen.warmup())
    assert seen == ["hard", "gumbel"]  # warm-up, then the search
    with pytest.raises(ConfigError, match=r"other settings \(\['warmup_sampling'\]\)"):
        ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                                          warmup_steps=1, search_steps=1, sampling="gumbel"), tmp_path,
                       glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="warmup_sampling"):
        load_search_config(REPO / "configs/search/quick.yaml", warmup_sampling="sometimes")


def test_search_resumes_exactly(tmp_path, glue_dir, tiny_bert_dir):
    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                             warmup_steps=2, search_steps=4, checkpoint_every_steps=10)
    whole = ModelGenerator(cfg, tmp_path / "whole", glue_dir=glue_dir, progress=False)
    warm = whole.warmup()
    expected = whole.search(20.0, warm)
    cut = ModelGenerator(cfg, tmp_path / "cut", glue_dir=glue_dir, progress=False, interrupt_at=2)
    warm_cut = cut.warmup()
    with pytest.raises(Interrupted):
        cut.search(20.0, warm_cut)
    assert not (tmp_path / "cut" / "search_lambda_20" / "result.json").exists()
    assert (tmp_path / "cut" / "search_lambda_20" / "checkpoint.msgpack").exists()
    resumed = ModelGenerator(cfg, tmp_path / "cut", glue_dir=glue_dir, progress=False).search(20.0, warm_cut)
    np.testing.assert_allclose(resumed["logits"], expected["logits"], rtol=1e-6, atol=1e-7)
    assert resumed["branch_points"] == expected["branch_points"]
    for phase in ("warmup", "search_lambda_20"):  # finished phases keep their results, not their checkpoints
        assert not (tmp_path / "cut" / phase / "checkpoint.msgpack").exists()
    assert (tmp_path / "cut" / "warmup" / "params.msgpack").exists()


def test_quick_sweep_record(tmp_path, glue_dir, tiny_bert_dir):
    """The quick sweep on the tiny BERT (4 units), at the smallest sizes that still make every kind of point: one
    step per phase, one padded length (32 tokens), 256 training, 32 held-out and 16 dev rows per task (the record's
    structure, the budget selection and the energies are the point, not the scores; the demo runs it on MiniLM)."""
    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), warmup_steps=1,
                             search_steps=1, finetune_steps=1, max_dev_per_task=16,
                             **(TINY_DATA | {"heldout_max_rows": 32}))
    units = 4
    gen = ModelGenerator(cfg, tmp_path / "run", glue_dir=glue_dir, progress=False)
    record = run_sweep(gen, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "search_quick.json").read_text())
    assert saved["tasks"] == ["SST-2", "MRPC"] and (tmp_path / "out" / "search_quick.png").stat().st_size > 5000
    kinds = [(p["kind"], p.get("method")) for p in saved["points"]]
    assert kinds == [("search", "lambda"), ("search", "lambda"), ("search", "budget"), ("full sharing", None),
                     ("uniform", None)]
    # budget selection: the tree of least estimated loss (the warm-up's profile, unit weights) among those the
    # cost model puts within 0.8 of the independent energy, checked tree by tree; the simulator agrees
    budget = saved["points"][2]
    profile = json.loads((tmp_path / "run" / "warmup" / "loss_profile_heldout.json").read_text())
    assert profile["split"] == "heldout" and profile["rows"] == [len(h) for h in gen.data.heldout]
    assert saved["selection"]["loss_profile"] == "heldout"
    profile = np.asarray(profile["mean_loss"])
    assert profile.shape == (units + 1, 2)
    energy = lambda b: float(cost.expected_energy(cost.onehot_probs(b, units), gen.energy.tables,
                                                  gen.energy.workload).total_j)
    zero = energy([0, 0])
    feasible = {}
    for b in np.ndindex(units + 1, units + 1):
        ratio = energy(b)
        if ratio / zero <= 0.8 * (1 + 1e-6):
            feasible[b] = sum(profile[b[t], t] - profile[0, t] for t in range(2))
    best = min(feasible.values())
    assert budget["estimated_loss"] == pytest.approx(best, abs=1e-6)
    assert feasible[tuple(budget["branch_points"])] == pytest.approx(best, abs=1e-6)
    assert budget["energy_ratio"] <= 0.8 + 1e-6 and budget["budgets"] == [{"budget": 0.8, "source": "energy_budgets"}]
    for p in saved["points"]:
        assert set(p["scores"]) == {"SST-2", "MRPC"} and len(p["branch_points"]) == 2
        assert set(p["heldout_scores"]) == {"SST-2", "MRPC"}
        assert p["energy_per_request_j"] > 0 and p["crossbars"] > 0 and "obtained" in p
        assert p["mean_score"] == pytest.approx(np.mean(list(p["scores"].values())))
    full = next(p for p in saved["points"] if p["kind"] == "full sharing")
    assert full["branch_points"] == [units, units] and full["energy_ratio"] < 0.55
    uniform0 = next(p for p in saved["points"] if p["kind"] == "uniform")
    assert uniform0["energy_ratio"] == pytest.approx(1.0)
    assert any(p["pareto"] for p in saved["points"]) and "versus_search" in full
    assert record["goal_3x_within_1_point"]["reference"] == "uniform b=0"
    # With the separately fine-tuned models present they are a point of their own and the goal's reference; the
    # second call reuses every trained model.
    metrics = {"SST-2": {"accuracy": 0.9}, "MRPC": {"f1": 0.8, "accuracy": 0.7}}
    gen.independent_record = lambda: gen.describe([0, 0], metrics) | {"training_wall_clock_s": 12.0, "num_seeds": 1,
                                                                       "seeds": []}
    again = run_sweep(gen, tmp_path / "out2")
    independent = again["points"][-1]
    assert independent["kind"] == "independent" and independent["mean_score"] == pytest.approx(85.0)
    assert again["goal_3x_within_1_point"]["reference"] == independent["label"]
    assert again["goal_3x_within_1_point"]["reference_mean_score"] == pytest.approx(85.0)
    assert again["wall_clock_s"]["independent_training"] == 12.0 and "versus_search" in independent


def test_pareto_and_heuristic_helpers():
    points = [{"energy_ratio": 1.0, "mean_score": 80}, {"energy_ratio": 0.5, "mean_score": 79},
              {"energy_ratio": 0.6, "mean_score": 78}, {"energy_ratio": 0.2, "mean_score": 70}]
    assert pareto_front([(p["energy_ratio"], p["mean_score"]) for p in points]) == [0, 1, 3]
    redundancy = {"cka_to_pretrained": {"A": [0.99, 0.95, 0.7, 0.99], "B": [0.5, 0.99, 0.99, 0.99]}}
    assert heuristic_branch_points(redundancy, ["A", "B"], 0.9) == [2, 0]
    assert heuristic_branch_points(redundancy, ["A", "B"], 0.6) == [4, 0]
    with pytest.raises(ConfigError, match="no entry"):
        heuristic_branch_points(redundancy, ["C"], 0.9)


def test_workdir_refuses_other_settings(tmp_path, glue_dir, tiny_bert_dir):
    tiny = dict(model=str(tiny_bert_dir), **TINY_DATA)
    cfg = load_search_config(REPO / "configs/search/quick.yaml", **tiny)
    ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", lambdas=[1.0], **tiny), tmp_path,
                   glue_dir=glue_dir, progress=False)  # the sweep's lists may change
    with pytest.raises(ConfigError, match=r"other settings \(\['warmup_steps'\]\)"):
        ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", warmup_steps=9, **tiny), tmp_path,
                       glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="unknown field"):
        load_search_config(REPO / "configs/search/quick.yaml", finetune_stepz=9)
    # a settings file written before a field existed: the field's default matches
    saved = json.loads((tmp_path / "settings.json").read_text())
    del saved["weight_decay"]
    (tmp_path / "settings.json").write_text(json.dumps(saved))
    ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)


def test_search_settings_are_checked_per_search_folder(tmp_path, glue_dir, tiny_bert_dir):
    """Changing only the search settings keeps the workdir (warm-up, fine-tuned models) but not a search folder."""
    tiny = dict(model=str(tiny_bert_dir), **TINY_DATA, warmup_steps=0, search_steps=0)  # the folders, not the steps
    cfg = load_search_config(REPO / "configs/search/quick.yaml", **tiny)
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    warm = gen.warmup()
    gen.search(20.0, warm)
    other = ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", sampling="hard", **tiny), tmp_path,
                           glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match=r"search folder .*search_lambda_20 .*\['sampling'\]"):
        other.search(20.0, warm)
    found = other.search(0.0, other.warmup())  # a new search folder takes the new settings
    assert found["settings"]["sampling"] == "hard"
    assert json.loads((tmp_path / "search_lambda_0" / "settings.json").read_text())["sampling"] == "hard"
    with pytest.raises(ConfigError, match="sampling"):
        load_search_config(REPO / "configs/search/quick.yaml", sampling="sometimes")


def _same(a, b) -> bool:
    """Two parameter trees with equal leaves, bit for bit."""
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_finetune_settings_are_checked_per_model_folder(tmp_path, glue_dir, tiny_bert_dir):
    """With finetune_init "independent" and no steps, b = 0 is exactly the starting model (own units and heads as
    the tasks were fine-tuned alone, here pretrained copies and fresh heads); changing a fine-tuning field keeps
    the workdir but refuses a model folder made with other values."""
    from mgen_jax.search.steps import evaluate_discrete
    from mgen_jax.train.checkpoint import restore_checkpoint

    tiny = dict(model=str(tiny_bert_dir), **TINY_DATA, warmup_steps=2, finetune_steps=0,
                lr_weights=1e-2)  # a warm-up that moves
    cfg = load_search_config(REPO / "configs/search/quick.yaml", finetune_init="independent", **tiny)
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    warm = gen.warmup()
    record = gen.finetune_and_evaluate([0, 0], warm)
    assert record["finetune_init"] == "independent"
    initial = gen.initial_params()
    start = dict(warm) | {"own": initial["own"], "heads": initial["heads"]}
    assert record["metrics"] == evaluate_discrete(gen.predict, start, gen.data, [0, 0])
    saved = restore_checkpoint(tmp_path / "models" / "b_0-0" / "params.msgpack", None)
    assert _same(saved["own"], initial["own"]) and _same(saved["heads"], initial["heads"])
    assert not _same(warm["own"], initial["own"])  # the warm-up moved them: the model folder did not start there
    other = ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", **tiny), tmp_path,
                           glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match=r"model folder .*b_0-0 .*\['finetune_init'\]"):
        other.finetune_and_evaluate([0, 0], warm)
    assert other.finetune_and_evaluate([4, 0], warm)["finetune_init"] == "warmup"  # U = 4 units


def test_finetune_own_lr_scale_zero_freezes_own_units_and_heads(tmp_path, glue_dir, tiny_bert_dir):
    from mgen_jax.train.checkpoint import restore_checkpoint

    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                             warmup_steps=0, finetune_steps=2, finetune_init="independent", finetune_own_lr_scale=0.0)
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    warm = gen.warmup()
    assert gen.finetune_and_evaluate([2, 2], warm)["finetune_own_lr_scale"] == 0.0  # of U = 4 units
    folder = tmp_path / "models" / "b_2-2"
    assert not (folder / "checkpoint.msgpack").exists()  # dropped once the result is written
    saved = restore_checkpoint(folder / "params.msgpack", None)
    initial = gen.initial_params()
    assert _same(saved["own"], initial["own"]) and _same(saved["heads"], initial["heads"])
    assert not _same(saved["trunk"]["unit_0"], warm["trunk"]["unit_0"])  # the trunk trained
    with pytest.raises(ConfigError, match="finetune_own_lr_scale"):
        load_search_config(REPO / "configs/search/quick.yaml", finetune_own_lr_scale=2.0)


def test_search_task_weights_are_validated_and_a_search_setting(tmp_path, glue_dir, tiny_bert_dir):
    with pytest.raises(ConfigError, match="search_task_weights"):
        load_search_config(REPO / "configs/search/quick.yaml", sampling="enumerate", search_task_weights=[1.0])
    with pytest.raises(ConfigError, match="search_task_weights"):
        load_search_config(REPO / "configs/search/quick.yaml", sampling="enumerate", search_task_weights=[1.0, -2.0])
    with pytest.raises(ConfigError, match="enumerate"):
        load_search_config(REPO / "configs/search/quick.yaml", sampling="hard", search_task_weights=[1.0, 2.0])
    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                             sampling="enumerate", search_task_weights=[1.0, 2.0])
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    assert SEARCH_FIELDS.settings(gen.cfg)["search_task_weights"] == [1.0, 2.0]
    assert "search_task_weights" not in json.loads((tmp_path / "settings.json").read_text())  # not a workdir field


def test_finetune_task_weights_are_validated_and_a_model_setting(tmp_path, glue_dir, tiny_bert_dir):
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [True, 1.0]):
        with pytest.raises(ConfigError, match="finetune_task_weights"):
            load_search_config(REPO / "configs/search/quick.yaml", finetune_task_weights=bad)
    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                             finetune_task_weights=[1.0, 3.0])
    gen = ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    assert FINETUNE_FIELDS.settings(gen.cfg)["finetune_task_weights"] == [1.0, 3.0]
    assert "finetune_task_weights" not in json.loads((tmp_path / "settings.json").read_text())  # per model folder


def test_shipped_search_configs_load():
    paths = sorted((REPO / "configs/search").rglob("*.yaml"))  # archive/ included
    assert {"glue5", "glue5_steps200", "glue5_unweighted", "glue8", "quick"} <= {p.stem for p in paths}
    for path in paths:
        cfg = load_search_config(path)  # unknown fields and out-of-range values raise ConfigError
        assert cfg.name == path.stem
        if isinstance(cfg.search_task_weights, tuple):
            assert len(cfg.search_task_weights) == len(cfg.tasks), path.name
    glue5 = load_search_config(REPO / "configs/search/glue5.yaml")  # the headline sweep follows the protocol
    assert glue5.finetune_budget == "independent" and glue5.finetune_init == "pretrained"
    assert glue5.search_task_weights == "heldout" and glue5.heldout_fraction > 0 and len(glue5.claim_seeds) == 2


def test_compute_dtype_reaches_every_phase_and_is_a_run_setting(tmp_path, glue_dir, tiny_bert_dir):
    """compute_dtype: bfloat16 (GPU/TPU) runs the multi-task model's matmuls in bfloat16 (parameters float32): its
    outputs stay within a few percent of float32's, a step of the equal-budget fine-tuning gives a finite loss, and
    a run folder made with one dtype refuses the other."""
    import jax.numpy as jnp

    from mgen_jax.search.finetune import budget_batches, budget_step, budget_streams
    from mgen_jax.search.budget import init_budget_state, interleave

    with pytest.raises(ConfigError, match="compute_dtype"):
        load_search_config(REPO / "configs/search/quick.yaml", compute_dtype="float16")
    gens = {}
    for dtype in ("float32", "bfloat16"):
        cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), **TINY_DATA,
                                 compute_dtype=dtype, finetune_budget={"SST-2": {"examples": 16},
                                                                       "MRPC": {"examples": 16}},
                                 finetune_batch_size=8, finetune_init="pretrained", independent_runs=None)
        gens[dtype] = ModelGenerator(cfg, tmp_path / dtype, glue_dir=glue_dir, progress=False)
    assert gens["bfloat16"].bert.compute_dtype == "bfloat16" and "compute_dtype" not in gens["float32"].cfg.to_dict()
    params = gens["float32"].pretrained_params(0)
    batch = gens["float32"].data.mixed_batch(0, 0)
    out = {d: np.asarray(g.model.discrete_forward(params, batch, [2, 1]), np.float32) for d, g in gens.items()}
    assert np.linalg.norm(out["bfloat16"] - out["float32"]) <= 0.05 * np.linalg.norm(out["float32"])
    gen = gens["bfloat16"]
    streams = budget_streams(gen, 0)
    tx, step = budget_step(gen)
    state = init_budget_state(params, tx)
    batch = budget_batches(gen, streams, interleave([s.steps for s in streams]))(0)
    _, loss = step(state, batch, jnp.int32(0), jnp.int32(2), jnp.float32(1e-4), jax.random.PRNGKey(0))
    assert np.isfinite(float(loss))
    with pytest.raises(ConfigError, match="compute_dtype"):
        ModelGenerator(gens["float32"].cfg, tmp_path / "bfloat16", glue_dir=glue_dir, progress=False)
