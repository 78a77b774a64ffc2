"""The front at pre-registered budgets (search/front.py) on a tiny random BERT and real GLUE rows: report-only lists
what is missing, the held-out split of seed 0 chooses, every chosen and all-seed candidate gets every seed, the drop
interval resamples rows and seeds once every run kept its predictions, and the headline waits for a whole front."""

import dataclasses
import json

import jax
import pytest
import yaml

from mgen_jax.errors import ConfigError
from mgen_jax.search.config_file import nest
from mgen_jax.search.front import Candidate, Models, build_front, load_front_config, write_front
from mgen_jax.search.judge import Goal, read_front

from test_equal_budget import BUCKETS, HELDOUT, TASKS, _independent  # noqa: E402  (tests/search is on sys.path)


def _search_config(path, model, runs, **changes):
    values = dict(tasks=TASKS, model=str(model), independent_runs=[str(r) for r in runs], finetune_budget="independent",
                  finetune_init="pretrained", lr_finetune=1e-3, max_length=64, buckets=list(BUCKETS), per_task_batch=4,
                  length_window=16, max_dev_per_task=None, warmup_steps=0, search_steps=0, lambdas=[],
                  uniform_branch_points=[], heuristic_thresholds=[], redundancy_file=None, energy_budgets=[],
                  full_sharing=False, checkpoint_every_steps=5,
                  gradient={"search_fraction": 0.5, "logit_rows": 4}, **HELDOUT)
    values.update(changes)
    path.write_text(yaml.safe_dump(nest(values)))
    return str(path)


@pytest.fixture(scope="module")
def front_setup(tmp_path_factory, tiny_bert_dir, glue_dir):
    root = tmp_path_factory.mktemp("front")
    runs = [root / "ind0", root / "ind1"]
    for seed, run in enumerate(runs):
        _independent(run, tiny_bert_dir, glue_dir, seed, max_dev_examples=None)  # a paired bootstrap: every row
    search = _search_config(root / "tiny.yaml", tiny_bert_dir, runs)
    front = {"name": "front_tiny", "reference": search, "seeds": [0, 1], "bootstrap_samples": 50,
             "head_to_head": {"dev_goal_budget": 0.95},
             "budgets": [{"label": "budget 0.95", "energy_ratio": 0.95, "candidates": [
                 {"label": "tree", "config": search, "branch_points": [1, 1], "all_seeds": True},
                 {"label": "full sharing", "config": search, "branch_points": [2, 2]},
                 {"label": "gradient", "config": search, "energy_target": 0.95, "all_seeds": True}]}],
             "baselines": [{"label": "uniform b=1", "config": search, "branch_points": [1, 1]}]}
    (root / "front.yaml").write_text(yaml.safe_dump(front))
    return root, load_front_config(root / "front.yaml")


def test_front_chooses_on_heldout_and_reports_every_seed(front_setup, glue_dir):
    root, cfg = front_setup
    models = Models(glue_dir=glue_dir, progress=False, runs_root=str(root / "runs"))
    before = build_front(cfg, models, report_only=True)
    assert not before["complete"] and before["headline"]["met"] is None
    assert any("seed 0" in p for p in before["pending"])
    assert not (root / "runs").exists() or not list((root / "runs").rglob("result.json"))  # nothing trained

    record = build_front(cfg, models)
    assert record["complete"] and record["pending"] == []
    point = record["points"][0]
    first = {c["label"]: c["heldout_mean_score_seed0"] for c in point["candidates"]}
    assert point["chosen"] == max(first, key=first.get)  # the held-out split of seed 0 chose
    assert set(point["runs"]) == {point["chosen"], "gradient", "tree"}  # the choice and the all-seeds candidates
    gradient = point["runs"]["gradient"]
    assert gradient["seeds"] == [0, 1] and gradient["complete"]
    assert all(r <= 0.95 * (1 + 1e-6) for r in gradient["energy_ratio_by_seed"])
    rep = point["representative"]
    assert rep["drop_points"] == pytest.approx(record["independent"]["dev_mean_score"] - rep["dev_mean_score"])
    assert rep["drop_interval"]["resampled"] == "rows (paired) and seeds"  # every run kept its predictions
    assert rep["drop_interval"]["low"] <= rep["drop_points"] <= rep["drop_interval"]["high"]
    assert record["headline"]["met"] is not None and "goal" in record["headline"]["sentence"]
    assert [b["label"] for b in record["baselines"]] == ["uniform b=1"]

    paths = write_front(record, root / "out")
    assert [p.name for p in paths] == ["front_tiny.json", "front_tiny.png", "front_tiny_head_to_head.json",
                                       "front_tiny_head_to_head.png"]
    assert json.loads(paths[0].read_text())["name"] == "front_tiny" and paths[1].stat().st_size > 0
    h2h = json.loads(paths[2].read_text())  # the gradient search against the all-seeds tree, read from the front
    methods = h2h["budgets"][0]["methods"]
    assert set(methods) == {"gradient", "tree"} and h2h["complete"]
    assert h2h["goals"]["dev_within_independent"]["drop_points"] == pytest.approx(
        record["independent"]["dev_mean_score"] - methods["gradient"]["dev_mean_score"])
    assert methods["tree"]["heldout_mean_score"] == pytest.approx(point["runs"]["tree"]["heldout_mean_score"])
    assert h2h["budgets"][0]["heldout_difference"] == pytest.approx(
        methods["gradient"]["heldout_mean_score"] - methods["tree"]["heldout_mean_score"])
    again = build_front(cfg, models, report_only=True)  # resumes from result files: nothing left, same numbers
    assert again["points"] == record["points"]

    # the same run folders under a search config whose gradient section changed: refused, never read as its runs
    other = root / "changed"
    other.mkdir()
    search = yaml.safe_load((root / "tiny.yaml").read_text())
    search["gradient"]["search_fraction"] = 0.25
    (other / "tiny.yaml").write_text(yaml.safe_dump(search))
    front = yaml.safe_load((root / "front.yaml").read_text())
    for c in front["budgets"][0]["candidates"] + front["baselines"]:
        c["config"] = str(other / "tiny.yaml")
    front["reference"] = str(other / "tiny.yaml")
    (other / "front.yaml").write_text(yaml.safe_dump(front))
    with pytest.raises(ConfigError, match="search_fraction"):
        build_front(load_front_config(other / "front.yaml"), Models(glue_dir=glue_dir, progress=False,
                                                                    runs_root=str(root / "runs")), report_only=True)


