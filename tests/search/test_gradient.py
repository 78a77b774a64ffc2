"""The gradient search in one run (search/gradient.py, search/constrained.py): the constrained logits' optimizer on
planted loss tables, and the whole run on a tiny random BERT and real GLUE rows (budgets, target, resume, seeds)."""

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax import cost
from mgen_jax.errors import ConfigError
from mgen_jax.search import ModelGenerator
from mgen_jax.search.finetune import budget_step, budget_streams
from mgen_jax.search.constrained import check_target, decode_tree, temperature, tree_ratio
from mgen_jax.search.gradient import (
    GradientSettings, LogitState, decode_costs, gradient_run, make_logit_step, mu_converged, run_dir, target_range,
)
from mgen_jax.search.judge import format_efficiency

from test_equal_budget import _config, _independent, TASKS  # noqa: E402  (tests/search is on sys.path)


def test_format_efficiency_never_rounds_across_a_goal():
    assert format_efficiency(0.33383) == "2.996x"
    assert format_efficiency(1 / 2.99996) == "2.99996x"  # not "3.000x"
    assert format_efficiency(1 / 4.39999) == "4.39999x"  # not "4.400x"
    assert format_efficiency(0.5) == "2.000x" and format_efficiency(1 / 3.0004) == "3.000x"
    with pytest.raises(ValueError):
        format_efficiency(0.0)


def test_check_target_prints_the_feasible_range():
    assert check_target("0.5", 0.2, 1.0) == 0.5
    for bad in (0.1, 1.5, "half", float("nan"), True):
        with pytest.raises(ConfigError, match=r"\[0\.20000, 1\]"):
            check_target(bad, 0.2, 1.0)


def test_gradient_settings_name_the_field():
    with pytest.raises(ConfigError, match="gradient.estimator"):
        GradientSettings(estimator="reinforce")
    with pytest.raises(ConfigError, match="gradient.search_fraction"):
        GradientSettings(search_fraction=0.0)
    with pytest.raises(ConfigError, match="gradient.weight_sampling"):
        GradientSettings(weight_sampling="q")
    with pytest.raises(ConfigError, match="gradient.objective"):
        GradientSettings(objective="accuracy")
    with pytest.raises(ConfigError, match="gradient.objective.*estimator: enumerate"):
        GradientSettings(objective="score", estimator="straight-through")
    with pytest.raises(ConfigError, match="unknown field"):
        GradientSettings.from_mapping({"searchfraction": 0.2})


# ----- the constrained optimizer on planted loss tables ----------------------------------------------------------
U = 4  # the tiny BERT's units: two layers


@pytest.fixture(scope="module")
def tiny_energy():
    """The cost model of a 2-layer, 3-task model on a fixed 32-token workload: EnergyModel-like tuple."""
    from mgen_jax import hw
    from mgen_jax.search.steps import EnergyModel

    arch = hw.BertArch("tiny", num_layers=2, hidden=96, num_heads=4, ffn=200)
    spec = hw.load_spec("isaac")
    tables = cost.build_tables(spec, arch, (2, 2, 1))
    workload = cost.fixed_workload(3, tokens=32)
    zero = jnp.zeros((3, U))
    return EnergyModel(arch, tables, workload, float(cost.expected_energy(zero, tables, workload).total_j))


# task 0 gains from sharing (its loss falls with b), task 1 loses (rises with b), task 2 is indifferent
PLANTED = np.array([[0.60, 0.55, 0.50, 0.45, 0.40],
                    [0.30, 0.34, 0.40, 0.52, 0.70],
                    [0.50, 0.50, 0.50, 0.50, 0.50]], np.float32)


# accuracies (objective: score): task 0's falls with b although its loss falls (as CoLA's MCC in the glue5 warm-up),
# task 1's falls faster, task 2's rises a little
SCORES = np.array([[0.80, 0.79, 0.76, 0.70, 0.62],
                   [0.90, 0.88, 0.85, 0.80, 0.72],
                   [0.70, 0.70, 0.71, 0.71, 0.72]], np.float32)


