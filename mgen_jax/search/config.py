"""Search (model generator) configuration: a frozen dataclass loaded from YAML (configs/search/*.yaml, in sections:
search/config_file.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from mgen_jax.errors import ConfigError
from mgen_jax.io import build_config, check_name, describe_value


SAMPLING_MODES = ("soft", "gumbel", "hard", "enumerate")  # see search/steps.py: make_relaxed_step
WARMUP_SAMPLING_MODES = ("soft", "gumbel", "hard")  # the warm-up's logits are frozen: "enumerate" would be "hard"
MAX_LAMBDA = 1e6  # the energy term's weight: lambda x energy ratio stays a finite float32 loss


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    name: str
    tasks: tuple[str, ...]
    model: str = "minilm-l6"
    hw: str = "isaac"
    # <dir>/<TASK>/final_params.msgpack and summary.json of the independent models; a list gives one folder per
    # training seed (the first is the reference: its budgets, rows and weights); None = own units pretrained
    independent_runs: str | tuple[str, ...] | None = "runs/baseline"
    pooling: str = "mean"
    max_length: int = 128
    buckets: tuple[int, ...] = (32, 64, 96, 128)
    per_task_batch: int = 8  # examples of every task in one mixed batch
    length_window: int = 64  # examples near a common length quantile from which each task's batch is drawn
    max_dev_per_task: int | None = None  # cap on each dev set (seeded subset); None = whole dev set
    # the held-out selection split carved from every train set (data/splits.py): never trained on; every choice (task
    # weights, the loss profile, budgets, the headline model) reads it, and dev is only reported. 0 = none (the
    # recipe-study configs, run before this protocol: their loss profile then reads train batches no phase drew)
    heldout_fraction: float = 0.1
    heldout_max_rows: int = 1000
    heldout_seed: int = 0
    data_seed: int = 0  # seed of the train caps
    max_train_per_task: dict[str, int] | None = None  # train caps by task name (with finetune_budget: independent,
    # the caps, data seed and held-out split are the independent runs' own, and these fields must agree with them)
    # phases (steps of mixed batches)
    warmup_steps: int = 150  # relaxed model, branch logits frozen
    search_steps: int = 200  # relaxed model, weights and logits
    finetune_steps: int = 300  # every discrete model (ours and baselines), from the same starting weights
    # the fine-tuning budget of every discrete model: null = finetune_steps mixed batches of per_task_batch examples
    # of every task; "independent" = each task exactly the batches its independent model saw (rows, batch size,
    # steps, order: search/budget.py); or per task {examples: N} or {epochs: E} of finetune_batch_size batches
    finetune_budget: str | dict[str, dict[str, float]] | None = None
    finetune_batch_size: int = 32
    # extra training seeds of the model that makes the headline claim (chosen on the held-out split), so that the
    # claim compares 3-seed means with the independent models'
    claim_seeds: tuple[int, ...] = ()
    # the claim model may be this many held-out points (mean main metric x 100) below the reference independent run
    claim_margin: float = 1.0
    # the sweep's goal (judge.sweep_goal): its claim at least this efficiency (independent energy / its energy) ...
    goal_efficiency: float = 3.0
    # ... at most this many dev points (mean main metric x 100) below the independent models' mean
    goal_max_drop_points: float = 1.0
    # where every discrete model starts: "independent" = embeddings and trunk from the warm-up, own units and heads
    # from the independently fine-tuned models (b = 0 is then the independent models); "warmup" = all from the
    # warm-up; "pretrained" = every unit a copy of the pretrained encoder and fresh heads, as the independent models
    # started (the equal-budget protocol: the warm-up then serves the selection only)
    finetune_init: str = "warmup"
    finetune_own_lr_scale: float = 1.0  # learning rate of own units and heads = this x lr_finetune (trunk: 1 x)
    # distillation while fine-tuning: task t's objective = (1 - w) x its task loss + w x a distillation loss against
    # its independently fine-tuned model (independent_runs; KL at distill_temperature, squared error for regression)
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    # teacher annealing (Clark et al. 2019, "BAM! Born-Again Multi-Task Networks"; equal-budget fine-tuning only): the
    # distillation weight falls linearly from distill_weight at the first step to 0 at the last, so that a model first
    # imitates its teachers and ends on the gold labels
    distill_anneal: bool = False
    # the teachers' folder (<folder>/<TASK>/final_params.msgpack, fine-tuned on the same rows); None = the reference
    # independent run (independent_runs' first)
    teacher_run: str | None = None
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
    compute_dtype: str = "float32"  # of matmuls and activations in every phase (model/bert.py); bfloat16 on GPU/TPU
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
    # of loss, experiments/archive/calibrate_task_weights.py; lambda searches need sampling "enumerate"), and so does
    # budget selection; None = every task 1. The weights still train on the plain sum of task losses.
    # "heldout": calibrated in the sweep on the held-out split (search/select.py: calibrate_task_weights)
    search_task_weights: tuple[float, ...] | str | None = None
    task_weight_min_drop: float = 0.5  # floor of a task's score drop in that calibration, points
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
    # a uniform-b baseline at the energy of every budget-selected model (the b of nearest energy ratio)
    uniform_at_budgets: bool = False
    # discrete models given by their branch points (e.g. trees another sweep's budget selection chose), fine-tuned
    # and evaluated like every other model: a list of {branch_points: [b_1, ..., b_T], label: str, source: str}
    trees: tuple[dict[str, Any], ...] = ()
    full_sharing: bool = True  # fine-tune the full-sharing baseline (b = U for every task); heldout task weights need it
    profile_batches: int = 24
    # what ranks the trees: "loss" (the warm-up's mean loss per branch point) or "score" (its held-out main score,
    # smoothed non-increasing in b; needs a held-out split): search/selection.py: selection_profile
    profile_metric: str = "loss"
    # the gradient search in one run inside the training budget (search/gradient.py: GradientSettings): energy
    # targets, seeds, estimator, the share of the budget spent searching, the logits' and multiplier's steps
    gradient: Any = None
    seed: int = 0

    def __post_init__(self) -> None:
        from mgen_jax.search.gradient_settings import GradientSettings

        if not isinstance(self.gradient, GradientSettings):
            object.__setattr__(self, "gradient", GradientSettings.from_mapping(self.gradient))
        for name in ("tasks", "buckets", "lambdas", "uniform_branch_points", "heuristic_thresholds", "energy_budgets",
                     "claim_seeds", "trees"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"search config field '{name}' must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if isinstance(self.independent_runs, (list, tuple)):
            object.__setattr__(self, "independent_runs", tuple(str(x) for x in self.independent_runs))
            if not self.independent_runs:
                raise ConfigError("search config field 'independent_runs' must name at least one folder, or be null")
        _ = self.heldout  # validates the held-out fields
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int) or self.data_seed < 0:
            raise ConfigError(f"search config field 'data_seed' must be an integer >= 0, got {self.data_seed!r}")
        if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in self.claim_seeds):
            raise ConfigError(f"search config field 'claim_seeds' must hold integers >= 0, got {list(self.claim_seeds)}")
        if self.seed in self.claim_seeds or len(set(self.claim_seeds)) != len(self.claim_seeds):
            raise ConfigError(f"search config field 'claim_seeds' must hold distinct seeds other than seed "
                              f"({self.seed}), got {list(self.claim_seeds)}")
        if isinstance(self.claim_margin, bool) or not isinstance(self.claim_margin, (int, float)) or not (
                math.isfinite(self.claim_margin) and self.claim_margin >= 0):
            raise ConfigError(f"search config field 'claim_margin' must be a finite number >= 0 (held-out points), "
                              f"got {self.claim_margin!r}")
        self._check_caps_and_budget()
        self._check_trees()
        check_name(self.name, "search config field 'name'")  # it names the run folder and the record files
        if len(self.tasks) < 2:
            raise ConfigError(f"search config '{self.name}': field 'tasks' needs at least two tasks")
        self._check_training()
        self._check_sweep()
        self._check_task_weights()

    def _check_training(self) -> None:
        from mgen_jax.train.config import MAX_BATCH, MAX_STEPS, MAX_TOKENS

        # sizes that allocate (a batch, a length) or count steps (the train state's int32 step; a schedule array),
        # each refused above a stated limit before anything is allocated
        for name, low, high in (("max_length", 1, MAX_TOKENS), ("per_task_batch", 1, MAX_BATCH),
                                ("finetune_batch_size", 1, MAX_BATCH), ("length_window", 1, 2**53),
                                ("checkpoint_every_steps", 1, 2**53), ("profile_batches", 1, MAX_STEPS),
                                ("warmup_steps", 0, MAX_STEPS), ("search_steps", 0, MAX_STEPS),
                                ("finetune_steps", 0, MAX_STEPS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"search config field '{name}' must be an integer >= {low} and <= {high:,}, got "
                                  f"{value!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):  # model/bert.py: COMPUTE_DTYPES
            raise ConfigError(f"search config field 'compute_dtype' must be float32 or bfloat16, got "
                              f"{describe_value(self.compute_dtype)}")
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
        if not isinstance(self.distill_anneal, bool):
            raise ConfigError(f"search config field 'distill_anneal' must be true or false, got {self.distill_anneal!r}")
        if self.distill_anneal and not self.distill_weight > 0:
            raise ConfigError("search config field 'distill_anneal' anneals the distillation weight: it needs "
                              "'distill_weight' > 0")
        if self.distill_anneal and self.finetune_budget is None:
            raise ConfigError("search config field 'distill_anneal' needs 'finetune_budget' (teacher annealing runs in "
                              "equal-budget fine-tuning)")
        if self.teacher_run is not None and (not isinstance(self.teacher_run, str) or not self.teacher_run.strip()
                                             or not self.distill_weight > 0):
            raise ConfigError(f"search config field 'teacher_run' must name a folder of fine-tuned task models and "
                              f"needs 'distill_weight' > 0, got {self.teacher_run!r}")
        if self.distill_weight > 0 and self.independent_runs is None:
            raise ConfigError("search config field 'distill_weight' > 0 needs 'independent_runs' (the teachers)")
        if self.max_dev_per_task is not None and (isinstance(self.max_dev_per_task, bool) or
                                                  not isinstance(self.max_dev_per_task, int) or
                                                  self.max_dev_per_task < 1):
            raise ConfigError(f"search config field 'max_dev_per_task' must be a positive integer or null, "
                              f"got {self.max_dev_per_task!r}")
        for name, low, high in (("weight_decay", 0.0, 1.0), ("warmup_ratio", 0.0, 0.999999)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"search config field '{name}' must be in [{low:g}, {high:g}], got {value!r}")

    def _check_sweep(self) -> None:
        if any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in self.uniform_branch_points):
            raise ConfigError(f"search config field 'uniform_branch_points' must hold integers >= 0 (at most U, the "
                              f"model's units), got {list(self.uniform_branch_points)}")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1
               for x in self.heuristic_thresholds):
            raise ConfigError(f"search config field 'heuristic_thresholds' must hold CKA values in [0, 1], "
                              f"got {list(self.heuristic_thresholds)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"search config field 'seed' must be an integer >= 0, got {self.seed!r}")
        if not (0 < self.temperature_end <= self.temperature_start):
            raise ConfigError("search config: need 0 < temperature_end <= temperature_start")
        if any(not (math.isfinite(l) and 0 <= l <= MAX_LAMBDA) for l in self.lambdas):
            raise ConfigError(f"search config field 'lambdas' must lie in [0, {MAX_LAMBDA:g}], got {list(self.lambdas)}")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1 for x in self.energy_budgets):
            raise ConfigError(f"search config field 'energy_budgets' must hold energy ratios in (0, 1], "
                              f"got {list(self.energy_budgets)}")
        if not isinstance(self.budgets_at_baselines, bool):
            raise ConfigError(f"search config field 'budgets_at_baselines' must be true or false, "
                              f"got {self.budgets_at_baselines!r}")
        if list(self.buckets) != sorted(self.buckets) or self.buckets[-1] < self.max_length:
            raise ConfigError(f"search config field 'buckets' must increase and end at >= max_length, got {self.buckets}")
        if self.finetune_init not in ("warmup", "independent", "pretrained"):
            raise ConfigError(f"search config field 'finetune_init' must be 'warmup', 'independent' or 'pretrained', "
                              f"got {self.finetune_init!r}")
        if not isinstance(self.uniform_at_budgets, bool):
            raise ConfigError(f"search config field 'uniform_at_budgets' must be true or false, "
                              f"got {self.uniform_at_budgets!r}")
        for name, modes in (("sampling", SAMPLING_MODES), ("warmup_sampling", WARMUP_SAMPLING_MODES)):
            if getattr(self, name) not in modes:
                raise ConfigError(f"search config field '{name}' must be one of {modes}, got {getattr(self, name)!r}")
        if not (isinstance(self.task_weight_min_drop, (int, float)) and math.isfinite(self.task_weight_min_drop)
                and self.task_weight_min_drop > 0):
            raise ConfigError(f"search config field 'task_weight_min_drop' must be > 0, got {self.task_weight_min_drop!r}")
        if not isinstance(self.full_sharing, bool):
            raise ConfigError(f"search config field 'full_sharing' must be true or false, got {self.full_sharing!r}")
        for name, low in (("goal_efficiency", 1.0), ("goal_max_drop_points", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                                      and value >= low):
                raise ConfigError(f"search config field '{name}' must be a finite number >= {low:g}, got {value!r}")

    def _check_task_weights(self) -> None:
        if isinstance(self.search_task_weights, str) and not self.full_sharing:
            raise ConfigError("search config field 'search_task_weights: heldout' calibrates on the full-sharing "
                              "model: it needs 'full_sharing: true'")
        if isinstance(self.search_task_weights, str):
            if self.search_task_weights != "heldout":
                raise ConfigError(f"search config field 'search_task_weights' must be a list of numbers or 'heldout', "
                                  f"got {self.search_task_weights!r}")
            if self.heldout_fraction == 0 or self.independent_runs is None or self.lambdas:
                raise ConfigError("search config field 'search_task_weights: heldout' needs a held-out split "
                                  "(heldout_fraction > 0), independent_runs, and budget selection only (no lambdas)")
        for name in ("search_task_weights", "finetune_task_weights"):
            if getattr(self, name) is None or isinstance(getattr(self, name), str):
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
        if self.profile_metric not in ("loss", "score"):
            raise ConfigError(f"search config field 'profile_metric' must be 'loss' or 'score', "
                              f"got {self.profile_metric!r}")
        if self.profile_metric == "score" and self.heldout_fraction == 0:
            raise ConfigError("search config field 'profile_metric: score' needs a held-out split (heldout_fraction > 0)")

    def _check_trees(self) -> None:
        labels = []
        for i, tree in enumerate(self.trees):
            field = lambda suffix="": f"search config field 'trees[{i}]{suffix}'"
            if not isinstance(tree, dict) or not {"branch_points", "label"} <= set(tree) or not set(tree) <= {
                    "branch_points", "label", "source"}:
                raise ConfigError(f"{field()} must be a mapping with 'branch_points', 'label' and optionally 'source', "
                                  f"got {tree!r}")
            b = tree["branch_points"]
            if not isinstance(b, (list, tuple)) or len(b) != len(self.tasks) or any(
                    isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in b):
                raise ConfigError(f"{field('.branch_points')} must hold one integer >= 0 per task ({len(self.tasks)}), "
                                  f"got {b!r}")
            for key in ("label", "source"):
                if key in tree and (not isinstance(tree[key], str) or not tree[key].strip()):
                    raise ConfigError(f"{field('.' + key)} must be a non-empty string, got {tree[key]!r}")
            labels.append(tree["label"])
        if len(set(labels)) != len(labels):
            raise ConfigError(f"search config field 'trees': labels must differ, got {labels}")

    def _check_caps_and_budget(self) -> None:
        names = [_task(t, "tasks") for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"search config field 'tasks' names a task twice: {list(self.tasks)}")
        if self.max_train_per_task is not None:
            if not isinstance(self.max_train_per_task, dict):
                raise ConfigError(f"search config field 'max_train_per_task' must map task names to row counts, "
                                  f"got {self.max_train_per_task!r}")
            for task, cap in self.max_train_per_task.items():
                if _task(task, "max_train_per_task") not in names:
                    raise ConfigError(f"search config field 'max_train_per_task': {task!r} is not one of the tasks "
                                      f"{names}")
                if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                    raise ConfigError(f"search config field 'max_train_per_task.{task}' must be a positive integer, "
                                      f"got {cap!r}")
        budget = self.finetune_budget
        if budget is None:
            return
        if isinstance(budget, str):
            if budget != "independent":
                raise ConfigError(f"search config field 'finetune_budget' must be null, 'independent' or a mapping of "
                                  f"task -> {{examples: N}} or {{epochs: E}}, got {budget!r}")
            if self.independent_runs is None:
                raise ConfigError("search config field 'finetune_budget: independent' needs 'independent_runs'")
            return
        if not isinstance(budget, dict) or sorted(_task(t, "finetune_budget") for t in budget) != sorted(names):
            raise ConfigError(f"search config field 'finetune_budget' must give every task ({names}) a budget, "
                              f"got {budget!r}")
        for task, value in budget.items():
            ok = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("examples", "epochs")
            amount = next(iter(value.values())) if ok else None
            if not ok or isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                    math.isfinite(amount) and amount > 0) or (next(iter(value)) == "examples" and amount != int(amount)):
                raise ConfigError(f"search config field 'finetune_budget.{task}' must be {{examples: N}} (a positive "
                                  f"integer) or {{epochs: E}} (> 0), got {value!r}")

    @property
    def heldout(self):
        from mgen_jax.data.splits import HeldoutSpec

        return HeldoutSpec(self.heldout_fraction, self.heldout_max_rows, self.heldout_seed)

    @property
    def independent_dirs(self) -> tuple[str, ...]:
        """The independent runs' folders, one per training seed (the first is the reference); () if none."""
        runs = self.independent_runs
        return () if runs is None else ((runs,) if isinstance(runs, str) else tuple(runs))

    def to_dict(self) -> dict[str, Any]:
        """Every field (tuples as lists), but those of OMITTED_AT_DEFAULT that hold their defaults."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
        for name in OMITTED_AT_DEFAULT:
            if out[name] == SearchConfig.__dataclass_fields__[name].default:
                del out[name]
        return out


# Fields added after committed records were written: a record's config (to_dict) names them only when they differ
# from their defaults, so that those records are rebuilt equal.
OMITTED_AT_DEFAULT = ("goal_efficiency", "goal_max_drop_points", "compute_dtype")


def _task(name: Any, field: str) -> str:
    """The registry name of a task named in config field ``field``; ConfigError naming the field otherwise."""
    from mgen_jax.data.glue import get_task
    from mgen_jax.errors import DataError

    try:
        return get_task(str(name)).name
    except DataError as exc:
        raise ConfigError(f"search config field '{field}': {exc}") from None


def load_search_config(path: str | Path, *, set_values: dict[str, Any] | None = None, **overrides: Any) -> SearchConfig:
    """Load a YAML config in sections, with its ``extends`` chain (search/config_file.py; its name defaults to the
    file stem); ``overrides`` (non-None values, by field name or section.field) replace fields, and merge into the
    ``gradient`` mapping (search/config_file.apply_overrides); so do ``set_values`` (--set's: null is a value)."""
    from mgen_jax.search.config_file import apply_overrides, read_search_yaml

    values = read_search_yaml(path)
    sources = apply_overrides(values, dict(set_values or {}) | {k: v for k, v in overrides.items() if v is not None})
    if "tasks" not in values:
        raise ConfigError(f"search config {path}: missing field 'tasks' (section 'data:')")
    return build_config(SearchConfig, values, source=str(path), what="search config", required=("tasks",),
                        field_sources=sources)
