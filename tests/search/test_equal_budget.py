"""The equal-budget protocol end to end on a tiny random BERT and real GLUE rows: independent runs with a held-out
split, then a sweep whose every discrete model spends exactly the independent budgets, never trains on a held-out
row, and chooses (task weights, loss profile, budget trees, the claim model) on the held-out split only."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mgen_jax.search.data as search_data
import mgen_jax.search.finetune as finetune
from mgen_jax.errors import ConfigError
from mgen_jax.search import ModelGenerator
from mgen_jax.search.config import SearchConfig
from mgen_jax.search.finetune import FINETUNE_FIELDS
from mgen_jax.search.sweep import run_sweep
from mgen_jax.train import FinetuneConfig, train_and_evaluate

TASKS = ["SST-2", "STS-B"]
HELDOUT = dict(heldout_max_rows=40)
BUCKETS = (64,)  # one padded length: each length is one more compilation of every step


def _independent(root: Path, model: Path, glue_dir, seed: int = 0, max_dev_examples: int | None = 32) -> None:
    """Two tasks of different budgets: SST-2 60 rows x 2 epochs, STS-B 40 rows x 1 epoch (batch 8); dev capped at
    ``max_dev_examples`` rows (a subset drawn with the seed; None: every row)."""
    for task, rows, epochs in (("SST-2", 60, 2), ("STS-B", 40, 1)):
        if (root / task / "summary.json").exists():
            continue
        cfg = FinetuneConfig(task=task, model=str(model), max_train_examples=rows, epochs=epochs, batch_size=8,
                             eval_batch_size=16, max_dev_examples=max_dev_examples, learning_rate=1e-3, max_length=64,
                             buckets=BUCKETS, seed=seed, **HELDOUT)
        train_and_evaluate(cfg, root / task, glue_dir=glue_dir, progress=False)


def _config(model: Path, runs: list[Path], **changes) -> SearchConfig:
    values = dict(name="tiny_budget", tasks=TASKS, model=str(model), independent_runs=[str(r) for r in runs],
                  finetune_budget="independent", finetune_init="pretrained", lr_finetune=1e-3, max_length=64,
                  buckets=BUCKETS, per_task_batch=4, length_window=16, max_dev_per_task=32, warmup_steps=3,
                  warmup_sampling="hard", search_steps=0, lambdas=[], uniform_branch_points=[], heuristic_thresholds=[],
                  redundancy_file=None, energy_budgets=[0.6], uniform_at_budgets=True,
                  search_task_weights="heldout", profile_metric="score", claim_seeds=[1], checkpoint_every_steps=5,
                  **HELDOUT)
    values.update(changes)
    return SearchConfig(**values)


@pytest.fixture(scope="module")
def independent_runs(tmp_path_factory, tiny_bert_dir, glue_dir):
    root = tmp_path_factory.mktemp("independent")
    runs = [root / "seed0", root / "seed1"]
    for seed, run in enumerate(runs):
        _independent(run, tiny_bert_dir, glue_dir, seed)
    return runs


def _permuted_dev_copy(glue_dir, out: Path) -> Path:
    """A GLUE folder whose dev labels are shuffled (texts, hence token lengths and energies, unchanged)."""
    for task in TASKS:
        shutil.copytree(Path(glue_dir) / task, out / task)
        lines = (out / task / "dev.tsv").read_text(encoding="utf-8").splitlines()
        rows = [line.split("\t") for line in lines[1:]]
        labels = [r[-1] for r in rows]
        perm = np.random.default_rng(3).permutation(len(labels))
        body = ["\t".join(r[:-1] + [labels[i]]) for r, i in zip(rows, perm)]
        (out / task / "dev.tsv").write_text("\n".join([lines[0]] + body) + "\n", encoding="utf-8")
    return out


def test_independent_run_records_its_budget_and_holdout(independent_runs):
    summary = json.loads((independent_runs[0] / "SST-2" / "summary.json").read_text())
    assert summary["train_examples"] == 60 and summary["train_examples_seen"] == 120
    assert summary["heldout_examples"] == 40 and summary["heldout_metrics"] is not None
    assert "evaluated once" in summary["dev_split"]
    lines = [json.loads(x) for x in (independent_runs[0] / "SST-2" / "metrics.jsonl").read_text().splitlines()]
    assert all("heldout" in x and "dev" not in x for x in lines)  # periodic evaluations never read dev


def test_equal_budget_sweep(tmp_path, tiny_bert_dir, glue_dir, independent_runs, monkeypatch):
    # every batch any phase trains on: (task, split, source row ids)
    drawn: list[tuple[str, str, np.ndarray]] = []

    def recording(collate):
        def wrapped(data, indices, *args, **kwargs):
            drawn.append((data.task.name, data.split, np.asarray(data.row_ids)[np.asarray(indices, np.int64)]))
            return collate(data, indices, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(finetune, "collate", recording(finetune.collate))  # the equal-budget fine-tuning
    mixed_rows = search_data.MultiTaskData.mixed_rows

    def recording_rows(self, step, stream=0):  # the warm-up's (and any mixed phase's) batches
        rows = mixed_rows(self, step, stream)
        for data, idx in zip(self.train, rows):
            drawn.append((data.task.name, data.split, np.asarray(data.row_ids)[idx]))
        return rows

    monkeypatch.setattr(search_data.MultiTaskData, "mixed_rows", recording_rows)
    # a claim whatever the tiny models score (the claim's held-out rule itself: test_claim_margin_sets_the_bar)
    cfg = _config(tiny_bert_dir, independent_runs, claim_margin=100.0)
    gen = ModelGenerator(cfg, tmp_path / "work", glue_dir=glue_dir, progress=False)
    record = run_sweep(gen, tmp_path / "out")

    # 1. budgets: every task of every discrete model saw exactly its independent model's examples
    seen = {t: json.loads((independent_runs[0] / t / "summary.json").read_text())["train_examples_seen"] for t in TASKS}
    models = [p for p in record["points"] if p["kind"] != "independent"] + record["claim"]["runs"]
    assert len(models) >= 3
    for p in models:
        assert p["examples_seen"] == seen, p["label"]
        assert p["finetune_budget"] == "independent" and p["steps_per_task"] == {"SST-2": 16, "STS-B": 5}

    # 2. the held-out rows never reach a training batch (warm-up and fine-tuning alike)
    assert {split for _, split, _ in drawn} == {"train"}  # only training rows are ever collated into a batch
    for t, task in enumerate(gen.tasks):
        held = set(gen.data.heldout[t].row_ids.tolist())
        assert len(held) == 40 and not held & set(gen.data.train[t].row_ids.tolist())
        used = set(np.concatenate([ids for name, _, ids in drawn if name == task.name]).tolist())
        assert len(used) == len(gen.data.train[t]) and not used & held

    # 3. selection is recorded as held-out, and the claim is judged on seed means
    assert record["selection"]["split"] == "heldout"
    assert record["selection"]["loss_profile"] == "heldout"
    assert record["claim"] is None or record["claim"]["chosen_on"] == "heldout"
    assert (tmp_path / "out" / "search_tiny_budget.png").is_file()
    independent = next(p for p in record["points"] if p["kind"] == "independent")
    assert independent["num_seeds"] == 2
    if record["claim"].get("model", True) is not None:
        assert len(record["claim"]["seeds"]) == 2
        assert record["claim"]["independent_seeds"] == [0, 1]

    # 4. dev never chooses: a sweep on a copy of the data whose dev labels are shuffled makes every choice the same
    other = _permuted_dev_copy(glue_dir, tmp_path / "glue_shuffled_dev")
    gen2 = ModelGenerator(cfg, tmp_path / "work2", glue_dir=other, progress=False)
    record2 = run_sweep(gen2, tmp_path / "out2")
    weights = json.loads((tmp_path / "work" / "task_weights_heldout.json").read_text())
    weights2 = json.loads((tmp_path / "work2" / "task_weights_heldout.json").read_text())
    assert weights["weights"] == weights2["weights"]
    pick = lambda r: [(p["label"], p["branch_points"], p.get("heldout_mean_score")) for p in r["points"]
                      if p["kind"] != "independent"]
    assert pick(record) == pick(record2)
    assert {k: v for k, v in record["claim"].items() if not k.startswith("dev") and k not in ("runs", "drop_points",
            "finetune_wall_clock_s")} == {k: v for k, v in record2["claim"].items() if not k.startswith("dev") and
                                          k not in ("runs", "drop_points", "finetune_wall_clock_s")}
    dev = lambda r: [p["mean_score"] for p in r["points"] if p["kind"] != "independent"]
    assert dev(record) != dev(record2)  # the dev scores did change: the test could fail

    # 5. report_only trains nothing: the finished models as recorded, the missing ones listed as pending
    assert record["complete"] is True and record["pending"] == []

    def no_training(*args, **kwargs):
        raise AssertionError("report_only trained a model")

    monkeypatch.setattr(finetune, "train_budget", no_training)
    work3 = tmp_path / "work3"
    shutil.copytree(tmp_path / "work", work3)
    result_in = lambda b, seed=None: work3 / gen.model_dir(b, seed).relative_to(tmp_path / "work") / "result.json"
    claim = record["claim"]
    assert claim.get("model", True) is not None  # this config's claim: budget 0.6 (same seed, same choice)
    result_in(claim["branch_points"], claim["seeds"][1]).unlink()  # the claim's second seed is still to train
    partial = run_sweep(ModelGenerator(cfg, work3, glue_dir=glue_dir, progress=False), tmp_path / "out3",
                        report_only=True)
    assert partial["complete"] is False and len(partial["pending"]) == 1 and "claim seed" in partial["pending"][0]
    assert [(p["label"], p["mean_score"]) for p in partial["points"]] == [(p["label"], p["mean_score"])
                                                                           for p in record["points"]]
    assert partial["claim"]["label"] == claim["label"] and partial["claim"]["complete"] is False
    assert partial["claim"]["seeds_pending"] == [claim["seeds"][1]] and "dev_mean_score" not in partial["claim"]
    assert partial["goal_3x_within_1_point"]["met"] is None
    assert not result_in(claim["branch_points"], claim["seeds"][1]).exists()
    budget = next(p for p in record["points"] if p.get("method") == "budget")
    result_in(budget["branch_points"]).unlink()  # and a budget model
    partial = run_sweep(ModelGenerator(cfg, work3, glue_dir=glue_dir, progress=False), tmp_path / "out3",
                        report_only=True)
    assert any(x.startswith(budget["label"]) for x in partial["pending"]), partial["pending"]
    assert {p["label"]: p["mean_score"] for p in partial["points"]} == {  # (and any model of the same tree)
        p["label"]: p["mean_score"] for p in record["points"]
        if p["branch_points"] != budget["branch_points"] or p["kind"] == "independent"}
    assert not result_in(budget["branch_points"]).exists()
    assert (tmp_path / "out3" / "search_tiny_budget.png").is_file()
    for p in (work3 / "models").glob("*/result.json"):  # nothing at all finished: full sharing waits too
        p.unlink()
    empty = run_sweep(ModelGenerator(cfg, work3, glue_dir=glue_dir, progress=False), tmp_path / "out3",
                      report_only=True)
    assert [p["kind"] for p in empty["points"]] == ["independent"] and empty["claim"]["model"] is None
    assert "finished so far" in empty["claim"]["note"]
    assert empty["goal_3x_within_1_point"]["met"] is False and "held-out bar" in empty["goal_3x_within_1_point"]["judged_on"]
    assert any(x.startswith("full sharing") for x in empty["pending"])
    assert any("waits for the full-sharing model" in x for x in empty["pending"])
    with pytest.raises(ConfigError, match="nothing to report yet"):
        run_sweep(ModelGenerator(cfg, tmp_path / "work4", glue_dir=glue_dir, progress=False), tmp_path / "out4",
                  report_only=True)


def test_budget_needs_matching_runs(tmp_path, tiny_bert_dir, glue_dir, independent_runs):
    with pytest.raises(ConfigError, match="heldout_max_rows"):
        ModelGenerator(_config(tiny_bert_dir, independent_runs, heldout_max_rows=30), tmp_path / "w",
                       glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="max_train_per_task.SST-2"):
        ModelGenerator(_config(tiny_bert_dir, independent_runs, max_train_per_task={"SST-2": 50}), tmp_path / "w2",
                       glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="not found"):
        ModelGenerator(_config(tiny_bert_dir, [tmp_path / "nothing"]), tmp_path / "w3", glue_dir=glue_dir,
                       progress=False)


def test_budgets_in_examples_or_epochs(tmp_path, tiny_bert_dir, glue_dir):
    """Per-task budgets: SST-2 1,000 examples and STS-B 2.5 epochs (1,000 examples) of its 400 capped rows, in
    batches of 32; each task's examples seen lies within 5 % of its budget (within a batch of it)."""
    cfg = _config(tiny_bert_dir, [], independent_runs=None, finetune_budget={"SST-2": {"examples": 1000},
                                                                             "STS-B": {"epochs": 2.5}},
                  max_train_per_task={"STS-B": 400}, search_task_weights=None, claim_seeds=[])
    gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    sst2, stsb = gen.budget_streams(0)
    assert abs(sst2.examples() - 1000) <= 16 and sst2.batch_size == 32  # whole batches: 992 or 1,024
    assert len(gen.data.train[1]) == 400 and abs(stsb.examples() - 1000) <= 0.05 * 1000


