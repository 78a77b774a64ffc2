"""How results are read against a goal, and the words that say so: the front's headline (``read_front``), the
sweep's claim in one line (``sweep_headline``), and efficiencies printed without crossing a goal by rounding
(``format_efficiency``). The command line prints these sentences; it does not build them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from mgen_jax.errors import ConfigError
from mgen_jax.io import check_known_fields


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
