"""The sentences that read a record against its goal (mgen_jax/search/judge.py); the command line only prints them."""

import doctest

from mgen_jax.search import judge
from mgen_jax.search.judge import pending_line, sweep_headline


def test_sweep_headline_says_above_or_below():
    claim = {"chosen_on": "heldout", "label": "budget 0.5000", "seeds": [0, 1, 2], "efficiency": 2.044,
             "energy_ratio": 1 / 2.044, "independent_seeds": [0, 1, 2], "dev_mean_score": 69.79}
    goal = {"met": False}
    above = sweep_headline({"claim": claim | {"drop_points": -0.55}, "goal_3x_within_1_point": goal})
    below = sweep_headline({"claim": claim | {"drop_points": 1.25}, "goal_3x_within_1_point": goal})
    assert "2.044x at 0.55 points above" in above and "3 seeds" in above and "goal met: False" in above
    assert "1.25 points below" in below
    assert sweep_headline({"claim": claim | {"dev_mean_score": None}}) is None
    assert sweep_headline({"claim": None}) is None


def test_sweep_headline_never_rounds_up_to_the_goal():
    claim = {"chosen_on": "heldout", "label": "b", "seeds": [0], "energy_ratio": 1 / 2.9996, "independent_seeds": [0],
             "dev_mean_score": 80.0, "drop_points": 0.5}
    assert sweep_headline({"claim": claim}).split("): ")[1].startswith("2.9996x at 0.50 points below")


def test_pending_line():
    assert pending_line([]) is None
    assert pending_line(["a", "b"], "run(s)") == "partial: 2 run(s) still to train: a; b"


def test_docstring_examples():
    assert doctest.testmod(judge).failed == 0


def test_the_sweep_goal_is_read_from_the_config():
    """goal_efficiency and goal_max_drop_points set the bar of goal_3x_within_1_point (the key keeps its name for
    the record's format); at their defaults (3x within 1 point) a config's to_dict, hence a record's config, leaves
    them out, so that records written before them are rebuilt equal."""
    from pathlib import Path

    import pytest

    from mgen_jax.errors import ConfigError
    from mgen_jax.search.config import load_search_config
    from mgen_jax.search.points import SweepPoint

    quick = Path(__file__).parents[2] / "configs" / "search" / "quick.yaml"
    default = load_search_config(quick)
    assert judge.sweep_goal(default) == judge.Goal(efficiency=3.0, max_drop_points=1.0)
    assert "goal_efficiency" not in default.to_dict() and "goal_max_drop_points" not in default.to_dict()
    strict = load_search_config(quick, goal_efficiency=4.4, goal_max_drop_points=0.5)
    assert strict.to_dict()["goal_efficiency"] == 4.4 and strict.to_dict()["goal_max_drop_points"] == 0.5
    for bad in ({"goal_efficiency": 0.5}, {"goal_max_drop_points": -1.0}, {"goal_efficiency": float("nan")}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_search_config(quick, **bad)

    point = lambda label, efficiency, score: SweepPoint("search", label, {
        "efficiency": efficiency, "energy_ratio": 1 / efficiency, "mean_score": score, "branch_points": [1]}, "")
    reference = SweepPoint("independent", "independent", {"mean_score": 80.0}, "")
    search = [point("a", 3.2, 79.5), point("b", 4.6, 79.6), point("c", 5.0, 78.0)]
    loose = judge.sweep_goal_reading(search, reference, None, judge.sweep_goal(default))
    assert loose["met"] is True and loose["models"] == ["a", "b"] and loose["best_efficiency_within_1_point"] == 4.6
    tight = judge.sweep_goal_reading(search, reference, None, judge.sweep_goal(strict))
    assert tight["met"] is True and tight["models"] == ["b"]
    claim = {"label": "a", "efficiency": 3.2, "drop_points": 0.3, "seeds": [0, 1], "independent_seeds": [0, 1]}
    assert judge.sweep_goal_reading(search, reference, claim, judge.sweep_goal(default))["met"] is True
    assert judge.sweep_goal_reading(search, reference, claim, judge.sweep_goal(strict))["met"] is False
