"""Search (model generator) configuration: a frozen dataclass loaded from YAML (configs/search/*.yaml)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from mgen_jax.errors import ConfigError
from mgen_jax.io import build_config, read_config_yaml


SAMPLING_MODES = ("soft", "gumbel", "hard", "enumerate")  # see search/steps.py: make_relaxed_step
WARMUP_SAMPLING_MODES = ("soft", "gumbel", "hard")  # the warm-up's logits are frozen: "enumerate" would be "hard"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    name: str
    tasks: tuple[str, ...]
    model: str = "minilm-l6"
    hw: str = "isaac"
    independent_runs: str | None = "runs/baseline"  # <dir>/<TASK>/final_params.msgpack; None = own units pretrained
    pooling: str = "mean"
    max_length: int = 128
    buckets: tuple[int, ...] = (32, 64, 96, 128)
    per_task_batch: int = 8  # examples of every task in one mixed batch
    length_window: int = 64  # examples near a common length quantile from which each task's batch is drawn
    max_dev_per_task: int | None = None  # cap on each dev set (seeded subset); None = whole dev set
    # phases (steps of mixed batches)
    warmup_steps: int = 150  # relaxed model, branch logits frozen
    search_steps: int = 200  # relaxed model, weights and logits
    finetune_steps: int = 300  # every discrete model (ours and baselines), from the same starting weights
    # where every discrete model starts: "independent" = embeddings and trunk from the warm-up, own units and heads
    # from the independently fine-tuned models (b = 0 is then the independent models); "warmup" = all from the warm-up
    finetune_init: str = "warmup"
    finetune_own_lr_scale: float = 1.0  # learning rate of own units and heads = this x lr_finetune (trunk: 1 x)
    # distillation while fine-tuning: task t's objective = (1 - w) x its task loss + w x a distillation loss against
    # its independently fine-tuned model (independent_runs; KL at distill_temperature, squared error for regression)
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # fine-tuning objective sum_t v_t x loss_t (one positive number per task; None = every task 1), for every discrete
    # model alike, baselines included: a task the shared trunk serves badly (glue5: CoLA) can be given more pull
    finetune_task_weights: tuple[float, ...] | None = None
    checkpoint_every_steps: int = 50
    # optimisation
    lr_weights: float = 5e-5
    lr_logits: float = 0.05
    lr_finetune: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    temperature_start: float = 1.0
    temperature_end: float = 0.3
    # what the forward pass sees during the search: "soft" (the softmax mixture), "gumbel" (a Gumbel-softmax
    # sample), "hard" (a straight-through Gumbel sample: one discrete model per step) or "enumerate" (weights trained
    # on one sampled discrete model, logits on the exact expected loss over all U + 1 branch points, about 2x the
    # step time of "hard"); see search/steps.py
    sampling: str = "soft"
    # what the warm-up's forward pass sees (logits frozen at uniform): "soft" trains the weights for the mixture of
    # all branch points, "hard" for one uniformly drawn discrete model per task and step, so that every discrete
    # model the search will sample starts out trained (README: "The warm-up decides what the search can see")
    warmup_sampling: str = "soft"
    # the branch logits weigh task t's expected loss by w_t (one positive number per task, e.g. dev points per unit
    # of loss, experiments/calibrate_task_weights.py; lambda searches need sampling "enumerate"), and so does budget
    # selection; None = every task 1. The weights still train on the plain sum of task losses.
    search_task_weights: tuple[float, ...] | None = None
    # sweep
    lambdas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    uniform_branch_points: tuple[int, ...] = (2, 4, 6, 8, 10)
    heuristic_thresholds: tuple[float, ...] = (0.9, 0.8, 0.7)
    redundancy_file: str | None = "experiments/results/redundancy_glue5.json"
    # budget selection (search/select.py): per energy budget (a ratio to the independent models, in (0, 1]) the tree of
    # least estimated loss (search_task_weights x the warm-up's loss profile on profile_batches batches) within it;
    # budgets_at_baselines adds every baseline's own energy ratio as a budget (below 1, above full sharing's)
    energy_budgets: tuple[float, ...] = ()
    budgets_at_baselines: bool = False
    profile_batches: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("tasks", "buckets", "lambdas", "uniform_branch_points", "heuristic_thresholds", "energy_budgets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.tasks) < 2:
            raise ConfigError(f"search config '{self.name}': field 'tasks' needs at least two tasks")
        for name in ("max_length", "per_task_batch", "length_window", "checkpoint_every_steps", "profile_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"search config field '{name}' must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "search_steps", "finetune_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"search config field '{name}' must be an integer >= 0, got {value!r}")
        for name in ("lr_weights", "lr_logits", "lr_finetune"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 10):
                raise ConfigError(f"search config field '{name}' must be in (0, 10), got {value!r}")
        if not (isinstance(self.finetune_own_lr_scale, (int, float)) and 0 <= self.finetune_own_lr_scale <= 1):
            raise ConfigError(f"search config field 'finetune_own_lr_scale' must be in [0, 1], "
                              f"got {self.finetune_own_lr_scale!r}")
        if not (isinstance(self.distill_weight, (int, float)) and 0 <= self.distill_weight <= 1):
            raise ConfigError(f"search config field 'distill_weight' must be in [0, 1], got {self.distill_weight!r}")
        if not (isinstance(self.distill_temperature, (int, float)) and 0 < self.distill_temperature <= 100):
            raise ConfigError(f"search config field 'distill_temperature' must be in (0, 100], "
                              f"got {self.distill_temperature!r}")
        if self.distill_weight > 0 and self.independent_runs is None:
            raise ConfigError("search config field 'distill_weight' > 0 needs 'independent_runs' (the teachers)")
        if not (0 < self.temperature_end <= self.temperature_start):
            raise ConfigError("search config: need 0 < temperature_end <= temperature_start")
        if any(not math.isfinite(l) or l < 0 for l in self.lambdas):
            raise ConfigError(f"search config field 'lambdas' must be finite and >= 0, got {list(self.lambdas)}")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1 for x in self.energy_budgets):
            raise ConfigError(f"search config field 'energy_budgets' must hold energy ratios in (0, 1], "
                              f"got {list(self.energy_budgets)}")
        if not isinstance(self.budgets_at_baselines, bool):
            raise ConfigError(f"search config field 'budgets_at_baselines' must be true or false, "
                              f"got {self.budgets_at_baselines!r}")
        if list(self.buckets) != sorted(self.buckets) or self.buckets[-1] < self.max_length:
            raise ConfigError(f"search config field 'buckets' must increase and end at >= max_length, got {self.buckets}")
        if self.finetune_init not in ("warmup", "independent"):
            raise ConfigError(f"search config field 'finetune_init' must be 'warmup' or 'independent', "
                              f"got {self.finetune_init!r}")
        for name, modes in (("sampling", SAMPLING_MODES), ("warmup_sampling", WARMUP_SAMPLING_MODES)):
            if getattr(self, name) not in modes:
                raise ConfigError(f"search config field '{name}' must be one of {modes}, got {getattr(self, name)!r}")
        for name in ("search_task_weights", "finetune_task_weights"):
            if getattr(self, name) is None:
                continue
            weights = tuple(getattr(self, name))
            object.__setattr__(self, name, weights)
            if len(weights) != len(self.tasks) or not all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
                    for w in weights):
                raise ConfigError(f"search config field '{name}' needs one positive number per task "
                                  f"({len(self.tasks)}), got {list(weights)}")
        if self.search_task_weights is not None:
            if self.sampling != "enumerate" and self.lambdas:
                raise ConfigError("search config field 'search_task_weights' needs sampling: enumerate for the "
                                  f"lambda searches (got {self.sampling!r}); budget selection alone takes any")
        if self.pooling not in ("mean", "cls"):
            raise ConfigError(f"search config field 'pooling' must be 'mean' or 'cls', got {self.pooling!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def load_search_config(path: str | Path, **overrides: Any) -> SearchConfig:
    """Load a YAML config (its name defaults to the file stem); ``overrides`` (non-None values) replace fields."""
    values = read_config_yaml(path, "search config")
    values.setdefault("name", Path(path).stem)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(SearchConfig, values, source=str(path), what="search config", required=("tasks",))
