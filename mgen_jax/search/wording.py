"""The sentences of a sweep record: how every model was obtained (its point's ``obtained``), how the sweep chose
(``selection``), what is still to train (``pending``) and the plot's title. Each is a small function of the config
and what the phase gave, so that the record's wording is read in one place."""

from __future__ import annotations

from typing import Any, Sequence

from mgen_jax.search.judge import claim_rule


def finetune_recipe(cfg) -> str:
    """How every discrete model of the sweep is fine-tuned, in words (the end of every ``obtained``)."""
    if cfg.finetune_budget is None:
        parts = [f"{cfg.finetune_init} init"]
        if cfg.distill_weight > 0:
            parts.append(f"distillation weight {cfg.distill_weight:g} at temperature {cfg.distill_temperature:g}")
        if cfg.finetune_task_weights:
            parts.append(f"task weights {list(cfg.finetune_task_weights)}")
        return f"{cfg.finetune_steps} fine-tuning steps ({', '.join(parts)})"
    budget = ("equal budget: every task the examples its independent model saw"
              if cfg.finetune_budget == "independent" else "per-task budget")
    parts = [f"{cfg.finetune_init} init", f"lr {cfg.lr_finetune:g}"]
    if cfg.distill_weight > 0:
        parts.append(_distillation(cfg))
    return f"{budget} ({', '.join(parts)})"


def _distillation(cfg) -> str:
    teachers = f" of {cfg.teacher_run}" if cfg.teacher_run else ""
    anneal = " annealed linearly to 0" if cfg.distill_anneal else ""
    return (f"distillation from the independent models{teachers}, weight {cfg.distill_weight:g}{anneal} at "
            f"temperature {cfg.distill_temperature:g}")


def _warmup(cfg) -> str:
    return f"the shared {cfg.warmup_steps}-step {cfg.warmup_sampling} warm-up"


def lambda_obtained(cfg, lam: float, recipe: str) -> str:
    """A lambda search's model."""
    weights = f"task weights {list(cfg.search_task_weights)}, " if cfg.search_task_weights else ""
    return (f"differentiable search (lambda {lam:g}, {cfg.search_steps} steps, {cfg.sampling} sampling, {weights}"
            f"after a shared {cfg.warmup_steps}-step {cfg.warmup_sampling} warm-up), argmax branch points, {recipe}")


def gradient_obtained(settings, target: float, recipe: str) -> str:
    """A gradient search's model (one run: search, then training of the decoded tree)."""
    return (f"gradient search in one run (energy target {target:g}, {settings.estimator} estimator, the first "
            f"{settings.search_fraction:g} of the budget searching with the weights, then the decoded tree trained "
            f"on from the search's weights), {recipe}")


def budget_obtained(cfg, budget: float, source: str, pick: dict[str, Any], recipe: str) -> str:
    """A budget pick's model (``pick``: selection.pick_within_budget's record)."""
    weights = "search_task_weights" if cfg.search_task_weights else "unit task weights"
    return (f"budget selection (energy ratio <= {budget:.6f}, {source}): least estimated loss over all "
            f"{len(pick['branch_points'])}-task trees, {weights} x the loss profile of {_warmup(cfg)} on "
            f"{pick['profile_batches']} held-out batches, {recipe}")


def baseline_obtained(label: str, why: str | None, recipe: str) -> str:
    """A baseline tree's model."""
    return f"{label}{f' ({why})' if why else ''}, {recipe}"


def independent_obtained(cfg, num_seeds: int) -> str:
    """The independent models' point."""
    return f"independent runs in {', '.join(cfg.independent_dirs)} ({num_seeds} seed(s); scores are their mean)"


def selection_summary(cfg, *, has_heldout: bool, profile_split: str | None, claimed: bool) -> dict[str, Any]:
    """The record's ``selection``: which split chose, the loss profile's split (None without a budget pick), where
    the task weights came from, the claim's rule (None without a claim)."""
    if cfg.search_task_weights == "heldout":
        weights = "calibrated on the held-out split (task_weights_heldout.json)"
    else:
        weights = "from the config" if cfg.search_task_weights else "every task 1"
    return {
        "split": "heldout" if has_heldout else "none (recipe-study run: selection on dev, see README)",
        "loss_profile": profile_split, "task_weights": weights,
        "claim_model": claim_rule(cfg.claim_margin) if claimed else None,
        "checkpoints": "none: every model is its last step's weights",
        "dev": "evaluated once per final model, after training; reported only",
    }


def pending_model(label: str, b: Sequence[int]) -> str:
    return f"{label} (b = {','.join(map(str, b))})"


def pending_search(lam: float) -> str:
    return f"search lambda={lam:g} and its discrete model"


def pending_gradient(target: float, seed: int) -> str:
    return f"gradient r={target:g} seed {seed} (search and training in one run)"


def pending_budget(budget: float) -> str:
    return f"budget {budget:.4f} (its tree waits for the full-sharing model)"


def nothing_to_report(workdir, needs_profile: bool) -> str:
    what = "the warm-up and its loss profile have" if needs_profile else "the warm-up has"
    return f"nothing to report yet in {workdir}: {what} not finished (run the sweep without report-only first)"


def plot_title(model: str, hw: str, tasks: Sequence[str], *, equal_budget: bool, pending: int) -> str:
    """The Pareto plot's title: model, hardware and tasks; the training budget; how many models are missing."""
    lines = [f"{model} on {hw}: {', '.join(tasks)}"]
    if equal_budget:
        lines.append("(every model at the independent models' training budget)")
    if pending:
        lines.append(f"partial: {pending} model(s) still to train")
    return "\n".join(lines)