@pytest.mark.parametrize("change, words", [
    ({"finetune_budget": "twice"}, "finetune_budget"),
    ({"finetune_budget": {"SST-2": {"examples": 10}}}, "every task"),
    ({"finetune_budget": {"SST-2": {"examples": 10.5}, "STS-B": {"epochs": 1}}}, "finetune_budget.SST-2"),
    ({"finetune_budget": {"SST-2": {"steps": 10}, "STS-B": {"epochs": 1}}}, "finetune_budget.SST-2"),
    ({"finetune_budget": "independent", "independent_runs": None}, "needs 'independent_runs'"),
    ({"claim_seeds": [0]}, "claim_seeds"), ({"claim_seeds": [1, 1]}, "claim_seeds"),
    ({"claim_seeds": 1}, "claim_seeds"), ({"heldout_fraction": 1.5}, "heldout_fraction"),
    ({"max_train_per_task": {"CoLA": 10}}, "max_train_per_task"),
    ({"max_train_per_task": {"SST-2": 0}}, "max_train_per_task.SST-2"),
    ({"search_task_weights": "dev"}, "search_task_weights"),
    ({"search_task_weights": "heldout", "heldout_fraction": 0.0}, "needs a held-out split"),
    ({"finetune_init": "scratch"}, "finetune_init"),
    ({"distill_anneal": True}, "needs 'distill_weight' > 0"), ({"distill_anneal": "yes"}, "distill_anneal"),
    ({"distill_anneal": True, "distill_weight": 1.0, "finetune_budget": None}, "needs 'finetune_budget'"),
    ({"trees": [{"branch_points": [1, 2, 3], "label": "x"}]}, r"trees\[0\].branch_points"),
    ({"trees": [{"branch_points": [1, -1], "label": "x"}]}, r"trees\[0\].branch_points"),
    ({"trees": [{"branch_points": [1, 2]}]}, r"trees\[0\]"), ({"trees": [[1, 2]]}, r"trees\[0\]"),
    ({"trees": [{"branch_points": [1, 2], "label": "x", "lambda": 1}]}, r"trees\[0\]"),
    ({"trees": [{"branch_points": [1, 2], "label": ""}]}, r"trees\[0\].label"),
    ({"trees": [{"branch_points": [1, 2], "label": "x"}, {"branch_points": [0, 2], "label": "x"}]}, "labels must differ"),
    ({"full_sharing": False}, "needs 'full_sharing: true'"),
    ({"full_sharing": "no", "search_task_weights": None}, "full_sharing"),
    ({"teacher_run": "runs/x"}, "needs 'distill_weight' > 0"), ({"teacher_run": "", "distill_weight": 1.0}, "teacher_run"),
])
def test_protocol_fields_are_checked(change, words, tiny_bert_dir):
    with pytest.raises(ConfigError, match=words):
        _config(tiny_bert_dir, [Path("runs/x")], **change)


