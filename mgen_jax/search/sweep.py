"""The Pareto sweep: the phases of one search run in order, then its record and plot.

1. The warm-up (relaxed.py), and its loss profile when budgets are picked (selection.py).
2. The baselines (baselines.py; each fine-tuned with the same recipe from the same starting weights): full sharing
   (b = U), uniform branch points (every task at the same b), the analysis-driven heuristic (task t shares the
   leading units whose CKA to the pretrained model is at least a threshold) and trees given in the config
   (``trees``: e.g. another sweep's selections, trained here with another recipe, kind "given"). They do not
   depend on the search settings, so that a sweep interrupted during the searches keeps them.
3. The held-out task-weight calibration on the full-sharing model (``search_task_weights: heldout``).
4. The lambda searches and their discrete models; the gradient search's runs at every energy target and seed
   (gradient.py: search and training in one run); the budget picks (one model per distinct tree); a uniform
   baseline at the energy of every pick (``uniform_at_budgets``).
5. The independent models as separately fine-tuned (independent.py), and the claim: the held-out-chosen model
   trained again with every claim seed (judge.py, which also reads the goal).

A sweep takes hours to days; ``report_only`` writes the record of what has finished so far without training anything
(``"complete": false`` and the ``pending`` models in the record, "partial" in the plot's title), so that a long sweep
can be read, plotted and tabulated while it runs or between sittings.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search import relaxed, selection, wording
from mgen_jax.search.baselines import Tree, baseline_trees, budget_points, uniform_at_budgets
from mgen_jax.search.generator import ModelGenerator
from mgen_jax.search.judge import sweep_claim, sweep_goal
from mgen_jax.search.plots import plot_pareto
from mgen_jax.search.points import SweepPoint
from mgen_jax.search.sweep_record import SweepOutcome, sweep_record


class _Models:
    """The sweep's discrete models: ``model(b, label, seed=None)`` is the model's record, trained unless it is
    finished; with ``report_only`` a model still to train is listed in ``pending`` and gives None."""

    def __init__(self, gen: ModelGenerator, warm, report_only: bool):
        self.gen, self.warm, self.report_only = gen, warm, report_only
        self.pending: list[str] = []

    def __call__(self, b: Sequence[int], label: str, seed: int | None = None) -> dict[str, Any] | None:
        run = self.gen.run
        if self.report_only and not run.finished(run.model(b, seed)):
            self.pending.append(wording.pending_model(label, b))
            return None
        return self.gen.finetune_and_evaluate(b, self.warm, seed=seed)

    def baselines(self, trees: Sequence[Tree], recipe: str) -> list[SweepPoint]:
        """The finished (or now trained) models of ``trees``."""
        points = []
        for tree in trees:
            record = self(tree.branch_points, tree.label)
            if record is not None:
                obtained = wording.baseline_obtained(tree.label, tree.why, recipe)
                points.append(SweepPoint(tree.kind, tree.label, record, obtained))
        return points


def _warm_start(gen: ModelGenerator, report_only: bool = False):
    """The warm-up's weights, or None when nothing left needs them: with ``finetune_init: pretrained`` and no lambda
    searches, the weights serve only the loss profile, so a finished warm-up with its profile cached lets the sweep
    resume from its result files alone (experiments/run_records.py carries them across machines)."""
    cfg = gen.cfg
    needs_profile = bool(cfg.energy_budgets or cfg.budgets_at_baselines)
    finished = relaxed.warmup_record(gen.run) is not None and (selection.profile_ready(gen) or not needs_profile)
    if report_only and not finished:
        raise ConfigError(wording.nothing_to_report(gen.workdir, needs_profile))
    if finished and not cfg.lambdas and cfg.finetune_init == "pretrained":
        return None
    if cfg.warmup_steps == 0 and not needs_profile and not cfg.lambdas and cfg.finetune_init == "pretrained":
        # nothing reads warm-up weights: no warm-up at all (the independent runs' weights are not needed either)
        relaxed.record_no_warmup(gen.run)
        return None
    warm = gen.warmup()
    if needs_profile:
        gen.warmup_profile(warm)  # while the weights are loaded
    return warm


def _searches(gen: ModelGenerator, models: _Models, recipe: str, weights_ready: bool
              ) -> tuple[list[SweepPoint], list[dict[str, Any]]]:
    """Every lambda search (its record) and the finished models of their trees."""
    points, searches = [], []
    for lam in gen.cfg.lambdas:
        if models.report_only and not (weights_ready and gen.run.finished(gen.run.search(lam))):
            models.pending.append(wording.pending_search(lam))
            continue
        found = gen.search(lam, models.warm)
        searches.append(found)
        label = f"search lambda={lam:g}"
        record = models(found["branch_points"], label)
        if record is not None:
            details = {"lambda": lam, "expected_branch_points": found["expected_branch_points"]}
            points.append(SweepPoint("search", label, record, wording.lambda_obtained(gen.cfg, lam, recipe),
                                     method="lambda", details=details))
    return points, searches


def _gradient_runs(gen: ModelGenerator, models: _Models, recipe: str) -> list[SweepPoint]:
    """The gradient search's runs (gradient.py): one per energy target of ``gradient.energy_targets`` and seed of
    ``gradient.seeds``, each a searched model trained inside the budget."""
    from mgen_jax.search.gradient import gradient_run, run_dir

    settings, points = gen.cfg.gradient, []
    for target in settings.energy_targets:
        for seed in settings.seeds:
            label = f"gradient r={target:g}" + (f" seed {seed}" if len(settings.seeds) > 1 else "")
            if models.report_only and not gen.run.finished(run_dir(gen, target, seed)):
                models.pending.append(wording.pending_gradient(target, seed))
                continue
            record = gradient_run(gen, target, seed, settings)
            details = {"energy_target": target, "seed": seed, "repaired": record["search"]["repaired"],
                       "argmax_branch_points": record["search"]["argmax_branch_points"]}
            points.append(SweepPoint("search", label, record, wording.gradient_obtained(settings, target, recipe),
                                     method="gradient", details=details))
    return points


def _picks(gen: ModelGenerator, models: _Models, baselines: list[SweepPoint], recipe: str, weights_ready: bool
           ) -> tuple[list[SweepPoint], list[SweepPoint]]:
    """The budget picks' models and, with ``uniform_at_budgets``, the uniform baselines at their energies."""
    cfg = gen.cfg
    if weights_ready:
        picked, waiting = budget_points(gen, models.warm, baselines, recipe, models)
    else:  # report_only: the held-out task weights wait for the full-sharing model
        picked, waiting = [], []
        models.pending += [wording.pending_budget(x) for x in cfg.energy_budgets]
    uniform = []
    if cfg.uniform_at_budgets:
        taken = {tuple(p.branch_points) for p in baselines}
        energies = [(p.label, p.energy_ratio) for p in picked] + [(w["label"], w["energy_ratio"]) for w in waiting]
        uniform = models.baselines(uniform_at_budgets(gen, energies, taken), recipe)
    return picked, uniform


