"""The gradient search against enumeration (search/head_to_head.py) on planted front records: the held-out goal is
read per budget and pending while a seed is missing, the dev goal against the independent models, the wall clock
from the benchmark's record only, trees varying over seeds are counted, ratios are never rounded across a goal; the
front config's head_to_head settings are checked; the table and plot are written."""

import numpy as np
import pytest
import yaml

from mgen_jax.errors import ConfigError
from mgen_jax.search.head_to_head import HeadToHead, compare_methods, head_to_head_budgets

GOALS = HeadToHead(dev_goal_budget=0.334)

TASKS = ["A", "B"]


def _run(label, kind, dev, held, trees, ratios, *, target=None):
    """A front's summary of one candidate's seeds (search/front.py: _runs_summary), per-task scores planted so that
    each seed's mean is ``dev`` / ``held``."""
    out = {"label": label, "kind": kind, "config": "c.yaml", "seeds": list(range(len(dev))), "complete": len(dev) == 3,
           "branch_points_by_seed": trees, "energy_ratio_by_seed": ratios, "crossbars_by_seed": [100] * len(dev),
           "dev_mean_score_by_seed": dev, "dev_mean_score": float(np.mean(dev)),
           "dev_scores_by_seed": [{"A": d + 1.0, "B": d - 1.0} for d in dev],
           "heldout_mean_score_by_seed": held, "heldout_mean_score": float(np.mean(held)),
           "heldout_scores_by_seed": [{"A": h + 2.0, "B": h - 2.0} for h in held],
           "finetune_wall_clock_s_by_seed": [100.0] * len(dev)}
    if kind == "gradient":
        out |= {"energy_target": target, "gradient_overrides": {}, "repaired_by_seed": [False] * len(dev),
                "mu_converged_by_seed": [True] * len(dev), "search_wall_clock_s_by_seed": [10.0] * len(dev),
                "search_fraction_by_seed": [0.2] * len(dev)}
    return out


def _front(grad_05_held=(71.0, 70.0, 70.5), grad_334_dev=(68.5, 68.0, 69.0)):
    budgets, points = [], []
    for ratio, held_g, dev_g, trees_g in ((0.5, list(grad_05_held), [69.0, 69.5, 70.0], [[2, 1]] * 3),
                                          (0.334, [69.0, 69.2, 69.1], list(grad_334_dev), [[2, 2], [2, 2], [1, 2]])):
        label = f"budget {ratio:g}"
        budgets.append({"label": label, "energy_ratio": ratio, "candidates": [
            {"label": "enumeration tree", "branch_points": [2, 1], "energy_target": None, "all_seeds": True},
            {"label": "gradient search", "branch_points": None, "energy_target": ratio, "all_seeds": True},
            {"label": "other tree", "branch_points": [1, 1], "energy_target": None, "all_seeds": False}]})
        runs = {"enumeration tree": _run("enumeration tree", "tree", [69.0, 69.4, 69.8], [70.0, 70.2, 70.4],
                                         [[2, 1]] * 3, [0.33383] * 3),
                "gradient search": _run("gradient search", "gradient", dev_g, held_g, trees_g,
                                        [0.33383, 0.33383, 0.3301], target=ratio)}
        points.append({"budget": label, "energy_budget": ratio, "chosen": "enumeration tree", "runs": runs})
    budgets.append({"label": "full sharing", "energy_ratio": 0.2, "candidates": [
        {"label": "full", "branch_points": [2, 2], "energy_target": None, "all_seeds": False}]})
    points.append({"budget": "full sharing", "energy_budget": 0.2, "chosen": "full", "runs": {}})
    return {"name": "front_planted", "tasks": TASKS, "seeds": [0, 1, 2], "pending": [],
            "config": {"budgets": budgets}, "points": points,
            "independent": {"label": "independent models", "seeds": [0, 1, 2], "dev_mean_score": 69.24,
                            "dev_mean_score_std": 0.33, "dev_mean_score_by_seed": [69.0, 69.2, 69.5],
                            "dev_scores_mean": {"A": 70.0, "B": 68.48}, "heldout_mean_score": 71.1,
                            "heldout_mean_score_std": 0.5, "heldout_mean_score_by_seed": [71.0, 70.7, 71.6]}}


def _bench(ratio, search_fraction=0.2):
    run = {"training_wall_clock_s": 100.0 * ratio, "search_wall_clock_s": 20.0, "load_before": [2.1, 2.0, 2.0]}
    return {"run_over_model_wall_clock": ratio, "search_fraction": search_fraction, "gradient_run": run,
            "equal_budget_model": {"training_wall_clock_s": 100.0, "load_before": [2.0, 2.0, 2.0]}}


