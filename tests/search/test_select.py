"""Budget selection (search/select.py) against brute force, hand computations and the exact simulator."""

import itertools

import numpy as np
import pytest

from mgen_jax import cost, hw
from mgen_jax.errors import ConfigError
from mgen_jax.search import select
from mgen_jax.sim import simulate
from mgen_jax.workload import fixed_trace


def test_all_branch_points_and_its_limit(monkeypatch):
    trees = select.all_branch_points(3, 4)
    assert trees.shape == (125, 3) and len({tuple(t) for t in trees}) == 125
    assert trees.min() == 0 and trees.max() == 4
    monkeypatch.setattr(select, "MAX_TREES", 100)
    with pytest.raises(ConfigError, match="125 trees"):
        select.all_branch_points(3, 4)


def test_tree_energy_ratios_are_the_simulators(isaac, tiny_arch):
    """Chunked and padded (chunk 7 of 25 trees): every ratio equals the exact simulator's energy / independent."""
    labels = (2, 1)
    tables = cost.build_tables(isaac, tiny_arch, labels)
    workload = cost.fixed_workload(2, 40)
    trace = fixed_trace(2, 40)
    energy = lambda b: simulate(isaac, tiny_arch, hw.SharingTree.from_branch_points([int(x) for x in b], 4), trace,
                                num_labels=labels).total_energy_j
    independent = energy([0, 0])
    trees = select.all_branch_points(2, 4)
    ratios = select.tree_energy_ratios(trees, tables, workload, independent, chunk=7)
    assert ratios.shape == (25,)
    for b, r in zip(trees, ratios):
        assert r == pytest.approx(energy(b) / independent, rel=1e-5)
    assert ratios[0] == pytest.approx(1.0, rel=1e-5) and ratios.argmin() == 24  # b = (0, 0) and (U, U)


def test_estimated_loss_by_hand():
    profile = np.array([[1.0, 2.0], [1.5, 2.0], [3.0, 2.5]])  # [U + 1 = 3, T = 2]
    trees = np.array([[0, 0], [1, 2], [2, 1]])
    loss = select.estimated_loss(profile, [2.0, 10.0], trees)
    np.testing.assert_allclose(loss, [0.0, 2.0 * 0.5 + 10.0 * 0.5, 2.0 * 2.0 + 0.0])
    with pytest.raises(ConfigError, match="do not match"):
        select.estimated_loss(profile, [1.0], trees)


def test_select_within_budget_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    trees = select.all_branch_points(3, 3)
    profile = np.cumsum(rng.uniform(0, 1, (4, 3)), axis=0)
    weights = rng.uniform(0.5, 5, 3)
    ratios = rng.uniform(0.2, 1.0, len(trees))
    ratios[0] = 1.0
    loss = select.estimated_loss(profile, weights, trees)
    previous = np.inf
    for budget in (1.0, 0.8, 0.6, 0.4, 0.25):
        got = select.select_within_budget(trees, ratios, loss, budget)
        best = min((sum(weights[t] * (profile[b[t], t] - profile[0, t]) for t in range(3)), i)
                   for i, b in enumerate(trees) if ratios[i] <= budget)
        assert got["estimated_loss"] == pytest.approx(best[0])
        assert got["branch_points"] == trees[best[1]].tolist() and got["cost_model_energy_ratio"] <= budget
        assert got["feasible_trees"] == int((ratios <= budget).sum())
        assert got["estimated_loss"] >= previous - 1e-12 or previous == np.inf  # a smaller budget never helps
        previous = got["estimated_loss"]
    assert select.select_within_budget(trees, ratios, loss, 1.0)["branch_points"] == [0, 0, 0]


def test_select_ties_and_errors():
    trees = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    ratios = np.array([1.0, 0.7, 0.6, 0.4], dtype=np.float32)
    loss = np.array([0.0, 1.0, 1.0, 3.0])
    assert select.select_within_budget(trees, ratios, loss, 0.75)["branch_points"] == [0, 1]  # tie: less energy
    # a float32 ratio that rounds a hair above the float64 budget is still within it
    assert select.select_within_budget(trees, ratios, loss, 0.4 * (1 - 1e-8))["branch_points"] == [1, 1]
    with pytest.raises(ConfigError, match="no tree"):
        select.select_within_budget(trees, ratios, loss, 0.3)
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            select.select_within_budget(trees, ratios, loss, bad)


def test_lambda_trade_off_misses_what_a_budget_finds():
    """Why budgets: a tree inside the convex hull of (ratio, loss) is the budget optimum but no lambda's argmin."""
    trees = np.array([[0], [1], [2]])
    ratios = np.array([1.0, 0.6, 0.2])
    loss = np.array([0.0, 3.0, 4.0])  # (0.6, 3) lies above the segment from (1, 0) to (0.2, 4)
    assert select.select_within_budget(trees, ratios, loss, 0.6)["branch_points"] == [1]
    picks = {int(np.argmin(loss + lam * ratios)) for lam in np.linspace(0, 50, 2001)}
    assert picks == {0, 2}


