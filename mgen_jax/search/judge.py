"""How results are read against a goal, and the words that say so: the front's headline (``read_front``); the sweep's
claim (``sweep_claim``: the held-out choice and its seeds' dev means), its goal from the config (``sweep_goal``) and
its reading (``sweep_goal_reading``), and the claim in one line (``sweep_headline``); efficiencies printed without
crossing a goal by rounding (``format_efficiency``). The command line prints these sentences; it does not build
them."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.io import check_known_fields

if TYPE_CHECKING:
    from mgen_jax.search.points import SweepPoint


def format_efficiency(energy_ratio: float, *, digits: int = 3) -> str:
    """1 / energy_ratio as "N.NNNx", rounded to ``digits`` decimals, except that rounding never carries a value up to
    a tenth it does not reach (goals such as 3x and 4.4x are tenths): 0.33383 -> "2.996x", but 1 / 2.99996 ->
    "2.99996x", not "3.000x". Raises ValueError for a ratio that is not a positive finite number."""
    if not (isinstance(energy_ratio, (int, float)) and math.isfinite(energy_ratio) and energy_ratio > 0):
        raise ValueError(f"an energy ratio must be a positive finite number, got {energy_ratio!r}")
    x = 1.0 / energy_ratio
    for d in range(digits, 10):
        text = f"{x:.{d}f}"
        shown = float(text)
        crosses = shown > x and math.isclose(shown * 10, round(shown * 10), abs_tol=1e-9)
        if not crosses:
            return f"{text}x"
    return f"{math.floor(x * 10 ** 9) / 10 ** 9:.9f}x"


@dataclasses.dataclass(frozen=True)
class Goal:
    """What the front is read against: the most efficient point within ``max_drop_points`` of the independent
    models' dev mean (3-seed means), met if its efficiency is at least ``efficiency``; ``stretch_drop_points`` is a
    second, tighter reading."""

    efficiency: float = 4.4
    max_drop_points: float = 1.0
    stretch_drop_points: float = 0.5

    def __post_init__(self) -> None:
        for name, low in (("efficiency", 1.0), ("max_drop_points", 0.0), ("stretch_drop_points", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                                      and value >= low):
                raise ConfigError(f"goal field '{name}' must be a finite number >= {low:g}, got {value!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str) -> "Goal":
        check_known_fields(cls, values, where)
        return cls(**values)


def _within(points: Sequence[dict], max_drop: float) -> dict | None:
    ok = [p for p in points if p["drop_points"] <= max_drop]
    return max(ok, key=lambda p: (p["efficiency"], -p["drop_points"]), default=None)


def read_front(record: dict[str, Any], goal: Goal) -> dict[str, Any]:
    """The headline of a front record: among the budgets' representatives with every seed in, the most efficient
    whose 3-seed dev drop against the independent models is at most ``goal.max_drop_points`` (and the same at the
    stretch margin), with its interval and a sentence saying whether the goal is met. While a representative is
    pending the reading waits (``met`` None): a front is read whole or not at all."""
    reps = [p["representative"] for p in record["points"]]
    if any(r is None or not r.get("complete") for r in reps):
        return {"met": None, "sentence": "pending: not every pre-registered budget has all its seeds; the front is "
                                         "read only when it is complete", "goal": dataclasses.asdict(goal)}
    best = _within(reps, goal.max_drop_points)
    stretch = _within(reps, goal.stretch_drop_points)
    n = len(record["seeds"])
    if best is None:
        sentence = (f"no budget is within {goal.max_drop_points:g} point of the independent models "
                    f"({n}-seed dev means): goal ({goal.efficiency:g}x) not met")
        met = False
    else:
        ci = best["drop_interval"]
        met = best["efficiency"] >= goal.efficiency
        side = "below" if best["drop_points"] >= 0 else "above"
        sentence = (f"{best['efficiency_text']} ({best['label']}) at {abs(best['drop_points']):.2f} points {side} the "
                    f"independent models ({n}-seed dev means; {int(ci['level'] * 100)} % interval of the drop "
                    f"[{ci['low']:.2f}, {ci['high']:.2f}]): goal {goal.efficiency:g}x within "
                    f"{goal.max_drop_points:g} point {'met' if met else 'not met'}")
    return {"met": met, "sentence": sentence, "goal": dataclasses.asdict(goal),
            "best_within_max_drop": None if best is None else _brief(best),
            "best_within_stretch_drop": None if stretch is None else _brief(stretch),
            "stretch_met": None if stretch is None else stretch["efficiency"] >= goal.efficiency}


def _brief(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in ("label", "efficiency", "efficiency_text", "energy_ratio_max", "dev_mean_score",
                                  "drop_points", "drop_interval", "branch_points_by_seed")}


def sweep_headline(record: dict[str, Any]) -> str | None:
    """One line on a sweep record's claim: the held-out-chosen model's efficiency, its dev points above or below the
    independent models' mean and whether the sweep's goal (``goal_3x_within_1_point``) is met; None while the claim
    has no dev mean yet.

    >>> claim = {"chosen_on": "heldout", "label": "budget 0.5000", "seeds": [0, 1, 2], "energy_ratio": 0.48924,
    ...          "independent_seeds": [0, 1, 2], "dev_mean_score": 69.79, "drop_points": -0.55}
    >>> record = {"claim": claim, "goal_3x_within_1_point": {"met": False}}
    >>> print(sweep_headline(record))  # doctest: +NORMALIZE_WHITESPACE
    headline (heldout-chosen budget 0.5000, 3 seeds): 2.044x at 0.55 points above the independent models' dev mean
    (3 seeds); goal met: False
    """
    claim = record.get("claim") or {}
    if claim.get("dev_mean_score") is None:
        return None
    goal = record.get("goal_3x_within_1_point") or {}
    drop = claim["drop_points"]
    side = "below" if drop >= 0 else "above"
    return (f"headline ({claim['chosen_on']}-chosen {claim['label']}, {len(claim['seeds'])} seeds): "
            f"{format_efficiency(claim['energy_ratio'])} at {abs(drop):.2f} points {side} the independent models' "
            f"dev mean ({len(claim['independent_seeds'])} seeds); goal met: {goal.get('met')}")


def pending_line(pending: Sequence[str], what: str = "model(s)") -> str | None:
    """The line that says a record is partial: how many of its runs are still to train, and which; None when none
    is."""
    if not pending:
        return None
    return f"partial: {len(pending)} {what} still to train: " + "; ".join(pending)


# ----- the sweep: its claim and its goal ---------------------------------------------------------------------------
def sweep_goal(cfg) -> Goal:
    """The goal a sweep is read against, from its config: ``goal_efficiency`` within ``goal_max_drop_points``."""
    return Goal(efficiency=cfg.goal_efficiency, max_drop_points=cfg.goal_max_drop_points)


def _points(margin: float, kind: str = "") -> str:
    return f"{margin:g} {kind}point" + ("" if margin == 1 else "s")


def claim_rule(margin: float) -> str:
    """The claim's rule in words (the record's ``selection.claim_model``)."""
    return (f"any discrete model of the sweep: held-out mean score within {_points(margin)} of the independent "
            "models', then greatest efficiency")


def choose_claim(points: Sequence[SweepPoint], bar: float) -> SweepPoint | None:
    """The most efficient discrete model (ties: the higher held-out mean) whose held-out mean score is at least
    ``bar``; None if there is none. Dev scores never enter the choice."""
    candidates = [p for p in points if p.kind != "independent" and (p.heldout_mean_score is not None and
                                                                   p.heldout_mean_score >= bar)]
    return max(candidates, key=lambda p: (p.efficiency, p.heldout_mean_score), default=None)


def sweep_claim(cfg, tasks: Sequence[str], points: Sequence[SweepPoint], independent: dict[str, Any] | None,
                model: Callable[..., dict | None]) -> dict[str, Any] | None:
    """The headline model, chosen on the held-out split: the most efficient discrete model of the sweep (a searched
    tree or a baseline tree such as full sharing: every one is a model the generator can output, trained with the
    same recipe) whose held-out mean score is within ``cfg.claim_margin`` points of the reference independent run's
    (the first folder of ``independent``, the independent models' record, so that the choice never waits for the
    other seeds), fine-tuned again with every claim seed (``model(b, label, seed=s)``: its record, None while it is
    still to train); its dev mean over the seeds against the independent models' is the claim. A seed still to
    train leaves the claim ``"complete": false`` with no dev mean (its ``finetune_wall_clock_s`` counts the claim
    seeds finished so far). None without a reference run with held-out scores."""
    if independent is None or not independent.get("seeds") or not cfg.independent_dirs:
        return None
    reference = independent["seeds"][0]
    if reference.get("folder") != cfg.independent_dirs[0] or "heldout_mean_score" not in reference:
        return None
    bar = reference["heldout_mean_score"] - cfg.claim_margin
    chosen = choose_claim(points, bar)
    if chosen is None:
        return {"chosen_on": "heldout", "model": None, "heldout_bar": bar,
                "note": f"no discrete model is within {_points(cfg.claim_margin, 'held-out ')} of the independent "
                        "models"}
    runs = [dict(chosen.model)] + [model(chosen.branch_points, f"{chosen.label}, claim seed {s}", seed=s)
                                   for s in cfg.claim_seeds]
    head = {"chosen_on": "heldout", "complete": all(r is not None for r in runs), "label": chosen.label,
            "kind": chosen.kind, "branch_points": chosen.branch_points, "heldout_bar": bar,
            "heldout_mean_score": chosen.heldout_mean_score, "efficiency": chosen.efficiency,
            "energy_ratio": chosen.energy_ratio}
    trained = float(sum(r["finetune_wall_clock_s"] for r in runs[1:] if r is not None))
    if not head["complete"]:
        return head | {"seeds_finished": [r["seed"] for r in runs if r is not None],
                       "seeds_pending": [s for s, r in zip(cfg.claim_seeds, runs[1:]) if r is None],
                       "finetune_wall_clock_s": trained,
                       "note": "provisional: chosen among the models finished so far; no dev mean before every seed "
                               "is in"}
    return head | _claim_means(tasks, runs, independent["seeds"]) | {"runs": runs[1:], "finetune_wall_clock_s": trained}


def _claim_means(tasks: Sequence[str], runs: Sequence[dict], independent_seeds: Sequence[dict]) -> dict[str, Any]:
    """The claim model's dev means over its seeds against the independent models' over theirs."""
    mean_scores = {t: float(np.mean([r["scores"][t] for r in runs])) for t in tasks}
    mean = float(np.mean(list(mean_scores.values())))
    per_seed = [float(r["mean_score"]) for r in runs]
    ref_seeds = [float(r["mean_score"]) for r in independent_seeds]
    return {
        "seeds": [r["seed"] for r in runs], "dev_mean_score_by_seed": per_seed, "dev_scores_mean": mean_scores,
        "dev_mean_score": mean, "dev_mean_score_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
        "independent_seeds": [r["seed"] for r in independent_seeds],
        "independent_dev_mean_score": float(np.mean(ref_seeds)), "independent_dev_mean_score_by_seed": ref_seeds,
        "drop_points": float(np.mean(ref_seeds)) - mean,
    }


def sweep_goal_reading(search: Sequence[SweepPoint], reference: SweepPoint | None, claim: dict[str, Any] | None,
                       goal: Goal) -> dict[str, Any] | None:
    """The sweep record's ``goal_3x_within_1_point``: is ``goal`` met (efficiency >= ``goal.efficiency`` within
    ``goal.max_drop_points`` of ``reference``, the independent models or else uniform b = 0)? Judged on the claim (its
    dev mean over the seeds) when the sweep has one, else on single-seed dev scores; the best efficiency within the
    drop read off single-seed dev scores is reported beside it. None without a reference."""
    if reference is None:
        return None
    within = [p for p in search if reference.mean_score - p.mean_score <= goal.max_drop_points]
    out = {"reference": reference.label, "reference_mean_score": reference.mean_score,
           "best_efficiency_within_1_point": max((p.efficiency for p in within), default=None)}
    if claim is None:
        ok = [p for p in within if p.efficiency >= goal.efficiency]
        return out | {"judged_on": "single-seed dev scores (no held-out claim: that needs independent runs and a "
                                   "held-out split)", "met": bool(ok), "models": [p.label for p in ok]}
    if claim.get("model", True) is None:  # the held-out rule chose nothing: dev may not meet the goal in its place
        return out | {"judged_on": "held-out selection: no model passed the held-out bar", "met": False, "models": []}
    if not claim.get("complete", True):
        return out | {"judged_on": "pending: the held-out-chosen model's claim seeds are still to train", "met": None,
                      "models": []}
    met = bool(claim["efficiency"] >= goal.efficiency and claim["drop_points"] <= goal.max_drop_points)
    return out | {"judged_on": f"the held-out-chosen model's dev mean over {len(claim['seeds'])} seed(s) against the "
                               f"independent models' over {len(claim['independent_seeds'])}",
                  "met": met, "models": [claim["label"]] if met else [],
                  "note": "best_efficiency_within_1_point is read off single-seed dev scores after the fact: "
                          "reported, not a claim"}


def best_point(search: Sequence[SweepPoint], goal: Goal) -> SweepPoint | None:
    """The record's ``best`` searched point: the highest mean score less 10 points per unit of energy ratio above the
    goal's (1 / ``goal.efficiency``): a ranking kept for the record's format, not a claim."""
    return max(search, key=lambda p: p.mean_score - 10 * max(0.0, p.energy_ratio - 1 / goal.efficiency),
               default=None)