def test_front_config_errors_name_the_field(tmp_path):
    bad = {"name": "x", "reference": "r.yaml", "budgets": [{"label": "b", "energy_ratio": 0.5, "candidates": [
        {"label": "c", "config": "r.yaml", "branch_points": [1, 1], "energy_target": 0.5}]}]}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="exactly one of 'branch_points'"):
        load_front_config(tmp_path / "f.yaml")
    bad["budgets"][0]["energy_ratio"] = 1.5
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"budgets\[0\].energy_ratio"):
        load_front_config(tmp_path / "f.yaml")


@pytest.mark.parametrize("candidate, words", [
    ({"branch_points": [1, 1, 1]}, r"candidate 'c' .*branch points \[1, 1, 1\] do not fit 2 tasks and 4 units"),
    ({"branch_points": [1, 5]}, "do not fit 2 tasks and 4 units"),
    ({"energy_target": 0.01}, r"candidate 'c' .*energy target 0.01 is not feasible: it must be a number in \["),
    ({"energy_target": 0.95, "gradient": {"search_fraction": 2}}, "gradient.search_fraction"),
    ({"energy_target": 0.95, "gradient": {"nonsense": 1}}, r"gradient: unknown field\(s\) \['nonsense'\]"),
])
def test_candidates_are_checked_against_their_model_before_anything_runs(front_setup, glue_dir, tmp_path, candidate,
                                                                         words):
    """A front whose candidate cannot run on its config's model and tasks fails naming it, --report-only too (it
    used to report such a front as merely pending)."""
    root, cfg = front_setup
    bad = dataclasses.replace(cfg, budgets=(dataclasses.replace(cfg.budgets[0], candidates=(
        Candidate(label="c", config=cfg.reference, **candidate),)),))
    models = Models(glue_dir=glue_dir, progress=False, runs_root=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match=words):
        build_front(bad, models, report_only=True)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("result.json"))


def test_read_front_waits_for_a_complete_front_and_reads_the_goal():
    def rep(label, efficiency, drop):
        return {"label": label, "complete": True, "efficiency": efficiency, "efficiency_text": f"{efficiency:.3f}x",
                "energy_ratio_max": 1 / efficiency, "dev_mean_score": 69 - drop, "drop_points": drop,
                "drop_interval": {"low": drop - 0.5, "high": drop + 0.5, "level": 0.9}, "branch_points_by_seed": []}

    record = {"seeds": [0, 1, 2], "points": [{"representative": rep("a", 2.0, -0.5)},
                                             {"representative": rep("b", 4.5, 0.8)},
                                             {"representative": rep("c", 5.0, 1.2)}]}
    goal = Goal(efficiency=4.4, max_drop_points=1.0, stretch_drop_points=0.5)
    out = read_front(record, goal)
    assert out["met"] is True and out["best_within_max_drop"]["label"] == "b"
    assert out["best_within_stretch_drop"]["label"] == "a" and out["stretch_met"] is False
    assert "4.500x" in out["sentence"] and "0.80 points below" in out["sentence"]
    record["points"][1]["representative"]["complete"] = False
    assert read_front(record, goal)["met"] is None