def test_teacher_annealing_at_equal_budget(tmp_path, tiny_bert_dir, glue_dir, independent_runs, monkeypatch):
    """Distillation with teacher annealing at equal budget: the teachers' outputs on every training row are the
    independent models' own predictions (row for row), computed once per work folder; every step sees its rows'
    teacher outputs at the annealed weight; the budgets stay exact and the record says what was used."""
    from mgen_jax.model.bert import BertConfig, SequenceClassifier
    from mgen_jax.train.checkpoint import restore_checkpoint
    from mgen_jax.train.finetune import make_predict, predict
    from mgen_jax.train.parallel import data_mesh

    cfg = _config(tiny_bert_dir, independent_runs[:1], distill_weight=1.0, distill_anneal=True, warmup_steps=0,
                  energy_budgets=[], uniform_at_budgets=False, search_task_weights=None, claim_seeds=[])
    gen = ModelGenerator(cfg, tmp_path / "work", glue_dir=glue_dir, progress=False)
    teacher = gen.teacher_outputs()
    bert = BertConfig.from_hf(json.loads((tiny_bert_dir / "config.json").read_text()))
    for t, task in enumerate(gen.tasks):
        module = SequenceClassifier(bert, task.num_labels, cfg.pooling)
        params = restore_checkpoint(independent_runs[0] / task.name / "final_params.msgpack", None)
        ref = predict(make_predict(module), params, gen.data.train[t], 8, BUCKETS, data_mesh())
        assert teacher[t].shape == (len(gen.data.train[t]), gen.model.max_labels)
        np.testing.assert_allclose(teacher[t][:, : task.num_labels], ref, rtol=1e-4, atol=1e-5)
        assert (tmp_path / "work" / "teachers" / f"{task.name}.npy").is_file()

    seen = []  # (task, teacher rows of the batch, weight) of every step
    step_fn = finetune.make_budget_step

    def recording(*args, **kwargs):
        assert kwargs["distill_temperature"] == 1.0
        inner = step_fn(*args, **kwargs)

        def step(state, batch, task, b, lr, key, weight):
            seen.append((int(task), np.asarray(batch["teacher"]), float(weight), np.asarray(batch["weights"])))
            return inner(state, batch, task, b, lr, key, weight)
        return step

    monkeypatch.setattr(finetune, "make_budget_step", recording)
    files = sorted((tmp_path / "work" / "teachers").glob("*.npy"))
    stamps = [f.stat().st_mtime_ns for f in files]
    gen2 = ModelGenerator(cfg, tmp_path / "work", glue_dir=glue_dir, progress=False)
    record = gen2.finetune_and_evaluate([gen2.num_units] * 2, None)
    total = record["finetune_steps"]
    assert total == 21 and len(seen) == total
    assert [w for _, _, w, _ in seen] == pytest.approx([1 - k / (total - 1) for k in range(total)])
    assert record["examples_seen"] == {t: json.loads((independent_runs[0] / t / "summary.json").read_text())[
        "train_examples_seen"] for t in TASKS}
    assert record["distill_weight"] == 1.0 and record["distill_anneal"] is True
    for task, rows, _, weights in seen:  # padding rows carry zeros; real rows a teacher output of their task
        assert np.all(rows[weights == 0] == 0)
        real = rows[weights > 0]
        assert np.all(np.isin(real[:, 0], teacher[task][:, 0]))
    assert [f.stat().st_mtime_ns for f in files] == stamps  # the second generator read the cache


