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