def _best_by_enumeration(energy, target, table=PLANTED, normalize=True):
    best = None
    for b in itertools.product(range(U + 1), repeat=3):
        ratio = tree_ratio(b, energy.tables, energy.workload, energy.independent_j)
        loss = sum(table[t, x] / (table[t].mean() if normalize else 1.0) for t, x in enumerate(b))
        if ratio <= target and (best is None or loss < best[0] - 1e-9):
            best = (loss, list(b), ratio)
    return best


def _planted_search(energy, target, steps=1500, seed=0, noise=0.05, planted=PLANTED, scores=None, **changes):
    """Drive make_logit_step (the real logits' step) with the planted table plus batch noise in place of the
    model's losses (or, given ``scores``, the sums of 8 rows whose accuracy is the planted score plus noise: three
    accuracy tasks); tasks' batches in turn. Returns (decoded tree, argmax tree, mu trace)."""
    from mgen_jax.data.glue import TASKS as GLUE
    from mgen_jax.search.running_score import NUM_STATS

    settings = GradientSettings(**changes)
    table = jnp.asarray(planted)

    def losses(params, task, batch):
        return table[task] + noise * batch["noise"]

    def stats(params, task, batch):  # n = 8 rows, correct = 8 x (score + noise); accuracy reads only these two
        correct = 8.0 * (jnp.asarray(scores)[task] + noise * batch["noise"])
        return jnp.zeros((U + 1, NUM_STATS)).at[:, 0].set(8.0).at[:, 1].set(correct)

    tasks = [GLUE["SST-2"], GLUE["RTE"], GLUE["SST-2"]]
    step = make_logit_step(None, tasks, energy, settings, target, steps, every_b_losses=losses, every_b_stats=stats)
    state = LogitState.zeros(3, U, settings.mu_init, settings.objective)
    rng = np.random.default_rng(seed)
    mus = []
    for k in range(steps):
        batch = {"noise": jnp.asarray(rng.standard_normal(U + 1), jnp.float32)}
        state, _, _ = step(state, None, batch, jnp.int32(k % 3), jnp.int32(k), jax.random.PRNGKey(k))
        mus.append(float(state.mu))
    argmax = [int(b) for b in np.asarray(state.logits).argmax(axis=1)]
    ratio_of = lambda b: tree_ratio(b, energy.tables, energy.workload, energy.independent_j)
    metrics = ("accuracy",) * 3 if settings.objective == "score" else None
    tree, _ = decode_tree(argmax, decode_costs(state, settings, metrics), target, ratio_of)
    return tree, argmax, np.asarray(mus)


@pytest.mark.parametrize("target", [0.75, 0.55, 0.45])
def test_constrained_logits_find_the_planted_best_tree(tiny_energy, target):
    loss, best, best_ratio = _best_by_enumeration(tiny_energy, target)
    tree, argmax, mus = _planted_search(tiny_energy, target)
    assert tree == best, (argmax, tree, best)
    assert tree_ratio(tree, tiny_energy.tables, tiny_energy.workload, tiny_energy.independent_j) <= target * 1.01
    assert mu_converged(mus[int(0.9 * len(mus)):], GradientSettings().dual_tolerance)
    assert best[0] == U and best[1] < U  # the planted shape: the gaining task shares all, the losing one less


def test_the_tree_follows_the_losses(tiny_energy):
    """The test can fail: with the gaining and losing tasks swapped, the other task keeps its own units."""
    swapped = PLANTED[[1, 0, 2]]
    _, best, _ = _best_by_enumeration(tiny_energy, 0.55, swapped)
    tree, _, _ = _planted_search(tiny_energy, 0.55, planted=swapped)
    assert tree == best and best != _best_by_enumeration(tiny_energy, 0.55)[1]