def test_weights_change_the_pick():
    trees = np.array(list(itertools.product(range(3), repeat=2)))
    profile = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    ratios = np.array([1.0 - 0.2 * (a + b) for a, b in trees])
    cheap_first = select.estimated_loss(profile, [1.0, 10.0], trees)
    cheap_second = select.estimated_loss(profile, [10.0, 1.0], trees)
    assert select.select_within_budget(trees, ratios, cheap_first, 0.6)["branch_points"] == [2, 0]
    assert select.select_within_budget(trees, ratios, cheap_second, 0.6)["branch_points"] == [0, 2]


def test_budget_points_at_baselines_one_model_per_tree(monkeypatch):
    """budgets_at_baselines adds the baselines' ratios strictly between full sharing's and 1; two budgets that pick
    the same tree give one fine-tuned model that lists both."""
    from types import SimpleNamespace

    import mgen_jax.search.baselines as baselines
    from mgen_jax.search.points import SweepPoint

    picks = {0.9: [1, 1], 0.7: [2, 2], 0.5: [2, 2]}
    tuned = []
    monkeypatch.setattr(baselines, "pick_within_budget", lambda gen, budget, warm: {
        "branch_points": picks[budget], "estimated_loss": 1.0, "cost_model_energy_ratio": budget, "profile_batches": 2})
    gen = SimpleNamespace(cfg=SimpleNamespace(energy_budgets=(0.9,), budgets_at_baselines=True, search_task_weights=None,
                                              warmup_steps=3, warmup_sampling="hard"))
    model = lambda b, label, seed=None: tuned.append(b) or {"branch_points": b, "energy_ratio": 0.4}
    given = [SweepPoint("uniform", label, {"energy_ratio": ratio}, "") for label, ratio in
             (("full", 0.2), ("u4", 0.7), ("h", 0.5), ("u0", 1.0))]
    points, waiting = baselines.budget_points(gen, None, given, "3 fine-tuning steps", model)
    assert tuned == [[1, 1], [2, 2]] and [p.branch_points for p in points] == [[1, 1], [2, 2]] and waiting == []
    assert points[0].details["budgets"] == [{"budget": 0.9, "source": "energy_budgets"}]
    assert points[1].details["budgets"] == [{"budget": 0.7, "source": "energy of u4"},
                                            {"budget": 0.5, "source": "energy of h"}]
    assert all(p.kind == "search" and p.method == "budget" for p in points)
    # report_only: a tree still to train (the model function gives None) is listed once, at its first budget
    pending = lambda b, label, seed=None: None if b == [2, 2] else model(b, label)
    points, waiting = baselines.budget_points(gen, None, given, "3 fine-tuning steps", pending)
    assert [p.branch_points for p in points] == [[1, 1]]
    assert waiting == [{"label": "budget 0.7000", "energy_ratio": 0.7}]


@pytest.mark.parametrize("field,value", [("energy_budgets", [1.5]), ("energy_budgets", [0.0]),
                                         ("energy_budgets", [True]), ("budgets_at_baselines", "yes"),
                                         ("profile_batches", 0)])
def test_budget_fields_are_validated(field, value):
    from pathlib import Path

    from mgen_jax.search import load_search_config

    with pytest.raises(ConfigError, match=field):
        load_search_config(Path(__file__).parents[2] / "configs/search/quick.yaml", **{field: value})


def test_task_weights_without_lambdas_need_no_enumerate():
    from pathlib import Path

    from mgen_jax.search import load_search_config

    path = Path(__file__).parents[2] / "configs/search/quick.yaml"
    with pytest.raises(ConfigError, match="enumerate"):
        load_search_config(path, sampling="hard", search_task_weights=[1.0, 2.0])
    cfg = load_search_config(path, sampling="hard", search_task_weights=[1.0, 2.0], lambdas=[])
    assert cfg.search_task_weights == (1.0, 2.0) and cfg.energy_budgets == (0.8,)


def test_score_drop_profile_smooths_and_ramps():
    from mgen_jax.search.select import score_drop_profile

    scores = np.array([[90.0, 30.0, 50.0], [91.0, 20.0, 50.0], [85.0, 25.0, 50.0], [80.0, 0.0, 50.0]])
    drops, flat = score_drop_profile(scores)
    # task 0: 90, 91 pooled to 90.5; task 1: 20, 25 pooled to 22.5; task 2 never drops: a ramp
    np.testing.assert_allclose(drops[:, 0], [0.0, 0.0, 5.5, 10.5])
    np.testing.assert_allclose(drops[:, 1], [0.0, 7.5, 7.5, 30.0])
    np.testing.assert_allclose(drops[:, 2], [0.0, 1.0, 2.0, 3.0])
    assert flat == [2] and np.all(np.diff(drops, axis=0) >= 0)