def test_given_trees_and_another_teacher_run(tmp_path, tiny_bert_dir, glue_dir, independent_runs):
    """A tree given in the config (e.g. another sweep's budget selection, here trained with teacher annealing) is
    fine-tuned at the same budget as every other model and recorded with its source (and alone: no full-sharing
    baseline, no warm-up); the teachers come from ``teacher_run`` (here the seed-1 runs, not the reference seed 0),
    cached apart from the reference's, so the reference run needs only its result files (no weights); a tree deeper
    than the model is a clear error before any training."""
    from mgen_jax.model.bert import BertConfig, SequenceClassifier
    from mgen_jax.train.checkpoint import restore_checkpoint
    from mgen_jax.train.finetune import make_predict, predict
    from mgen_jax.train.parallel import data_mesh

    tree = {"branch_points": [1, 0], "label": "given b=1,0", "source": "chosen elsewhere"}
    reference = tmp_path / "records"  # the reference run as experiments/run_records.py carries it: no weights
    for task in TASKS:
        (reference / task).mkdir(parents=True)
        for name in ("config.json", "summary.json"):
            shutil.copyfile(independent_runs[0] / task / name, reference / task / name)
    cfg = _config(tiny_bert_dir, [reference], distill_weight=1.0, distill_anneal=True, warmup_steps=0,
                  energy_budgets=[], uniform_at_budgets=False, search_task_weights=None, claim_seeds=[], trees=[tree],
                  teacher_run=str(independent_runs[1]), full_sharing=False)
    gen = ModelGenerator(cfg, tmp_path / "work", glue_dir=glue_dir, progress=False)
    record = run_sweep(gen, tmp_path / "out")
    assert sorted(p["kind"] for p in record["points"]) == ["given", "independent"]  # full_sharing: false
    given = [p for p in record["points"] if p["kind"] == "given"]
    assert len(given) == 1 and given[0]["branch_points"] == [1, 0] and given[0]["label"] == "given b=1,0"
    assert "chosen elsewhere" in given[0]["obtained"] and "distillation" in given[0]["obtained"]
    assert str(independent_runs[1]) in given[0]["obtained"] and given[0]["teacher_run"] == str(independent_runs[1])
    assert not list((tmp_path / "work" / "teachers").glob("*.npy"))  # the reference's cache place stays free
    bert = BertConfig.from_hf(json.loads((tiny_bert_dir / "config.json").read_text()))
    for t, task in enumerate(gen.tasks):
        [cached] = (tmp_path / "work" / "teachers").glob(f"*/{task.name}.npy")
        module = SequenceClassifier(bert, task.num_labels, cfg.pooling)
        out = {run: predict(make_predict(module), restore_checkpoint(run / task.name / "final_params.msgpack", None),
                            gen.data.train[t], 8, BUCKETS, data_mesh()) for run in independent_runs}
        np.testing.assert_allclose(np.load(cached)[:, : task.num_labels], out[independent_runs[1]], rtol=1e-4,
                                   atol=1e-5)
        assert not np.allclose(out[independent_runs[0]], out[independent_runs[1]], atol=1e-3)
    assert given[0]["examples_seen"] == {t: json.loads((reference / t / "summary.json").read_text())[
        "train_examples_seen"] for t in TASKS}
    assert (tmp_path / "work" / "models" / "b_1-0" / "result.json").is_file()
    assert record["config"]["trees"] == [tree]
    deep = _config(tiny_bert_dir, independent_runs[:1], trees=[tree | {"branch_points": [1, gen.num_units + 1]}])
    with pytest.raises(ConfigError, match=r"trees\[0\].branch_points.*exceed"):
        ModelGenerator(deep, tmp_path / "work2", glue_dir=glue_dir, progress=False)