@pytest.mark.parametrize("target", [0.75, 0.55])
def test_the_score_objective_keeps_the_units_of_a_task_whose_metric_falls_as_its_loss_falls(tiny_energy, target):
    """objective: score minimises 1 - the task's metric from running sums: where task 0's loss says "share" and its
    accuracy says "keep your units", the loss objective shares it fully and the score objective finds the best tree
    by enumeration of the planted accuracies, within the target."""
    by_loss = _best_by_enumeration(tiny_energy, target)[1]
    _, by_score, ratio = _best_by_enumeration(tiny_energy, target, 1.0 - SCORES, normalize=False)
    assert by_loss[0] == U and by_score[0] < U  # the two objectives disagree on task 0
    tree, argmax, mus = _planted_search(tiny_energy, target, scores=SCORES, objective="score")
    assert tree == by_score, (argmax, tree, by_score)
    assert tree_ratio(tree, tiny_energy.tables, tiny_energy.workload, tiny_energy.independent_j) <= target * 1.01
    assert mu_converged(mus[int(0.9 * len(mus)):], GradientSettings().dual_tolerance)
    assert _planted_search(tiny_energy, target, scores=SCORES)[0] == by_loss  # the same run scoring by loss


def test_uniform_weight_sampling_trains_every_branch_point_whatever_the_logits(tiny_energy):
    """weight_sampling: the branch points the weights train on follow q ("distribution": they concentrate as the
    logits settle) or stay uniform over 0..U ("uniform"); the logits, mu and the decoded tree are the same."""
    table = jnp.asarray(PLANTED)
    losses = lambda params, task, batch: table[task]
    draws, trees = {}, {}
    for sampling in ("distribution", "uniform"):
        settings = GradientSettings(weight_sampling=sampling)
        step = make_logit_step(None, None, tiny_energy, settings, 0.55, 600, every_b_losses=losses)
        state, bs = LogitState.zeros(3, U, settings.mu_init), []
        for k in range(600):
            state, b, _ = step(state, None, {}, jnp.int32(0), jnp.int32(k), jax.random.PRNGKey(k))
            bs.append(int(b))
        draws[sampling] = np.bincount(bs[300:], minlength=U + 1) / 300  # task 0 (it gains from sharing)
        trees[sampling] = (np.asarray(state.logits).tolist(), float(state.mu))
    assert draws["distribution"][U] > 0.9  # q_0 settled on full sharing
    assert np.all(np.abs(draws["uniform"] - 1 / (U + 1)) < 0.08)  # 300 draws: each share 0.2 +- 0.08
    assert trees["uniform"] == trees["distribution"]



def test_a_run_folder_made_before_weight_sampling_counts_as_drawn_from_q(tmp_path):
    """Settings files written before the field existed lack it: they were made drawing from q, whatever the
    field's default is now; a uniform run is refused in such a folder."""
    import json

    from mgen_jax.search.rundir import RunDir

    settings = GradientSettings().run_settings()
    old = {k: v for k, v in settings.items() if k != "weight_sampling"}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "settings.json").write_text(json.dumps(old))
    check = lambda values: RunDir(tmp_path, seed=0).check_phase(tmp_path / "run", values, "gradient run folder")
    check(settings | {"weight_sampling": "distribution"})
    with pytest.raises(ConfigError, match="weight_sampling"):
        check(settings | {"weight_sampling": "uniform"})


def test_a_run_folder_made_before_objective_counts_as_scoring_by_loss(tmp_path):
    import json

    from mgen_jax.search.rundir import RunDir

    settings = GradientSettings().run_settings()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "settings.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "objective"}))
    check = lambda values: RunDir(tmp_path, seed=0).check_phase(tmp_path / "run", values, "gradient run folder")
    check(settings | {"objective": "loss"})
    with pytest.raises(ConfigError, match="objective"):
        check(settings | {"objective": "score"})