def test_only_budgets_with_both_methods_on_every_seed_are_compared():
    front = _front()
    assert [(p["budget"], g, t) for p, g, t in head_to_head_budgets(front)] == [
        ("budget 0.5", "gradient search", "enumeration tree"), ("budget 0.334", "gradient search", "enumeration tree")]
    for budget in front["config"]["budgets"]:
        for c in budget["candidates"]:
            c["all_seeds"] = c["label"] == "gradient search"
    assert head_to_head_budgets(front) == []
    with pytest.raises(ValueError, match="no budget with a gradient-search candidate"):
        compare_methods(front)


def test_heldout_goal_is_read_per_budget():
    record = compare_methods(_front())  # gradient ahead at 0.5 (70.5 vs 70.2), behind at 0.334 (69.1 vs 70.2)
    by = {b["budget"]: b for b in record["budgets"]}
    assert by["budget 0.5"]["heldout_difference"] == pytest.approx(0.3)
    assert by["budget 0.334"]["heldout_difference"] == pytest.approx(-1.1)
    goal = record["goals"]["heldout_at_least_enumeration"]
    assert goal["by_budget"] == {"budget 0.5": True, "budget 0.334": False} and goal["met"] is False
    assert "+0.30" in goal["sentence"] and "-1.10" in goal["sentence"]
    # seed 0 took part in choices: the later seeds' held-out means are compared apart (0.5: 70.25 vs 70.3)
    assert by["budget 0.5"]["heldout_difference_later_seeds"] == pytest.approx(-0.05)
    assert "later seeds only -0.05" in goal["sentence"]
    assert record["complete"] and record["goal_settings"]["dev_goal_budget"] is None  # no dev goal unless set
    tied = _front()
    tied["points"][1]["runs"]["gradient search"] = _run("gradient search", "gradient", [69.0] * 3, [70.0, 70.2, 70.4],
                                                        [[2, 1]] * 3, [0.33] * 3, target=0.334)
    assert compare_methods(tied)["goals"]["heldout_at_least_enumeration"]["met"] is True  # a tie is "at least"


def test_per_task_means_trees_and_ratios():
    record = compare_methods(_front())
    g = record["budgets"][1]["methods"]["gradient search"]
    assert g["dev_scores_mean"] == pytest.approx({"A": 69.5, "B": 67.5})
    assert g["heldout_scores_mean"] == pytest.approx({"A": 71.1, "B": 67.1})
    assert g["dev_mean_score_std"] == pytest.approx(0.5)
    assert g["distinct_trees"] == 2 and record["budgets"][0]["methods"]["gradient search"]["distinct_trees"] == 1
    assert g["efficiency_by_seed"] == ["2.996x", "2.996x", "3.029x"]  # 0.33383 is not "3.00x"
    assert g["repaired_by_seed"] == [False] * 3 and g["search_wall_clock_s_by_seed"] == [10.0] * 3


def test_dev_goal_against_the_independent_models():
    met = compare_methods(_front(grad_334_dev=(68.5, 68.0, 69.0)), GOALS)["goals"]["dev_within_independent"]
    assert met["met"] is True and met["drop_points"] == pytest.approx(0.74)
    missed = compare_methods(_front(grad_334_dev=(68.0, 68.2, 68.5)), GOALS)["goals"]["dev_within_independent"]
    assert missed["met"] is False and missed["drop_points"] == pytest.approx(69.24 - np.mean([68.0, 68.2, 68.5]))
    unset = compare_methods(_front())["goals"]["dev_within_independent"]
    assert unset["met"] is None and "no dev goal set" in unset["sentence"]
    elsewhere = compare_methods(_front(), HeadToHead(dev_goal_budget=0.25))["goals"]["dev_within_independent"]
    assert elsewhere["met"] is None and "no head-to-head budget at 0.25" in elsewhere["sentence"]


def test_a_missing_seed_leaves_the_goals_pending():
    front = _front()
    run = front["points"][0]["runs"]["gradient search"]
    for key in ("seeds", "branch_points_by_seed", "energy_ratio_by_seed", "crossbars_by_seed",
                "dev_mean_score_by_seed", "dev_scores_by_seed", "heldout_mean_score_by_seed", "heldout_scores_by_seed",
                "finetune_wall_clock_s_by_seed", "repaired_by_seed", "mu_converged_by_seed",
                "search_wall_clock_s_by_seed"):
        run[key] = run[key][:2]
    run["complete"] = False
    front["pending"] = ["budget 0.5: gradient search, seed 2", "budget 0.25: enumeration tree, seed 1"]
    record = compare_methods(front, GOALS)
    assert not record["complete"] and record["pending"] == ["budget 0.5: gradient search, seed 2"]
    goal = record["goals"]["heldout_at_least_enumeration"]
    assert goal["met"] is None and goal["by_budget"]["budget 0.5"] is None and "budget 0.5: pending" in goal["sentence"]
    assert record["goals"]["dev_within_independent"]["drop_points"] == pytest.approx(69.24 - 68.5)  # 0.334 is whole


