"""A front config (configs/front/*.yaml, search/front.py): energy budgets in the order they are trained, each with
the candidate models that may represent it, the seeds, the baselines, the goal the headline is read against and the
goals of its gradient-vs-enumeration budgets (search/head_to_head.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from mgen_jax.errors import ConfigError
from mgen_jax.io import build_config, check_known_fields, check_name, describe_value, read_config_yaml
from mgen_jax.search.head_to_head import HeadToHead
from mgen_jax.search.judge import Goal


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One model that may represent a budget: a tree (``branch_points``) fine-tuned with ``config``'s recipe, or
    ``config``'s gradient search at ``energy_target`` (with ``gradient`` overriding fields of its gradient
    section)."""

    label: str
    config: str
    branch_points: Optional[tuple[int, ...]] = None
    energy_target: Optional[float] = None
    gradient: Optional[dict[str, Any]] = None
    all_seeds: bool = False  # every seed of the front even when not the budget's held-out choice (head-to-head)

    def __post_init__(self) -> None:
        field = f"front candidate {self.label!r}"
        if not isinstance(self.label, str) or not self.label.strip():
            raise ConfigError(f"a front candidate needs a non-empty 'label', got {self.label!r}")
        if (self.branch_points is None) == (self.energy_target is None):
            raise ConfigError(f"{field}: give exactly one of 'branch_points' (a tree) and 'energy_target' (a gradient "
                              "search)")
        if self.branch_points is not None:
            b = self.branch_points
            if not isinstance(b, (list, tuple)) or not b or any(isinstance(x, bool) or not isinstance(x, int) or x < 0
                                                                for x in b):
                raise ConfigError(f"{field}: 'branch_points' must be a list of integers >= 0, got {b!r}")
            object.__setattr__(self, "branch_points", tuple(b))
        if self.energy_target is not None and (isinstance(self.energy_target, bool) or not isinstance(
                self.energy_target, (int, float)) or not 0 < self.energy_target <= 1):
            raise ConfigError(f"{field}: 'energy_target' must be in (0, 1], got {self.energy_target!r}")
        if self.gradient is not None and (self.energy_target is None or not isinstance(self.gradient, dict)):
            raise ConfigError(f"{field}: 'gradient' (a mapping of gradient-section fields) goes with 'energy_target'")
        if not isinstance(self.all_seeds, bool):
            raise ConfigError(f"{field}: 'all_seeds' must be true or false, got {self.all_seeds!r}")

    @property
    def kind(self) -> str:
        return "gradient" if self.energy_target is not None else "tree"

    @property
    def tag(self) -> str:
        """The gradient run's folder tag for its overrides ('' for none)."""
        return "_".join(f"{k}-{v:g}".replace(".", "p") if isinstance(v, float) else f"{k}-{v}"
                        for k, v in sorted((self.gradient or {}).items()))


@dataclasses.dataclass(frozen=True)
class Budget:
    label: str
    energy_ratio: float  # the budget (1 = independent); full sharing's own ratio for a full-sharing point
    candidates: tuple[Candidate, ...]


@dataclasses.dataclass(frozen=True)
class FrontConfig:
    name: str
    reference: str  # a search config whose independent_runs are the independent models (one folder per seed)
    budgets: tuple[Budget, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    baselines: tuple[Candidate, ...] = ()  # plotted with their first seed only (e.g. uniform branch points)
    goal: Goal = Goal()
    bootstrap_samples: int = 2000
    bootstrap_level: float = 0.90
    bootstrap_seed: int = 0
    previous_record: Optional[str] = None  # a sweep record whose held-out claim is the front's second reading
    head_to_head: HeadToHead = HeadToHead()  # the goals of its gradient-vs-enumeration budgets, if it has any

    def __post_init__(self) -> None:
        check_name(self.name, "front config field 'name'")  # it names the record files in --out
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ConfigError(f"front config field 'seeds' must hold distinct integers >= 0, got {self.seeds!r}")
        if not self.budgets:
            raise ConfigError("front config field 'budgets' is empty")
        labels = [b.label for b in self.budgets]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"front config field 'budgets': labels must differ, got {labels}")
        if not isinstance(self.bootstrap_samples, int) or not 10 <= self.bootstrap_samples <= 100_000:
            raise ConfigError(f"front config field 'bootstrap_samples' must be in 10..100000, "
                              f"got {self.bootstrap_samples!r}")
        if not isinstance(self.bootstrap_level, float) or not 0.5 <= self.bootstrap_level < 1:
            raise ConfigError(f"front config field 'bootstrap_level' must be in [0.5, 1), got {self.bootstrap_level!r}")
        compared = [b.energy_ratio for b in self.budgets if _head_to_head(b)]
        dev_budget = self.head_to_head.dev_goal_budget
        if compared and dev_budget is not None and not any(abs(r - dev_budget) < 1e-9 for r in compared):
            raise ConfigError(f"front config field 'head_to_head.dev_goal_budget' ({self.head_to_head.dev_goal_budget})"
                              f" is not the energy ratio of a head-to-head budget ({compared})")


def _head_to_head(budget: Budget) -> bool:
    """Does ``budget`` compare one gradient-search candidate with one tree, both on every seed?"""
    seeded = [c for c in budget.candidates if c.all_seeds]
    return sum(c.kind == "gradient" for c in seeded) == 1 and sum(c.kind == "tree" for c in seeded) == 1


def _items(value: Any, where: str) -> list:
    if value is not None and not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {describe_value(value)}")
    return value or []


def _candidate(values: Any, where: str) -> Candidate:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    check_known_fields(Candidate, values, where)
    return Candidate(**values)


def load_front_config(path: str | Path) -> FrontConfig:
    values = read_config_yaml(path, "front config")
    values.setdefault("name", Path(path).stem)
    budgets = []
    for i, b in enumerate(_items(values.pop("budgets", None), f"front config {path}: budgets")):
        where = f"front config {path}: budgets[{i}]"
        if not isinstance(b, dict) or set(b) != {"label", "energy_ratio", "candidates"}:
            raise ConfigError(f"{where} must have exactly 'label', 'energy_ratio' and 'candidates'")
        ratio = b["energy_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ConfigError(f"{where}.energy_ratio must be in (0, 1], got {ratio!r}")
        cands = tuple(_candidate(c, f"{where}.candidates[{j}]")
                      for j, c in enumerate(_items(b["candidates"], f"{where}.candidates")))
        if not cands:
            raise ConfigError(f"{where}.candidates is empty")
        budgets.append(Budget(str(b["label"]), float(ratio), cands))
    values["budgets"] = tuple(budgets)
    values["baselines"] = tuple(_candidate(c, f"front config {path}: baselines[{j}]")
                                for j, c in enumerate(_items(values.pop("baselines", None),
                                                             f"front config {path}: baselines")))
    for name, kind in (("goal", Goal), ("head_to_head", HeadToHead)):
        given = values.pop(name, None)
        if given is not None and not isinstance(given, dict):
            raise ConfigError(f"front config {path}: '{name}' must be a mapping, got {describe_value(given)}")
        values[name] = kind.from_mapping(given or {}, f"front config {path}: {name}")
    if "seeds" in values and isinstance(values["seeds"], list):
        values["seeds"] = tuple(values["seeds"])
    return build_config(FrontConfig, values, source=str(path), what="front config", required=("reference", "budgets"))