def test_decode_repairs_then_improves_within_the_target(tiny_energy):
    ratio_of = lambda b: tree_ratio(b, tiny_energy.tables, tiny_energy.workload, tiny_energy.independent_j)
    # task 1's cost is not convex in energy: b = 2 lies above the line from b = 0 to b = 4, so a Lagrangian (and the
    # cheapest-per-energy repair) would go to b = 4; a single move to b = 2 already meets the target, at less cost
    costs = np.array([[1.7, 1.5, 1.1, 0.6, 0.0], [0.0, 0.8, 1.0, 1.5, 1.7], [1.0, 1.0, 1.0, 1.0, 1.0]])
    target = ratio_of([4, 2, 4]) + 1e-6
    tree, moves = decode_tree([4, 0, 4], costs, target, ratio_of)
    assert tree == [4, 2, 4] and moves[0]["why"].startswith("repair") and len(moves) == 1
    # a feasible argmax on the hull's far end is improved: [4, 4, 4] -> task 1 back to b = 2 within the target
    tree, moves = decode_tree([4, 4, 4], costs, target, ratio_of)
    assert tree == [4, 2, 4] and [m["why"][:7] for m in moves] == ["improve"]
    assert decode_tree([4, 2, 4], costs, target, ratio_of) == ([4, 2, 4], [])
    least = ratio_of([U] * 3)
    assert ratio_of(decode_tree([0, 0, 0], costs, least, ratio_of)[0]) <= least * (1 + 1e-6)


@pytest.fixture(scope="module")
def planted_bert():
    from mgen_jax.search.planted import planted_problem

    return planted_problem(seed=0)


@pytest.mark.parametrize("target", [0.8, 0.7])
def test_planted_problem_on_a_tiny_bert(planted_bert, target):
    """The real logits' step on a tiny BERT's forward passes (weights frozen): task 0 gains from sharing, task 1
    loses (search/planted.py); the decoded tree is the best by enumeration of the exact losses, within the target,
    and mu settles."""
    from mgen_jax.search.planted import best_tree

    P = planted_bert
    best, best_ratio = best_tree(P, target)
    assert best[0] == U and best[1] < U
    settings = GradientSettings(logit_rows=16)
    steps = 400
    step = make_logit_step(P.model, P.tasks, P.energy, settings, target, steps)
    state, mus = LogitState.zeros(2, U, settings.mu_init), []
    for k in range(steps):
        state, _, _ = step(state, P.params, P.batch(k % 2, k, 16), jnp.int32(k % 2), jnp.int32(k), jax.random.PRNGKey(k))
        mus.append(float(state.mu))
    e = P.energy
    ratio_of = lambda b: tree_ratio(b, e.tables, e.workload, e.independent_j)
    argmax = [int(b) for b in np.asarray(state.logits).argmax(axis=1)]
    tree, _ = decode_tree(argmax, decode_costs(state, settings), target, ratio_of)
    assert tree == best and ratio_of(tree) <= target * 1.01
    assert mu_converged(mus[int(0.9 * steps):], settings.dual_tolerance)


def test_the_score_objective_reads_the_metric_of_the_rows_at_every_branch_point(planted_bert):
    """One logits' step with objective: score on a tiny BERT's real forward passes: the estimate after one step holds
    the sums of the rows the logits read, and the metric read from them at every b is the GLUE metric of that b's
    predictions on those rows."""
    from mgen_jax.data.metrics import accuracy
    from mgen_jax.search.constrained import read_estimate

    P = planted_bert
    settings = GradientSettings(logit_rows=16, objective="score")
    step = make_logit_step(P.model, P.tasks, P.energy, settings, 0.8, 10)
    state = LogitState.zeros(2, U, settings.mu_init, "score")
    batch = P.batch(1, 3, 16)
    state, _, (_, _, expected) = step(state, P.params, batch, jnp.int32(1), jnp.int32(0), jax.random.PRNGKey(0))
    outputs = np.asarray(P.model.every_branch_point_task_forward(P.params, 1, batch))  # [U + 1, 16, C]
    want = [accuracy(np.argmax(o[:, :2], axis=1), np.asarray(batch["labels"])) for o in outputs]
    costs = decode_costs(state, settings, ("accuracy", "accuracy"))
    np.testing.assert_allclose(1.0 - costs[1], want, atol=1e-6)
    assert len(set(want)) > 1  # the branch points predict differently: the check is not vacuous
    assert np.all(costs[0] == 1.0)  # task 0 not yet seen: no score
    assert float(expected) == pytest.approx(1.0 - np.mean(want), abs=1e-5)  # under q before the step: uniform
    np.testing.assert_allclose(np.asarray(read_estimate(state.loss_estimate, state.loss_count, 0.97))[1, :, 0], 16.0,
                               rtol=1e-5)  # n: 16 rows at every b