def test_claim_is_the_most_efficient_discrete_model_within_one_heldout_point():
    """Any discrete model of the sweep may make the claim (full sharing included), chosen on held-out scores only:
    the most efficient within 1 held-out point of the reference independent run; it is trained again per claim seed
    and judged on its dev mean over the seeds."""
    from types import SimpleNamespace

    from mgen_jax.search.judge import sweep_claim
    from mgen_jax.search.points import SweepPoint

    class Gen:
        cfg = SimpleNamespace(independent_dirs=["runs/a", "runs/b"], claim_seeds=[1, 2], claim_margin=1.0)
        tasks = [SimpleNamespace(name="A")]

        def __init__(self):
            self.trained = []

        def finetune_and_evaluate(self, b, warm, seed):
            self.trained.append((tuple(b), seed))
            return {"seed": seed, "scores": {"A": 60.0 + seed}, "mean_score": 60.0 + seed, "finetune_wall_clock_s": 2.0}

    point = lambda kind, label, eff, held, dev: SweepPoint(kind, label, {
        "efficiency": eff, "energy_ratio": 1 / eff, "heldout_mean_score": held, "branch_points": [int(eff)], "seed": 0,
        "scores": {"A": dev}, "mean_score": dev}, "")
    independent = {"seeds": [{"folder": "runs/a", "heldout_mean_score": 70.0, "mean_score": 62.0, "seed": 0},
                             {"folder": "runs/b", "heldout_mean_score": 10.0, "mean_score": 64.0, "seed": 1}]}
    points = [point("full sharing", "full", 5.0, 69.1, 99.0), point("search", "budget", 3.0, 70.5, 10.0),
              point("search", "cheap", 6.0, 68.9, 99.0), point("independent", "ind", 1.0, 99.0, 99.0)]
    gen = Gen()
    model_of = lambda g: lambda b, label, seed=None: g.finetune_and_evaluate(b, None, seed)
    claim = sweep_claim(gen.cfg, ["A"], points, independent, model_of(gen))
    assert claim["label"] == "full" and claim["kind"] == "full sharing" and claim["heldout_bar"] == 69.0
    assert gen.trained == [((5,), 1), ((5,), 2)] and claim["complete"] is True
    assert claim["dev_mean_score"] == pytest.approx((99.0 + 61.0 + 62.0) / 3)
    assert claim["independent_dev_mean_score"] == 63.0 and claim["drop_points"] == pytest.approx(63.0 - 74.0)
    # report_only: a claim seed still to train leaves the claim provisional, without a dev mean
    later = Gen()
    partial = sweep_claim(later.cfg, ["A"], points, independent, lambda b, label, seed=None: None if seed == 2 else
                          later.finetune_and_evaluate(b, None, seed))
    assert partial["label"] == "full" and partial["complete"] is False and "dev_mean_score" not in partial
    assert partial["seeds_finished"] == [0, 1] and partial["seeds_pending"] == [2]
    assert claim["finetune_wall_clock_s"] == 4.0 and partial["finetune_wall_clock_s"] == 2.0  # seeds trained so far
    points[0] = point("full sharing", "full", 5.0, 68.0, 99.0)  # now out of reach: the next most efficient
    other = Gen()
    assert sweep_claim(other.cfg, ["A"], points, independent, model_of(other))["label"] == "budget"


