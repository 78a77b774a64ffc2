"""Fine-tuning configuration: a frozen dataclass loaded from YAML (configs/finetune/*.yaml) and validated."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from mgen_jax.data.pipeline import DEFAULT_BUCKETS
from mgen_jax.data.splits import HeldoutSpec
from mgen_jax.errors import ConfigError
from mgen_jax.io import build_config, describe_value, read_config_yaml
from mgen_jax.model.bert import COMPUTE_DTYPES


MAX_TOKENS = 65_536  # max_length and every bucket: far beyond any BERT's positions, refused before any allocation
MAX_BATCH = 65_536  # batch_size and eval_batch_size
MAX_STEPS = 2**31 - 1  # training steps of one run: the train state counts them in an int32


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    task: str
    model: str = "minilm-l6"
    max_length: int = 128  # tokens, truncation of each example
    max_train_examples: int | None = None  # cap on the train split (a seeded subset), None = all
    epochs: float = 3.0
    batch_size: int = 32  # global batch, split across devices
    eval_batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_every_steps: int = 0  # 0 = once per epoch
    checkpoint_every_steps: int = 200
    seed: int = 0
    bucketing: bool = True
    buckets: tuple[int, ...] = DEFAULT_BUCKETS  # padded lengths, tokens (every 8 up to 128)
    hidden_dropout: float | None = None  # None = the pretrained config's
    max_dev_examples: int | None = None  # cap on the dev split (a seeded subset), for quick runs only
    pooling: str = "mean"  # "mean" over tokens (all-MiniLM-L6-v2 was trained so) or "cls"
    # the held-out selection split carved from train before the cap (data/splits.py): never trained on, evaluated
    # every eval_every_steps; the dev set is evaluated once, after training, and only reported
    heldout_fraction: float = 0.1
    heldout_max_rows: int = 1000
    heldout_seed: int = 0
    data_seed: int = 0  # seed of the train cap (max_train_examples): every training seed sees the same rows
    # of matmuls and activations: "float32", or "bfloat16" on GPU/TPU (parameters, optimizer state and losses stay
    # float32: model/bert.py); on CPU bfloat16 is no faster
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", tuple(int(b) for b in self.buckets))
        _ = self.heldout  # validates the held-out fields
        from mgen_jax.data.glue import get_task
        from mgen_jax.errors import DataError

        try:
            get_task(self.task)
        except DataError as exc:
            raise ConfigError(f"finetune config field 'task': {exc}") from None
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"finetune config field '{name}' must be an integer >= 0, got {value!r}")
        positive = ("max_length", "batch_size", "eval_batch_size", "checkpoint_every_steps")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"finetune config field '{name}' must be a positive integer, got {value!r}")
        for name, limit in (("max_length", MAX_TOKENS), ("batch_size", MAX_BATCH), ("eval_batch_size", MAX_BATCH)):
            if getattr(self, name) > limit:
                raise ConfigError(f"finetune config field '{name}' must be <= {limit:,}, got {getattr(self, name):,}")
        for name in ("max_train_examples", "max_dev_examples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"finetune config field '{name}' must be a positive integer or null, got {value!r}")
        if not isinstance(self.eval_every_steps, int) or self.eval_every_steps < 0:
            raise ConfigError(f"finetune config field 'eval_every_steps' must be >= 0, got {self.eval_every_steps!r}")
        if not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise ConfigError(f"finetune config field 'epochs' must be > 0, got {self.epochs!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ConfigError(f"finetune config field 'learning_rate' must be in (0, 1), got {self.learning_rate!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"finetune config field 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio!r}")
        if self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise ConfigError("finetune config fields 'weight_decay' must be >= 0 and 'max_grad_norm' > 0")
        if self.pooling not in ("mean", "cls"):
            raise ConfigError(f"finetune config field 'pooling' must be 'mean' or 'cls', got {self.pooling!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"finetune config field 'compute_dtype' must be one of {list(COMPUTE_DTYPES)}, "
                              f"got {describe_value(self.compute_dtype)}")
        if self.hidden_dropout is not None and not 0 <= self.hidden_dropout < 1:
            raise ConfigError(f"finetune config field 'hidden_dropout' must be in [0, 1), got {self.hidden_dropout!r}")
        if self.buckets and not 1 <= min(self.buckets) <= max(self.buckets) <= MAX_TOKENS:
            raise ConfigError(f"finetune config field 'buckets' must lie in 1..{MAX_TOKENS:,} tokens, got "
                              f"{min(self.buckets)}..{max(self.buckets)}")
        if not self.buckets or list(self.buckets) != sorted(self.buckets) or self.buckets[-1] < self.max_length:
            raise ConfigError(
                f"finetune config field 'buckets' must be increasing and end at >= max_length ({self.max_length}), "
                f"got {describe_value(list(self.buckets))}"
            )

    @property
    def heldout(self) -> HeldoutSpec:
        return HeldoutSpec(self.heldout_fraction, self.heldout_max_rows, self.heldout_seed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["buckets"] = list(self.buckets)
        return d


FIELDS = tuple(f.name for f in dataclasses.fields(FinetuneConfig))


def config_from_dict(values: Mapping[str, Any], *, source: str = "<dict>") -> FinetuneConfig:
    return build_config(FinetuneConfig, dict(values), source=source, what="finetune config", required=("task",))


def load_config(path: str | Path, *, set_values: Mapping[str, Any] | None = None, **overrides: Any) -> FinetuneConfig:
    """Load a YAML config; ``overrides`` (non-None values) replace its fields, and so do ``set_values`` (the command
    line's, where null is a value: ``--set max_train_examples=null`` means every row)."""
    values = read_config_yaml(path, "finetune config")
    flags = dict(set_values or {}) | {k: v for k, v in overrides.items() if v is not None}
    values.update(flags)
    return build_config(FinetuneConfig, values, source=str(path), what="finetune config", required=("task",),
                        field_sources={k: f"from the command line: {k}" for k in flags})