def test_temperature_anneals_geometrically():
    assert float(temperature(0, 11, 1.0, 0.01)) == pytest.approx(1.0)
    assert float(temperature(5, 11, 1.0, 0.01)) == pytest.approx(0.1, rel=1e-5)
    assert float(temperature(10, 11, 1.0, 0.01)) == pytest.approx(0.01, rel=1e-5)


# ----- the one run on a tiny BERT ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def independent_runs(tmp_path_factory, tiny_bert_dir, glue_dir):
    root = tmp_path_factory.mktemp("independent")
    _independent(root / "seed0", tiny_bert_dir, glue_dir, 0)
    return [root / "seed0"]


def _gen(tmp_path, tiny_bert_dir, glue_dir, runs, **gradient):
    settings = {"search_fraction": 0.5, "logit_rows": 4} | gradient
    cfg = _config(tiny_bert_dir, runs, energy_budgets=[], uniform_at_budgets=False, search_task_weights=None,
                  claim_seeds=[], gradient=settings)
    return ModelGenerator(cfg, tmp_path, glue_dir=glue_dir, progress=False)


def test_one_run_spends_the_budget_meets_the_target_and_resumes(tmp_path, tiny_bert_dir, glue_dir, independent_runs):
    gen = _gen(tmp_path / "a", tiny_bert_dir, glue_dir, independent_runs)
    low, high = target_range(gen)
    target = low + 0.3 * (high - low)
    record = gradient_run(gen, target, 0, gen.cfg.gradient)
    seen = {t: json.loads((independent_runs[0] / t / "summary.json").read_text())["train_examples_seen"] for t in TASKS}
    assert record["examples_seen"] == seen  # search and training together: exactly the independent budgets
    assert record["finetune_steps"] == 21 and record["search"]["steps"] == 10  # 16 + 5 steps; half searching
    assert record["energy_ratio"] <= target * (1 + 1e-6)  # exact simulator
    assert record["search"]["energy_ratio"] == pytest.approx(record["energy_ratio"], rel=1e-5)
    assert (run_dir(gen, target, 0) / "predictions.json").is_file()
    assert not list(run_dir(gen, target, 0).rglob("checkpoint.msgpack"))
    # the equal-budget step compiled once per batch shape: the search and the training after it call it alike
    streams = budget_streams(gen, 0)
    shapes = {(s.batch_size, s.batch(i)[1]) for s in streams for i in range(s.steps)}
    assert budget_step(gen)[1]._cache_size() == len(shapes)  # (a jitted function's count of compiled programs)

    # interrupted during the search, and again during training: the same tree and weights as the straight run
    from mgen_jax.search.generator import Interrupted
    from mgen_jax.train.checkpoint import restore_checkpoint

    for stop in (4, 14):
        gen2 = _gen(tmp_path / "b", tiny_bert_dir, glue_dir, independent_runs)
        gen2.interrupt_at = stop
        with pytest.raises(Interrupted):
            gradient_run(gen2, target, 0, gen2.cfg.gradient)
    gen2 = _gen(tmp_path / "b", tiny_bert_dir, glue_dir, independent_runs)
    resumed = gradient_run(gen2, target, 0, gen2.cfg.gradient)
    assert resumed["branch_points"] == record["branch_points"]
    assert resumed["search"]["logits"] == record["search"]["logits"]
    a = restore_checkpoint(run_dir(gen, target, 0) / "params.msgpack", None)
    b = restore_checkpoint(run_dir(gen2, target, 0) / "params.msgpack", None)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert resumed["metrics"] == record["metrics"]

    # another seed draws other batches and samples; an infeasible target is refused with the range
    with pytest.raises(ConfigError, match="not feasible"):
        gradient_run(gen, low * 0.9, 0, gen.cfg.gradient)

    # a corrupt or foreign result or search outcome is named, never taken for the run's
    for name, text in (("result.json", "{bad"), ("result.json", "{}"), ("search.json", "[1]")):
        path = run_dir(gen2, target, 0) / name
        keep = path.read_text()
        if name == "search.json":
            (run_dir(gen2, target, 0) / "result.json").rename(path.with_suffix(".keep"))
        path.write_text(text)
        with pytest.raises(ConfigError, match=name.split(".")[0] if name == "result.json" else "search outcome"):
            gradient_run(gen2, target, 0, gen2.cfg.gradient)
        path.write_text(keep)
        if name == "search.json":
            path.with_suffix(".keep").rename(run_dir(gen2, target, 0) / "result.json")