def test_a_method_without_runs_or_heldout_scores_is_pending_not_a_crash():
    front = _front()
    del front["points"][0]["runs"]["gradient search"]  # no seed of the gradient search has finished at 0.5
    for run in front["points"][1]["runs"].values():  # a config without a held-out split
        run["heldout_mean_score"], run["heldout_mean_score_by_seed"] = None, [None] * 3
        run["heldout_scores_by_seed"] = [None] * 3
    record = compare_methods(front)
    assert list(record["budgets"][0]["methods"]) == ["enumeration tree"] and not record["budgets"][0]["complete"]
    goal = record["goals"]["heldout_at_least_enumeration"]
    assert goal["met"] is None and goal["by_budget"] == {"budget 0.5": None, "budget 0.334": None}
    assert "budget 0.334: no held-out scores" in goal["sentence"]
    assert "heldout_scores_mean" not in record["budgets"][1]["methods"]["gradient search"]


def test_budgets_that_are_not_a_head_to_head_are_listed():
    front = _front()
    front["config"]["budgets"][0]["candidates"].append(
        {"label": "gradient search 2", "branch_points": None, "energy_target": 0.5, "all_seeds": True})
    record = compare_methods(front)
    assert [b["budget"] for b in record["budgets"]] == ["budget 0.334"]
    assert record["not_compared"] == ["budget 0.5: 2 all-seeds gradient candidate(s) and 1 all-seeds tree(s); a "
                                      "head-to-head needs exactly one of each"]


def test_wall_clock_goal_comes_from_the_benchmark_only():
    assert compare_methods(_front())["goals"]["wall_clock"]["met"] is None
    inside = compare_methods(_front(), bench=_bench(1.12))["goals"]["wall_clock"]
    assert inside["met"] is True and "1.120x" in inside["sentence"] and "load" in inside["sentence"]
    over = compare_methods(_front(), HeadToHead(wall_clock_goal=1.1), bench=_bench(1.12))["goals"]["wall_clock"]
    assert over["met"] is False
    other = compare_methods(_front(), bench=_bench(1.05, search_fraction=0.1))["goals"]["wall_clock"]
    assert other["met"] is None and "rerun" in other["sentence"]  # it timed other settings than the runs


def test_settings_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="wall_clock_goal"):
        HeadToHead(wall_clock_goal=0.5)
    with pytest.raises(ConfigError, match="dev_goal_budget"):
        HeadToHead(dev_goal_budget=float("nan"))
    with pytest.raises(ConfigError, match="typo"):
        HeadToHead.from_mapping({"typo": 1}, "front config f.yaml: head_to_head")
    with pytest.raises(ConfigError, match="f.yaml: head_to_head: .*wall_clock_goal"):
        HeadToHead.from_mapping({"wall_clock_goal": 0}, "front config f.yaml: head_to_head")
    from mgen_jax.search.front import load_front_config

    front = {"name": "f", "reference": "r.yaml", "head_to_head": [1], "budgets": [
        {"label": "b", "energy_ratio": 0.5, "candidates": [{"label": "c", "config": "r.yaml", "branch_points": [1]}]}]}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(front))
    with pytest.raises(ConfigError, match="'head_to_head' must be a mapping"):
        load_front_config(tmp_path / "f.yaml")
    front["head_to_head"] = False
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(front))
    with pytest.raises(ConfigError, match="'head_to_head' must be a mapping"):
        load_front_config(tmp_path / "f.yaml")
    front["head_to_head"] = {"wall_clock_benchmark": str(tmp_path / "absent.json")}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(front))
    assert load_front_config(tmp_path / "f.yaml").head_to_head.benchmark() is None  # not run yet: pending
    front["budgets"][0]["candidates"] = [{"label": "t", "config": "r.yaml", "branch_points": [1], "all_seeds": True},
                                         {"label": "g", "config": "r.yaml", "energy_target": 0.5, "all_seeds": True}]
    front["head_to_head"] = {"dev_goal_budget": 0.33}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(front))
    with pytest.raises(ConfigError, match=r"head_to_head.dev_goal_budget' \(0.33\) is not the energy ratio"):
        load_front_config(tmp_path / "f.yaml")


def test_table_and_plot(tmp_path):
    from mgen_jax.cli.search import head_to_head_table
    from mgen_jax.search.plots import plot_head_to_head

    record = compare_methods(_front(), bench=_bench(1.05))
    table = head_to_head_table(record)
    assert table.count("| budget 0.334 |") == 2 and "2,2 / 2,2 / 1,2" in table and "3.029x" in table
    front = _front()
    del front["points"][0]["runs"]["gradient search"]  # not one seed of it yet
    front["pending"] = [f"budget 0.5: gradient search, seed {s}" for s in range(3)]
    partial = compare_methods(front)
    assert len(partial["pending"]) == 3 and "| budget 0.5 | gradient search |" not in head_to_head_table(partial)
    for name, rec in (("full.png", record), ("partial.png", partial)):
        path = plot_head_to_head(rec, tmp_path / name)
        assert path.stat().st_size > 10_000
