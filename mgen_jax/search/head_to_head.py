"""The gradient search against enumeration at the same energy budgets (issue 31), read from a front record.

A budget of a front (search/front.py) is a head-to-head when it holds exactly one gradient-search candidate and
exactly one enumeration tree marked ``all_seeds``: each then has every seed whichever the held-out split chose (a
budget with another mix is listed under ``not_compared``).
``compare_methods`` lays them side by side: per task and mean, held-out and dev, the seeds' means and std, the tree
each seed ended with (how much it varies is a result), the simulator's exact energy ratio of every seed's tree, the
runs' wall clocks, and the goals' readings:

- at every head-to-head budget, the gradient search's held-out mean over the seeds is at least the enumeration's;
- at ``dev_goal_budget``, the gradient search's dev mean over the seeds is within ``dev_goal_points`` of the
  independent models' (with the front's bootstrap interval of the drop);
- one gradient run's wall clock (search + training) is at most ``wall_clock_goal`` times one equal-budget model's,
  measured side by side in one benchmark (experiments/bench_gradient_run.py); the runs of the front are timed
  beside other jobs, so their wall clocks are reported only.

Nothing is trained or chosen here: the held-out split already chose each budget's representative in the front.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.io import check_known_fields, read_json_file
from mgen_jax.search.judge import format_efficiency


@dataclasses.dataclass(frozen=True)
class HeadToHead:
    """The goals a front's head-to-head is read against (a front config's ``head_to_head`` mapping):
    ``dev_goal_budget`` and ``dev_goal_points`` (the gradient search's dev mean within that many points of the
    independent models' at that budget; no dev goal while the budget is not set), ``wall_clock_goal`` (one run over
    one equal-budget model) and ``wall_clock_benchmark`` (that benchmark's record, read when the file exists)."""

    dev_goal_budget: Optional[float] = None
    dev_goal_points: float = 1.0
    wall_clock_goal: float = 1.15
    wall_clock_benchmark: Optional[str] = None

    def __post_init__(self) -> None:
        for name, low, high in (("dev_goal_budget", 0.0, 1.0), ("dev_goal_points", 0.0, math.inf),
                                ("wall_clock_goal", 1.0, math.inf)):
            value = getattr(self, name)
            if value is None and name == "dev_goal_budget":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"head_to_head field '{name}' must be a finite number in [{low:g}, {high:g}], "
                                  f"got {value!r}")
        if self.wall_clock_benchmark is not None and not isinstance(self.wall_clock_benchmark, str):
            raise ConfigError("head_to_head field 'wall_clock_benchmark' must be a path, got "
                              f"{self.wall_clock_benchmark!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> "HeadToHead":
        check_known_fields(cls, values, where)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def benchmark(self) -> Optional[dict[str, Any]]:
        """The wall-clock benchmark's record (its path is relative to the working directory, as every path of a
        config), or None while its file does not exist."""
        if self.wall_clock_benchmark is None or not Path(self.wall_clock_benchmark).is_file():
            return None
        return read_json_file(self.wall_clock_benchmark, "head_to_head field 'wall_clock_benchmark':")


def _std(values: Sequence[float]) -> Optional[float]:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _method(run: dict[str, Any], tasks: Sequence[str]) -> dict[str, Any]:
    """One method's seeds at one budget, from the front's summary of its runs."""
    trees = [list(b) for b in run["branch_points_by_seed"]]
    held_by_task = run.get("heldout_scores_by_seed") or []
    dev_by_task = run["dev_scores_by_seed"]
    out = {
        "label": run["label"], "kind": run["kind"], "config": run["config"], "seeds": run["seeds"],
        "complete": bool(run.get("complete")),
        "branch_points_by_seed": trees, "distinct_trees": len({tuple(b) for b in trees}),
        "energy_ratio_by_seed": run["energy_ratio_by_seed"],
        "efficiency_by_seed": [format_efficiency(r) for r in run["energy_ratio_by_seed"]],
        "crossbars_by_seed": run["crossbars_by_seed"],
        "dev_mean_score_by_seed": run["dev_mean_score_by_seed"], "dev_mean_score": run["dev_mean_score"],
        "dev_mean_score_std": _std(run["dev_mean_score_by_seed"]),
        "dev_scores_mean": {t: float(np.mean([s[t] for s in dev_by_task])) for t in tasks},
        "dev_scores_std": {t: _std([s[t] for s in dev_by_task]) for t in tasks},
        "heldout_mean_score_by_seed": run["heldout_mean_score_by_seed"],
        "heldout_mean_score": run.get("heldout_mean_score"),
        "heldout_mean_score_std": (_std(run["heldout_mean_score_by_seed"])
                                   if None not in run["heldout_mean_score_by_seed"] else None),
        # the first seed's held-out score took part in choices (the front's, a study's); the later seeds' did not
        "heldout_mean_score_later_seeds": (float(np.mean(run["heldout_mean_score_by_seed"][1:]))
                                           if len(run["heldout_mean_score_by_seed"]) > 1
                                           and None not in run["heldout_mean_score_by_seed"] else None),
        "wall_clock_s_by_seed": run.get("finetune_wall_clock_s_by_seed"),
    }
    if held_by_task and all(held_by_task):
        out["heldout_scores_mean"] = {t: float(np.mean([s[t] for s in held_by_task])) for t in tasks}
        out["heldout_scores_std"] = {t: _std([s[t] for s in held_by_task]) for t in tasks}
    if run["kind"] == "gradient":
        out |= {"energy_target": run["energy_target"], "gradient_overrides": run.get("gradient_overrides") or {},
                "repaired_by_seed": run["repaired_by_seed"], "mu_converged_by_seed": run["mu_converged_by_seed"],
                "search_wall_clock_s_by_seed": run["search_wall_clock_s_by_seed"],
                "search_fraction_by_seed": run.get("search_fraction_by_seed")}
    if "drop_interval" in run:
        out["drop_points"] = run["drop_points"]
        out["drop_interval"] = run["drop_interval"]
    return out


def _seeded(budget: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The labels of a front record's budget's gradient-search and tree candidates marked ``all_seeds``."""
    seeded = [c for c in budget["candidates"] if c.get("all_seeds")]
    return ([c["label"] for c in seeded if c.get("energy_target") is not None],
            [c["label"] for c in seeded if c.get("branch_points") is not None])


def head_to_head_budgets(front: dict[str, Any]) -> list[tuple[dict, str, str]]:
    """(point, gradient label, enumeration label) for every budget of ``front`` with exactly one gradient-search
    candidate and exactly one tree candidate marked ``all_seeds``, in the front's order."""
    out = []
    for budget, point in zip(front["config"]["budgets"], front["points"]):
        grad, tree = _seeded(budget)
        if len(grad) == 1 and len(tree) == 1:
            out.append((point, grad[0], tree[0]))
    return out


def _not_compared(front: dict[str, Any]) -> list[str]:
    """The budgets with an all-seeds gradient-search candidate that are not a head-to-head, and why."""
    out = []
    for budget in front["config"]["budgets"]:
        grad, tree = _seeded(budget)
        if grad and not (len(grad) == 1 and len(tree) == 1):
            out.append(f"{budget['label']}: {len(grad)} all-seeds gradient candidate(s) and {len(tree)} all-seeds "
                       "tree(s); a head-to-head needs exactly one of each")
    return out


def compare_methods(front: dict[str, Any], goals: HeadToHead = HeadToHead(), *,
                    bench: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The head-to-head record of ``front`` (a front record, search/front.py) read against ``goals``, with the
    wall-clock benchmark's record when given (experiments/bench_gradient_run.py). A method with seeds still missing
    is reported as it stands and its goal readings are ``None`` (pending)."""
    tasks = front["tasks"]
    found = head_to_head_budgets(front)
    if not found:
        raise ValueError(f"front {front['name']!r} has no budget with a gradient-search candidate and a tree candidate "
                         "both marked all_seeds")
    ind = front["independent"]
    budgets, pending = [], list(front.get("pending", []))
    for point, grad_label, tree_label in found:
        runs = point["runs"]
        methods = {label: _method(runs[label], tasks) for label in (grad_label, tree_label) if label in runs}
        entry = {"budget": point["budget"], "energy_budget": point["energy_budget"], "gradient": grad_label,
                 "enumeration": tree_label, "front_choice": point.get("chosen"), "methods": methods}
        both = len(methods) == 2 and all(m["complete"] for m in methods.values())
        entry["complete"] = both
        entry["heldout_goal_met"] = None
        if both:
            g, e = methods[grad_label], methods[tree_label]
            entry["dev_difference"] = g["dev_mean_score"] - e["dev_mean_score"]
            if g["heldout_mean_score"] is not None and e["heldout_mean_score"] is not None:
                entry["heldout_difference"] = g["heldout_mean_score"] - e["heldout_mean_score"]
                entry["heldout_goal_met"] = bool(entry["heldout_difference"] >= 0.0)
                if g["heldout_mean_score_later_seeds"] is not None and e["heldout_mean_score_later_seeds"] is not None:
                    entry["heldout_difference_later_seeds"] = (g["heldout_mean_score_later_seeds"]
                                                               - e["heldout_mean_score_later_seeds"])
        budgets.append(entry)
    readings = {"heldout_at_least_enumeration": _heldout_reading(budgets),
                "dev_within_independent": _dev_reading(budgets, ind, goals.dev_goal_budget, goals.dev_goal_points),
                "wall_clock": _wall_reading(bench, goals, budgets)}
    return {"name": f"{front['name']}_head_to_head", "front": front["name"], "tasks": tasks, "seeds": front["seeds"],
            "complete": all(b["complete"] for b in budgets), "pending": [p for p in pending if _ours(p, budgets)],
            "independent": {k: ind.get(k) for k in ("label", "seeds", "dev_mean_score", "dev_mean_score_std",
                                                      "dev_mean_score_by_seed", "dev_scores_mean", "heldout_mean_score",
                                                      "heldout_mean_score_std", "heldout_mean_score_by_seed")},
            "budgets": budgets, "not_compared": _not_compared(front), "goals": readings,
            "goal_settings": dataclasses.asdict(goals),
            "selection": "each budget's representative on the front was chosen on the held-out split of seed "
                         f"{front['seeds'][0]}, and a method's settings (a tree, a search fraction) may have been "
                         f"chosen on it too: seed {front['seeds'][0]}'s held-out score is not an unselected "
                         "measurement, "
                         "so each method's held-out mean over the later seeds is given beside the mean over all; dev "
                         "is evaluated once per final model and reported only",
            "note": "the front's runs may have been timed beside other jobs: their wall clocks are reported only; the "
                    "wall-clock goal is read from the side-by-side benchmark"}


def _ours(pending: str, budgets: Sequence[dict]) -> bool:
    return any(pending.startswith(f"{b['budget']}: {label},") for b in budgets
               for label in (b["gradient"], b["enumeration"]))


def _heldout_reading(budgets: Sequence[dict]) -> dict[str, Any]:
    per = {b["budget"]: b["heldout_goal_met"] for b in budgets}
    met = None if None in per.values() else all(per.values())
    parts = []
    for b in budgets:
        if not b["complete"]:
            parts.append(f"{b['budget']}: pending")
        elif "heldout_difference" not in b:
            parts.append(f"{b['budget']}: no held-out scores")
        else:
            g, e = b["methods"][b["gradient"]], b["methods"][b["enumeration"]]
            later = b.get("heldout_difference_later_seeds")
            parts.append(f"{b['budget']}: gradient {g['heldout_mean_score']:.2f} vs enumeration "
                         f"{e['heldout_mean_score']:.2f} ({b['heldout_difference']:+.2f}"
                         + ("" if later is None else f"; later seeds only {later:+.2f}") + ")")
    return {"rule": "at every budget, the gradient search's held-out mean over the seeds >= the enumeration's",
            "met": met, "by_budget": per, "sentence": "; ".join(parts)}


def _dev_reading(budgets: Sequence[dict], ind: dict, budget_ratio: Optional[float], points: float) -> dict[str, Any]:
    if budget_ratio is None:
        return {"rule": None, "met": None, "sentence": "no dev goal set (head_to_head.dev_goal_budget)"}
    rule = (f"at budget {budget_ratio:g}, the gradient search's dev mean over the seeds within {points:g} point(s) of "
            f"the independent models' ({ind['dev_mean_score']:.2f})")
    match = [b for b in budgets if abs(b["energy_budget"] - budget_ratio) < 1e-9]
    if not match:
        return {"rule": rule, "met": None, "sentence": f"no head-to-head budget at {budget_ratio:g}"}
    b = match[0]
    g = b["methods"].get(b["gradient"])
    if g is None or not g["complete"]:
        return {"rule": rule, "met": None, "sentence": "pending"}
    drop = ind["dev_mean_score"] - g["dev_mean_score"]
    out = {"rule": rule, "met": bool(drop <= points), "drop_points": drop, "drop_interval": g.get("drop_interval")}
    ci = g.get("drop_interval")
    ci_text = f", {int(round(ci['level'] * 100))} % interval [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else ""
    out["sentence"] = (f"{g['dev_mean_score']:.2f} ± {g['dev_mean_score_std'] or 0:.2f} against "
                       f"{ind['dev_mean_score']:.2f}: drop {drop:+.2f}{ci_text}")
    return out


def _wall_reading(bench: Optional[dict[str, Any]], goals: HeadToHead, budgets: Sequence[dict]) -> dict[str, Any]:
    """The wall-clock goal from the benchmark's record, pending unless it ran the search fraction of every
    head-to-head gradient run."""
    rule = (f"one gradient run's wall clock (search + training) <= {goals.wall_clock_goal:g}x one equal-budget "
            "model's, side by side")
    if bench is None:
        return {"rule": rule, "met": None, "sentence": f"pending: no benchmark record at {goals.wall_clock_benchmark}"}
    fractions = {f for b in budgets for m in b["methods"].values() if m["kind"] == "gradient"
                 for f in m.get("search_fraction_by_seed") or [None]}
    if fractions != {bench.get("search_fraction")}:
        return {"rule": rule, "met": None, "sentence": f"pending: the benchmark ran search_fraction "
                f"{bench.get('search_fraction')}, the head-to-head's gradient runs {sorted(fractions, key=str)}: "
                "rerun it"}
    ratio = float(bench["run_over_model_wall_clock"])
    run, model = bench["gradient_run"], bench["equal_budget_model"]
    loads = f"load {run['load_before'][0]:.2f}/{model['load_before'][0]:.2f} at the start of run/model"
    return {"rule": rule, "met": bool(ratio <= goals.wall_clock_goal), "ratio": ratio,
            "run_wall_clock_s": run["training_wall_clock_s"], "search_wall_clock_s": run.get("search_wall_clock_s"),
            "model_wall_clock_s": model["training_wall_clock_s"], "search_fraction": bench.get("search_fraction"),
            "sentence": f"{run['training_wall_clock_s']:.0f} s (search {run.get('search_wall_clock_s') or 0:.0f} s) "
                        f"against {model['training_wall_clock_s']:.0f} s: {ratio:.3f}x ({loads})"}