def test_a_run_scoring_branch_points_by_their_metric(tmp_path, tiny_bert_dir, glue_dir, independent_runs):
    """objective: score through the whole run: the search's costs are 1 - a score of every task at every b, the
    tree meets the target, and a run scoring by loss is refused in that folder rather than read from it."""
    gen = _gen(tmp_path / "s", tiny_bert_dir, glue_dir, independent_runs, objective="score")
    low, high = target_range(gen)
    target = low + 0.3 * (high - low)
    record = gradient_run(gen, target, 0, gen.cfg.gradient)
    search = record["search"]
    assert search["objective"] == "score" and record["settings"]["objective"] == "score"
    costs = np.asarray(search["decode_costs"])
    assert costs.shape == (len(TASKS), gen.num_units + 1) and np.all((costs >= 0) & (costs <= 2))
    assert record["energy_ratio"] <= target * (1 + 1e-6)
    by_loss = _gen(tmp_path / "s", tiny_bert_dir, glue_dir, independent_runs)
    with pytest.raises(ConfigError, match="objective"):
        gradient_run(by_loss, target, 0, by_loss.cfg.gradient)


def test_a_sweep_refuses_a_gradient_config_before_any_phase(tmp_path, tiny_bert_dir, glue_dir):
    from mgen_jax.search.sweep import run_sweep

    cfg = _config(tiny_bert_dir, [], independent_runs=None, finetune_budget=None, energy_budgets=[],
                  uniform_at_budgets=False, search_task_weights=None, claim_seeds=[],
                  gradient={"energy_targets": [0.8]})
    gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="finetune_budget"):
        run_sweep(gen, tmp_path / "out")
    assert not (tmp_path / "w" / "warmup").exists()  # no warm-up was trained first


def test_where_enumeration_cannot_go():
    """8 tasks on a bert-base-shaped model (24 units): 25^8 trees, which budget selection refuses to enumerate; the
    constrained search and the decode run on it and meet the target (planted losses: odd tasks gain from sharing,
    even tasks lose)."""
    from mgen_jax import hw
    from mgen_jax.search.select import all_branch_points
    from mgen_jax.search.steps import EnergyModel

    tasks, units = 8, 24
    with pytest.raises(ConfigError, match="enumerates"):
        all_branch_points(tasks, units)
    arch = hw.load_arch("bert-base")
    assert arch.num_units == units
    tables = cost.build_tables(hw.load_spec("isaac"), arch, (2,) * tasks)
    workload = cost.fixed_workload(tasks, tokens=64)
    energy = EnergyModel(arch, tables, workload,
                         float(cost.expected_energy(jnp.zeros((tasks, units)), tables, workload).total_j))
    b = np.arange(units + 1) / units
    table = np.stack([0.6 - 0.2 * b if t % 2 else 0.4 + 0.3 * b ** 2 for t in range(tasks)]).astype(np.float32)
    target, steps = 0.4, 800
    settings = GradientSettings()
    step = make_logit_step(None, None, energy, settings, target, steps,
                           every_b_losses=lambda params, task, batch: jnp.asarray(table)[task])
    state = LogitState.zeros(tasks, units, settings.mu_init)
    for k in range(steps):
        state, _, _ = step(state, None, None, jnp.int32(k % tasks), jnp.int32(k), jax.random.PRNGKey(k))
    ratio_of = lambda tree: tree_ratio(tree, tables, workload, energy.independent_j)
    argmax = [int(x) for x in np.asarray(state.logits).argmax(axis=1)]
    tree, _ = decode_tree(argmax, decode_costs(state, settings), target, ratio_of)
    assert ratio_of(tree) <= target * (1 + 1e-6)
    assert all(tree[t] == units for t in range(1, tasks, 2))  # the gaining tasks share everything
    assert min(tree[t] for t in range(0, tasks, 2)) < units  # the losing ones keep some of their own units