HOLDER = """
import sys, time
from mgen_jax.workfolder import lock_work_folder
lock = lock_work_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_model_folder_in_use_is_left_alone(tmp_path, tiny_bert_dir, glue_dir, independent_runs):
    """Two processes may share a work folder, each training its own models; a model folder whose lock another process
    holds is refused with its name, and neither a new generator nor the refused phase deletes that process's
    in-flight temporary file (the generator used to clean the whole work folder when it started)."""
    import subprocess
    import sys

    cfg = _config(tiny_bert_dir, independent_runs, claim_seeds=[])
    gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    folder = gen.model_dir([2, 4], 0)
    gen.run.check_phase(folder, FINETUNE_FIELDS.settings(cfg), "model folder")  # as the other run did when it started
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        in_flight = folder / ".checkpoint.msgpack.mgen-partial-abcd1234.msgpack"
        in_flight.write_bytes(b"half a checkpoint")
        gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
        with pytest.raises(ConfigError, match="in use by another run") as info:
            gen.finetune_and_evaluate([2, 4], None, seed=0)
        assert str(folder) in str(info.value) and in_flight.exists()
    finally:
        proc.kill()
        proc.wait()
    left = folder / ".result.json.mgen-partial-abcd1234.json"  # what a killed run left: cleaned when a run takes over
    left.write_text("{")
    record = gen.finetune_and_evaluate([2, 4], None, seed=0)
    assert record["branch_points"] == [2, 4] and not left.exists() and not in_flight.exists()


@pytest.mark.parametrize("margin, chosen", [(1.0, "b"), (3.0, "c"), (0.0, "a"), (0.5, "a")])
def test_claim_margin_sets_the_bar(margin, chosen):
    """The claim model: the most efficient discrete model whose held-out mean is at most ``claim_margin`` points
    below the reference independent run's (70.0 here); dev scores never enter the choice."""
    from types import SimpleNamespace

    from mgen_jax.search.judge import sweep_claim
    from mgen_jax.search.points import SweepPoint

    cfg = SimpleNamespace(independent_dirs=["ref"], claim_margin=margin, claim_seeds=())
    independent = {"seeds": [{"folder": "ref", "heldout_mean_score": 70.0, "mean_score": 60.0, "seed": 0}]}
    points = [SweepPoint("search", label, dict(branch_points=[1], heldout_mean_score=h, efficiency=e, energy_ratio=1 / e,
                                               scores={"A": dev}, mean_score=dev, seed=0, finetune_wall_clock_s=1.0), "")
              for label, h, e, dev in (("a", 70.2, 1.5, 10.0), ("b", 69.0, 2.0, 90.0), ("c", 67.5, 3.0, 90.0))]
    points.append(SweepPoint("independent", "independent", dict(heldout_mean_score=70.0, efficiency=1.0), ""))
    claim = sweep_claim(cfg, ["A"], points, independent, model=None)
    assert claim["label"] == chosen and claim["heldout_bar"] == 70.0 - margin


def test_claim_margin_is_checked(tiny_bert_dir):
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(ConfigError, match="claim_margin"):
            _config(tiny_bert_dir, [], independent_runs=None, search_task_weights=None, claim_seeds=[],
                    claim_margin=bad)