def test_bench_gradient_run_times_both_and_resumes(front_setup, glue_dir, tmp_path, monkeypatch, capsys):
    """experiments/bench_gradient_run.py on the tiny setup: one equal-budget model and one gradient run in a work
    folder of their own, the ratio of their training wall clocks; a second invocation trains nothing and keeps the
    times recorded by the first."""
    import importlib.util
    import sys
    from pathlib import Path

    root, _ = front_setup
    path = Path(__file__).parents[2] / "experiments" / "bench_gradient_run.py"
    spec = importlib.util.spec_from_file_location("bench_gradient_run", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["bench", "--config", str(root / "tiny.yaml"), "--target", "0.95", "--tree", "1,1", "--workdir",
            str(tmp_path / "w"), "--out", str(tmp_path / "bench.json"), "--glue-dir", str(glue_dir)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    record = json.loads((tmp_path / "bench.json").read_text())
    model, run = record["equal_budget_model"], record["gradient_run"]
    assert model["branch_points"] == [1, 1] and run["energy_ratio"] <= 0.95
    assert run["search_wall_clock_s"] > 0 and run["train_wall_clock_s"] > 0
    assert record["run_over_model_wall_clock"] == run["training_wall_clock_s"] / model["training_wall_clock_s"]
    assert len(model["load_before"]) == 3 and record["goal_met"] == (record["run_over_model_wall_clock"] <= 1.15)
    assert record["earlier_measurements"] == []
    assert record["compilation_cache_dir"] == jax.config.jax_compilation_cache_dir  # the tests' own (conftest.py)
    bench.main()  # resumes: both parts finished, nothing trains, the first invocation's times kept
    assert json.loads((tmp_path / "bench.json").read_text()) == record

    # a new measurement (another work folder) into the same record keeps the earlier one
    monkeypatch.setattr(sys, "argv", argv[:argv.index("--workdir") + 1] + [str(tmp_path / "w2")]
                        + argv[argv.index("--workdir") + 2:])
    bench.main()
    again = json.loads((tmp_path / "bench.json").read_text())
    assert again["gradient_run"] != record["gradient_run"]  # timed anew
    assert again["earlier_measurements"] == [{k: v for k, v in record.items() if k != "earlier_measurements"}]


def _bench_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "experiments" / "bench_gradient_run.py"
    spec = importlib.util.spec_from_file_location("bench_gradient_run", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_gradient_run_trains_two_of_the_fronts_runs(front_setup, glue_dir, tmp_path, monkeypatch):
    """With --front, the benchmark's two parts are runs of the front still to train, in the folders the front reads:
    afterwards the front reports them as finished with the benchmark's trees and seeds; a run already trained is
    refused (its wall clock was not measured by the benchmark), and so is a label the front does not have."""
    import sys

    root, cfg = front_setup
    bench = _bench_module()
    runs = tmp_path / "runs"
    common = ["bench", "--front", str(root / "front.yaml"), "--runs-root", str(runs), "--glue-dir", str(glue_dir),
              "--out", str(tmp_path / "bench.json")]
    monkeypatch.setattr(sys, "argv", common + ["--workdir", str(tmp_path / "w"), "--front-model", "budget 0.95:tree:1",
                                               "--front-run", "budget 0.95:gradient:1"])
    bench.main()
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["seed"] == {"model": 1, "run": 1} and record["front"]["run"] == "budget 0.95:gradient:1"
    assert record["equal_budget_model"]["branch_points"] == [1, 1] and record["gradient_run"]["energy_ratio"] <= 0.95

    models = Models(glue_dir=glue_dir, progress=False, runs_root=str(runs))
    tree, _, grad = cfg.budgets[0].candidates
    assert models.run(tree, 1, train=False)["branch_points"] == [1, 1]
    assert models.run(grad, 1, train=False)["branch_points"] == record["gradient_run"]["branch_points"]
    assert models.run(tree, 0, train=False) is None  # nothing else trained

    monkeypatch.setattr(sys, "argv", common + ["--workdir", str(tmp_path / "w2"), "--front-model",
                                               "budget 0.95:tree:1", "--front-run", "budget 0.95:gradient:0"])
    with pytest.raises(ConfigError, match="already trained"):
        bench.main()
    for model, run, words in (("budget 0.95:nope:0", "budget 0.95:gradient:0", "no candidate 'nope'"),
                              ("budget 0.95:gradient:0", "budget 0.95:gradient:0", "is a gradient candidate"),
                              ("budget 0.95:tree:7", "budget 0.95:gradient:0", "seed '7'"),
                              ("budget 0.5:tree:0", "budget 0.95:gradient:0", "no budget labelled 'budget 0.5'")):
        monkeypatch.setattr(sys, "argv", common + ["--workdir", str(tmp_path / "w3"), "--front-model", model,
                                                   "--front-run", run])
        with pytest.raises(ConfigError, match=words):
            bench.main()
