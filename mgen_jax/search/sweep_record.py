"""The sweep's record (``search_<name>.json``) from what its phases gave (``SweepOutcome``: typed points), its wall
clocks, and its table."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from mgen_jax.search.judge import best_point, format_efficiency, sweep_goal, sweep_goal_reading
from mgen_jax.search.points import SweepPoint, point_dicts
from mgen_jax.search.relaxed import WarmupRecord
from mgen_jax.search.wording import selection_summary


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What a sweep's phases gave: every point (searched ones, then the baselines, then the independent models),
    every lambda search's record that was read or run, the claim, the models still to train, the
    warm-up's record, the loss profile (when a budget pick was made) and the search's task weights."""

    points: list[SweepPoint]
    searches: list[dict[str, Any]]
    claim: dict[str, Any] | None
    pending: list[str]
    warmup: WarmupRecord
    profile: dict[str, Any] | None
    task_weights: list[float] | None

    def reference(self) -> SweepPoint | None:
        """What the goal is read against: the independent models, else the uniform b = 0 baseline."""
        kinds = [p for p in self.points if p.kind == "independent"]
        uniform0 = [p for p in self.points if p.kind == "uniform" and set(p.branch_points) == {0}]
        return next(iter(kinds + uniform0), None)


def wall_clocks(outcome: SweepOutcome, this_call_s: float) -> dict[str, Any]:
    """The record's ``wall_clock_s``: the search alone (warm-up, lambda searches and their models, gradient runs,
    budget picks' models and the profile), the whole sweep (every model, the claim's seeds included), the independent models'
    training and this call."""
    points = outcome.points
    profile_s = outcome.profile["wall_clock_s"] if outcome.profile is not None else 0.0
    search_s = outcome.warmup.wall_clock_s
    for p in points:
        if p.method == "lambda":
            found = next(s for s in outcome.searches if s["lambda"] == p.details["lambda"])
            search_s += found["wall_clock_s"] + p.model["finetune_wall_clock_s"]
        if p.method == "gradient":  # search and training in one run
            search_s += p.model["finetune_wall_clock_s"]
    searched = {tuple(p.branch_points) for p in points if p.method == "lambda"}
    search_s += sum(p.model["finetune_wall_clock_s"] for p in points
                    if p.method == "budget" and tuple(p.branch_points) not in searched)
    if outcome.profile is not None:
        search_s += profile_s
    walls = [p.model.get("finetune_wall_clock_s", 0.0) for p in points if p.kind != "independent"]
    claim_s = outcome.claim.get("finetune_wall_clock_s", 0.0) if outcome.claim else 0.0
    total_s = outcome.warmup.wall_clock_s + sum(walls) + profile_s + claim_s + sum(
        s["wall_clock_s"] for s in outcome.searches)
    independent = next((p for p in points if p.kind == "independent"), None)
    return {"search_total_incl_warmup_and_finetuning": search_s, "sweep_total": total_s,
            "independent_training": None if independent is None else independent.model["training_wall_clock_s"],
            "this_call": this_call_s}


def sweep_record(gen, outcome: SweepOutcome, this_call_s: float) -> dict[str, Any]:
    """The sweep record: what ran (tasks, model, hardware, workload, config), how it chose, every point, the claim,
    the goal's reading (judge.sweep_goal_reading), wall clocks and the ``best`` searched point."""
    cfg = gen.cfg
    goal = sweep_goal(cfg)
    points = point_dicts(outcome.points)
    search = [p for p in outcome.points if p.searched]
    best = best_point(search, goal)
    selection = selection_summary(cfg, has_heldout=gen.data.has_heldout, claimed=bool(outcome.claim),
                                  profile_split=None if outcome.profile is None else outcome.profile.get("split"))
    return {
        "name": cfg.name, "complete": not outcome.pending, "pending": outcome.pending,
        "tasks": [x.name for x in gen.tasks], "model": cfg.model, "hw": cfg.hw,
        "workload": gen.trace.description, "independent_energy_per_request_j": gen.independent_energy_j(),
        "config": cfg.to_dict(), "selection": selection, "points": points, "claim": outcome.claim,
        "task_weights": outcome.task_weights,
        "goal_3x_within_1_point": sweep_goal_reading(search, outcome.reference(), outcome.claim, goal),
        "wall_clock_s": wall_clocks(outcome, this_call_s),
        "best": next((d for p, d in zip(outcome.points, points) if p is best), None),
    }


def _budget_label(p: dict[str, Any], tasks: Sequence[str]) -> str:
    seen = p.get("examples_seen")
    if not seen:
        return "-"
    if p["kind"] == "independent":
        return "independent (" + "/".join(_count(seen[t]) for t in tasks) + ")"
    if p.get("finetune_budget") == "independent":
        return "equal"
    return "/".join(_count(seen[t]) for t in tasks)


def _count(n: int) -> str:
    """Examples seen, short: 1,040 -> "1.0k", 32 -> "32"."""
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def summary_table(record: dict[str, Any]) -> str:
    """Markdown: every point's dev scores (the claim's seeds averaged in its own row), held-out mean, energy ratio,
    efficiency, crossbars and the training budget (examples per task; "equal" = the independent models')."""
    tasks = record["tasks"]
    lines = ["| model | branch points | " + " | ".join(tasks) + " | mean | held-out mean | energy ratio | efficiency | "
             "crossbars | budget |", "|---" * (len(tasks) + 8) + "|"]
    rows = list(record["points"])
    claim = record.get("claim") or {}
    if claim.get("dev_mean_score") is not None and len(claim.get("seeds", [])) > 1:
        base = next(p for p in rows if p["label"] == claim["label"])
        rows.append(base | {"label": f"{claim['label']}, mean of {len(claim['seeds'])} seeds",
                            "scores": claim["dev_scores_mean"], "mean_score": claim["dev_mean_score"],
                            "pareto": False, "heldout_mean_score": None})
    for p in sorted(rows, key=lambda p: (p["energy_ratio"], p["label"])):
        scores = " | ".join(f"{p['scores'][t]:.1f}" for t in tasks)
        held = p.get("heldout_mean_score")
        seeds = f", mean of {p['num_seeds']} seeds" if p.get("num_seeds", 1) > 1 else ""
        lines.append(f"| {p['label']}{seeds}{' (Pareto)' if p['pareto'] else ''} | "
                     f"{','.join(map(str, p['branch_points']))} | {scores} | {p['mean_score']:.2f} | "
                     f"{'-' if held is None else f'{held:.2f}'} | {p['energy_ratio']:.3f} | "
                     f"{format_efficiency(p['energy_ratio'])} | "
                     f"{p['crossbars']:,} | {_budget_label(p, tasks)} |")
    return "\n".join(lines)
