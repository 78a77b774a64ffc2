"""The ``gradient`` section of a search config (GradientSettings): what one run of the gradient search does
(search/gradient.py), each field checked when the config loads."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mgen_jax.errors import ConfigError
from mgen_jax.io import check_known_fields

ESTIMATORS = ("enumerate", "straight-through")
WEIGHT_SAMPLINGS = ("distribution", "uniform")
OBJECTIVES = ("loss", "score")


@dataclasses.dataclass(frozen=True)
class GradientSettings:
    """The ``gradient`` section of a search config: what the one-run search does, and where."""

    energy_targets: tuple[float, ...] = ()  # energy per request / the independent models', each a run
    seeds: tuple[int, ...] = (0,)  # training seeds of every target's run
    estimator: str = "enumerate"  # the logits' gradient: "enumerate" (exact expectation) or "straight-through"
    search_fraction: float = 0.1  # share of the training budget (global steps) spent searching (loss objective on
    # glue5 at r = 0.334, seed 0, held-out mean: 0.1 68.89, 0.2 68.32, 0.3 67.89; configs/front/glue5_search_fraction)
    logit_rows: int = 8  # rows of each batch the logits' gradient reads
    logit_damping: float = 0.5  # rho: the logits' mirror step is rho / tau, so that q moves a share rho of the way to
    # the Gibbs distribution softmax(-costs / tau) at every step, whatever the temperature (constrained.natural_step)
    dual_step: float = 1.0  # eta: mu's step per unit of constraint violation
    dual_settle_fraction: float = 0.02  # eta_k = eta / (1 + k / (this x search steps))^dual_decay
    dual_decay: float = 1.0
    mu_init: float = 1.0  # mu's start: with losses normalized by their mean (normalize_losses), costs are of order 1
    dual_tolerance: float = 0.1  # mu "converged": its range over the last tenth of the search is at most this
    # x max(1, its mean there)
    temperature_start: float = 1.0  # the entropy weight tau of the logits' objective (search/constrained.py)
    temperature_end: float = 0.01
    anneal_fraction: float = 0.75  # tau falls over this share of the search steps, then stays at temperature_end
    task_weights: tuple[float, ...] | None = None  # w_t of sum_t w_t E[loss_t]; None = every task 1
    normalize_losses: bool = True  # each task's loss over its mean over branch points: tasks of different loss
    # scales (cross-entropy near 0.7, STS-B's squared error near 10 early) pull on their logits alike
    loss_memory: float = 0.97  # moving-average factor per task step of each task's loss at every branch point
    weight_sampling: str = "uniform"  # the branch point the weights train on at each search step: uniformly over
    # 0..U ("uniform": every branch point's units train alike whatever the logits, so that the loss estimates compare
    # equally trained paths), or drawn from q_t ("distribution"). Uniform is the default by a held-out measurement
    # (configs/front/glue5_search_fraction.yaml: glue5, r = 0.334, seed 0, held-out mean 68.89 against 67.69)
    objective: str = "loss"  # what the logits minimise per task and branch point: the batch loss ("loss"), or 1 -
    # the task's main metric read from running sums of the rows the logits see ("score": search/running_score.py;
    # the enumeration's profile_metric: score). Needs estimator: enumerate; normalize_losses applies to "loss" only

    def __post_init__(self) -> None:
        field = lambda name: f"search config field 'gradient.{name}'"
        for name in ("energy_targets", "seeds"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{field(name)} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for x in self.energy_targets:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and 0 < x <= 1):
                raise ConfigError(f"{field('energy_targets')} must hold energy ratios in (0, 1], got {x!r}")
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds) \
                or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{field('seeds')} must hold distinct integers >= 0, got {list(self.seeds)}")
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"{field('estimator')} must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"{field('objective')} must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "score" and self.estimator != "enumerate":
            raise ConfigError(f"{field('objective')}: score is read at every branch point, so it needs estimator: "
                              f"enumerate (got {self.estimator!r}): a metric has no gradient for straight-through")
        if self.weight_sampling not in WEIGHT_SAMPLINGS:
            raise ConfigError(f"{field('weight_sampling')} must be one of {WEIGHT_SAMPLINGS}, got "
                              f"{self.weight_sampling!r}")
        for name, low, high in (("search_fraction", 0.0, 1.0), ("dual_settle_fraction", 0.0, 10.0),
                                ("logit_damping", 0.0, 1.0), ("dual_step", 0.0, 1e6), ("dual_tolerance", 0.0, 1e6),
                                ("temperature_start", 0.0, 100.0), ("temperature_end", 0.0, 100.0),
                                ("anneal_fraction", 0.0, 1.0), ("loss_memory", -1e-9, 0.999),
                                ("dual_decay", 0.0, 1.0), ("mu_init", 0.0, 1e6)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise ConfigError(f"{field(name)} must be in ({low:g}, {high:g}], got {value!r}")
        if self.temperature_end > self.temperature_start:
            raise ConfigError(f"{field('temperature_end')} ({self.temperature_end}) must be at most "
                              f"temperature_start ({self.temperature_start})")
        if isinstance(self.logit_rows, bool) or not isinstance(self.logit_rows, int) or self.logit_rows < 1:
            raise ConfigError(f"{field('logit_rows')} must be a positive integer, got {self.logit_rows!r}")
        if not isinstance(self.normalize_losses, bool):
            raise ConfigError(f"{field('normalize_losses')} must be true or false, got {self.normalize_losses!r}")
        if self.task_weights is not None:
            weights = tuple(self.task_weights) if isinstance(self.task_weights, (list, tuple)) else None
            if not weights or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not
                                  (math.isfinite(w) and w > 0) for w in weights):
                raise ConfigError(f"{field('task_weights')} must hold positive numbers, got {self.task_weights!r}")
            object.__setattr__(self, "task_weights", weights)

    @classmethod
    def from_mapping(cls, values: Any) -> "GradientSettings":
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise ConfigError(f"search config field 'gradient' must be a mapping, got {type(values).__name__}")
        check_known_fields(cls, values, "search config field 'gradient'")
        return cls(**values)

    def run_settings(self) -> dict[str, Any]:
        """What one run's result depends on (targets and seeds name the run's folder instead). A run folder made
        before a field existed counts as made with that field's earlier behaviour (rundir.BEFORE_THE_FIELD)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in ("energy_targets", "seeds")}
