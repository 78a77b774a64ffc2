"""A sweep's points: every model it reports (``SweepPoint``), which of them are on the Pareto front, and how each
model that is not a searched one fares against the searched ones."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

KINDS = ("search", "full sharing", "uniform", "heuristic", "given", "independent")


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One model of a sweep: ``model``, its record (a discrete model's result.json, or the independent models'
    record: branch points, scores, held-out scores, exact energy), and how the sweep obtained it. ``kind`` is one of
    KINDS; a searched model has a ``method``, "lambda" or "budget"; ``details`` are what its kind adds to the record
    (a lambda search's lambda and expected branch points; a budget pick's budgets and estimated loss); ``obtained``
    says in words how it was obtained."""

    kind: str
    label: str
    model: Mapping[str, Any]
    obtained: str
    method: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def energy_ratio(self) -> float:
        return self.model["energy_ratio"]

    @property
    def efficiency(self) -> float:
        return self.model["efficiency"]

    @property
    def mean_score(self) -> float:
        return self.model["mean_score"]

    @property
    def heldout_mean_score(self) -> float | None:
        return self.model.get("heldout_mean_score")

    @property
    def branch_points(self) -> list[int]:
        return self.model["branch_points"]

    @property
    def searched(self) -> bool:
        return self.kind == "search"

    def to_dict(self, *, pareto: bool, versus_search: dict[str, Any] | None = None) -> dict[str, Any]:
        """The point as the sweep record holds it: the model's record, then kind, method, label, details, obtained,
        whether it is on the Pareto front and (not for searched points) ``versus_search``."""
        out = dict(self.model) | {"kind": self.kind}
        if self.method is not None:
            out["method"] = self.method
        out |= {"label": self.label} | dict(self.details) | {"obtained": self.obtained, "pareto": pareto}
        if versus_search is not None:
            out["versus_search"] = versus_search
        return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (energy ratio, mean score) points not dominated (lower energy ratio and higher mean score, one
    strictly).

    >>> pareto_front([(1.0, 80), (0.5, 79), (0.6, 78), (0.2, 70)])
    [0, 1, 3]
    """
    front = []
    for i, (energy, score) in enumerate(points):
        dominated = any(e <= energy and s >= score and (e < energy or s > score)
                        for j, (e, s) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def versus_search(search: Sequence[SweepPoint], baseline: SweepPoint) -> dict[str, Any]:
    """Does some searched point have at most the baseline's energy and at least its score (or vice versa)?"""
    same_energy = [s for s in search if s.energy_ratio <= baseline.energy_ratio + 1e-9]
    same_score = [s for s in search if s.mean_score >= baseline.mean_score]
    best_at_energy = max(same_energy, key=lambda s: s.mean_score, default=None)
    least_at_score = min(same_score, key=lambda s: s.energy_ratio, default=None)
    return {
        "score_gain_at_no_more_energy": None if best_at_energy is None else
        best_at_energy.mean_score - baseline.mean_score,
        "energy_saving_at_no_lower_score": None if least_at_score is None else
        baseline.energy_ratio - least_at_score.energy_ratio,
        "beaten": bool((best_at_energy is not None and best_at_energy.mean_score > baseline.mean_score) or
                       (least_at_score is not None and least_at_score.energy_ratio < baseline.energy_ratio)),
    }


def point_dicts(points: Sequence[SweepPoint]) -> list[dict[str, Any]]:
    """Every point as the record holds it: on the Pareto front or not, and the others against the searched ones."""
    front = set(pareto_front([(p.energy_ratio, p.mean_score) for p in points]))
    search = [p for p in points if p.searched]
    return [p.to_dict(pareto=i in front, versus_search=None if p.searched else versus_search(search, p))
            for i, p in enumerate(points)]