def _independent_point(gen: ModelGenerator) -> SweepPoint | None:
    independent = gen.independent_record()
    if independent is None:
        return None
    return SweepPoint("independent", "independent (separately fine-tuned)", independent,
                      wording.independent_obtained(gen.cfg, independent["num_seeds"]))


def run_phases(gen: ModelGenerator, report_only: bool = False) -> SweepOutcome:
    """Train what is missing (each phase resumes from its checkpoint; nothing with ``report_only``) and return
    what the phases gave."""
    cfg = gen.cfg
    if cfg.gradient.energy_targets:  # before any phase trains
        from mgen_jax.search.gradient import check_config

        check_config(cfg, cfg.gradient)
    warm = _warm_start(gen, report_only)
    warmup = relaxed.warmup_record(gen.run)
    models = _Models(gen, warm, report_only)
    recipe = wording.finetune_recipe(cfg)
    baselines = models.baselines(baseline_trees(cfg, [t.name for t in gen.tasks], gen.num_units), recipe)
    full_sharing = next((p for p in baselines if p.kind == "full sharing"), None)
    weights_ready = cfg.search_task_weights != "heldout" or full_sharing is not None
    if cfg.search_task_weights == "heldout" and full_sharing is not None:
        gen.calibrate(dict(full_sharing.model), warm)
    searched, searches = _searches(gen, models, recipe, weights_ready)
    searched += _gradient_runs(gen, models, recipe)
    picked, uniform = _picks(gen, models, baselines, recipe, weights_ready)
    independent = _independent_point(gen)
    points = searched + picked + baselines + uniform + ([independent] if independent is not None else [])
    claim = None
    if gen.data.has_heldout:
        claim = sweep_claim(cfg, [t.name for t in gen.tasks], points, None if independent is None else
                            independent.model, models)
    if claim is not None and claim.get("model", True) is None and models.pending:
        claim["note"] += " among the models finished so far"
    return SweepOutcome(points=points, searches=searches, claim=claim, pending=models.pending, warmup=warmup,
                        profile=gen.warmup_profile(warm) if picked else None,
                        task_weights=selection.task_weights(gen) if picked or cfg.lambdas else None)


def run_sweep(gen: ModelGenerator, out_dir: str | Path, *, report_only: bool = False) -> dict[str, Any]:
    """Train what is missing (each phase resumes from its checkpoint), then write search_<name>.json and its plot.
    ``report_only``: train nothing; the record holds the finished models and lists the others as pending."""
    start = time.perf_counter()
    out = Path(out_dir)
    _check_writable(out)
    outcome = run_phases(gen, report_only)
    record = sweep_record(gen, outcome, time.perf_counter() - start)
    write_json_atomic(out / f"search_{gen.cfg.name}.json", record)
    reference = outcome.reference()
    title = wording.plot_title(record["model"], record["hw"], record["tasks"], pending=len(outcome.pending),
                               equal_budget=gen.cfg.finetune_budget == "independent")
    plot_pareto(outcome.points, out / f"search_{gen.cfg.name}.png", title=title, goal=sweep_goal(gen.cfg),
                reference_mean_score=None if reference is None else reference.mean_score, claim=outcome.claim)
    return record


def _check_writable(out: Path) -> None:
    """Fail before any work if the results folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write_probe_{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"results folder {out} is not writable ({exc.strerror or exc})") from None