def test_sweep_runs_the_gradient_targets_on_a_per_task_budget(tmp_path, tiny_bert_dir, glue_dir):
    """`mgen sweep` on a config with ``gradient.energy_targets`` and a budget given per task (no independent models:
    the README's first command): report-only lists the run as pending, the sweep trains it inside the budget (search
    and training together spend each task's examples), and the record holds it as a searched point beside the
    baselines, its exact energy within the target."""
    from mgen_jax.search.sweep import run_sweep

    budget = {"SST-2": {"examples": 48}, "STS-B": {"examples": 32}}
    cfg = _config(tiny_bert_dir, [], independent_runs=None, finetune_budget=budget, finetune_batch_size=8,
                  warmup_steps=0, energy_budgets=[], uniform_at_budgets=False, search_task_weights=None,
                  claim_seeds=[], uniform_branch_points=[0], gradient={"energy_targets": [0.8], "logit_rows": 4,
                                                                 "search_fraction": 0.2})
    gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match="nothing to report|not finished"):
        run_sweep(gen, tmp_path / "out", report_only=True)  # the baselines have not trained either
    record = run_sweep(gen, tmp_path / "out")
    [point] = [p for p in record["points"] if p.get("method") == "gradient"]
    assert point["kind"] == "search" and point["label"] == "gradient r=0.8" and point["energy_target"] == 0.8
    assert point["examples_seen"] == {"SST-2": 48, "STS-B": 32}  # 6 + 4 batches of 8: search and training together
    assert point["energy_ratio"] <= 0.8 * (1 + 1e-6)
    assert point["search"]["steps"] == 2  # search_fraction 0.2 of the 10 steps
    kinds = sorted(p["kind"] for p in record["points"])
    assert kinds == ["full sharing", "search", "uniform"]
    assert record["wall_clock_s"]["search_total_incl_warmup_and_finetuning"] == pytest.approx(
        point["finetune_wall_clock_s"])
    again = run_sweep(ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False), tmp_path / "out2",
                      report_only=True)  # everything finished: the same numbers from the result files
    assert [p["mean_score"] for p in again["points"]] == [p["mean_score"] for p in record["points"]]


def test_mgen_search_takes_the_configs_one_target(tmp_path, tiny_bert_dir, glue_dir, capsys):
    """Without --energy-target, `mgen search` runs the config's target when gradient.energy_targets names exactly
    one (here an infeasible one: refused with the range before anything trains); with two it asks for the flag."""
    from mgen_jax import cli

    demo = str(Path(__file__).parents[2] / "configs/search/demo.yaml")
    argv = ["search", "--config", demo, "--workdir", str(tmp_path / "w"), "--glue-dir", str(glue_dir),
            "--no-progress", "--set", f"model={tiny_bert_dir}", "--set", "max_dev_per_task=16"]
    assert cli.main(argv + ["--set", "gradient={energy_targets: [0.01]}"]) == 2
    assert "not feasible" in capsys.readouterr().err
    assert cli.main(argv + ["--set", "gradient={energy_targets: [0.6, 0.8]}"]) == 2
    assert "exactly one of --energy-target" in capsys.readouterr().err
    assert not list((tmp_path / "w").rglob("result.json"))
