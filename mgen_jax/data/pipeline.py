"""Encoded splits and length-bucketed batches with static shapes.

Batches always hold ``batch_size`` rows (missing rows are padding with weight 0) and are padded to the smallest
bucket length that fits their longest example, so a run compiles one step per bucket. Training batches are drawn by
shuffling (seed, epoch), sorting pools of 64 batches by length, cutting them into batches and shuffling the batches.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mgen_jax.data.glue import GlueSplit, GlueTask
from mgen_jax.data.splits import rows_digest
from mgen_jax.data.tokenize import encode_pairs
from mgen_jax.errors import ConfigError

# Every 8 tokens up to 128: 13.8% padding over the glue5 fine-tuning budgets (25.6% with 16, 32, 48, 64, 96, 128),
# one compiled step per bucket (experiments/training_speed/bench_train.py).
DEFAULT_BUCKETS = tuple(range(8, 129, 8))
POOL_BATCHES = 64


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    task: GlueTask
    split: str
    ids: tuple[np.ndarray, ...]
    type_ids: tuple[np.ndarray, ...]
    labels: np.ndarray
    split_note: str
    row_ids: np.ndarray  # each row's data-row number in ``source``
    source: str

    @property
    def rows_digest(self) -> str:
        return rows_digest(self.row_ids, self.source)

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(x) for x in self.ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(data: GlueSplit, tokenizer, *, max_length: int) -> EncodedSplit:
    ids, types = encode_pairs(tokenizer, data.texts_a, data.texts_b, max_length=max_length)
    return EncodedSplit(
        data.task, data.split, tuple(np.asarray(x, np.int32) for x in ids), tuple(np.asarray(x, np.int32) for x in types),
        data.labels, data.split_note, np.asarray(data.row_ids), data.source,
    )


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if length <= b:
            return b
    raise ConfigError(f"sequence of {length} tokens exceeds the largest bucket {max(buckets)}")


def batch_plan(
    lengths: np.ndarray, batch_size: int, *, buckets: Sequence[int] = DEFAULT_BUCKETS, shuffle: bool,
    seed: int = 0, epoch: int = 0, bucketing: bool = True,
) -> list[tuple[np.ndarray, int]]:
    """List of (row indices, padded length). Deterministic for a given (seed, epoch)."""
    n = len(lengths)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n)
    else:
        order = np.arange(n)
    if bucketing:
        pools = [order[i: i + POOL_BATCHES * batch_size] for i in range(0, n, POOL_BATCHES * batch_size)]
        order = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in pools]) if pools else order
    batches = [order[i: i + batch_size] for i in range(0, n, batch_size)]
    if shuffle and bucketing:
        rng = np.random.default_rng([seed, epoch, 1])
        batches = [batches[i] for i in rng.permutation(len(batches))]
    top = max(buckets)
    return [(b, bucket_for(int(lengths[b].max()), buckets) if bucketing else top) for b in batches]


def collate(data: EncodedSplit, indices: np.ndarray, pad_length: int, batch_size: int) -> dict[str, np.ndarray]:
    """Arrays [batch_size, pad_length] (int32) + labels and weights [batch_size]; rows past len(indices) are padding."""
    ids = np.zeros((batch_size, pad_length), np.int32)
    types = np.zeros((batch_size, pad_length), np.int32)
    mask = np.zeros((batch_size, pad_length), np.int32)
    label_dtype = np.float32 if data.task.is_regression else np.int32
    labels = np.zeros((batch_size,), label_dtype)
    weights = np.zeros((batch_size,), np.float32)
    for row, i in enumerate(indices):
        length = len(data.ids[i])
        ids[row, :length] = data.ids[i]
        types[row, :length] = data.type_ids[i]
        mask[row, :length] = 1
        labels[row] = data.labels[i]
        weights[row] = 1.0
    mask[len(indices):, 0] = 1  # padding rows attend to one token, so their (ignored) outputs stay finite
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels, "weights": weights}


class BatchStream:
    """The training batches of one task as a function of the step: epoch e is ``batch_plan(seed, e)``, and step k
    is batch ``k mod steps_per_epoch`` of epoch ``k // steps_per_epoch``, for ``steps`` steps in all. Independent
    fine-tuning and the multi-task fine-tuning at equal budget read the same stream, so a task sees the same batches
    in both."""

    def __init__(self, lengths: np.ndarray, batch_size: int, *, steps: int, buckets: Sequence[int], seed: int,
                 bucketing: bool = True):
        if len(lengths) == 0:
            raise ConfigError("a training stream needs at least one row")
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.steps = int(steps)
        self.buckets = tuple(buckets)
        self.seed = seed
        self.bucketing = bucketing
        self.steps_per_epoch = -(-len(self.lengths) // self.batch_size)
        self._plans: dict[int, list[tuple[np.ndarray, int]]] = {}

    @classmethod
    def for_epochs(cls, lengths: np.ndarray, batch_size: int, epochs: float, **kwargs) -> "BatchStream":
        """``round(epochs x steps per epoch)`` steps (at least one), as independent fine-tuning counts them."""
        per_epoch = -(-len(lengths) // batch_size)
        return cls(lengths, batch_size, steps=max(1, int(round(epochs * per_epoch))), **kwargs)

    def plan(self, epoch: int) -> list[tuple[np.ndarray, int]]:
        if epoch not in self._plans:
            self._plans = {epoch: batch_plan(self.lengths, self.batch_size, buckets=self.buckets, shuffle=True,
                                             seed=self.seed, epoch=epoch, bucketing=self.bucketing)}
        return self._plans[epoch]

    def batch(self, step: int) -> tuple[np.ndarray, int]:
        """(row indices, padded length) of step ``step`` (0-based)."""
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside the stream's {self.steps} steps")
        return self.plan(step // self.steps_per_epoch)[step % self.steps_per_epoch]

    def examples(self, steps: int | None = None) -> int:
        """Rows the first ``steps`` steps (default: all) draw: the stream's training budget in examples."""
        steps = self.steps if steps is None else steps
        full, part = divmod(steps, self.steps_per_epoch)
        total = full * len(self.lengths)
        if part:
            total += sum(len(idx) for idx, _ in batch_plan(self.lengths, self.batch_size, buckets=self.buckets,
                                                           shuffle=True, seed=self.seed, epoch=full,
                                                           bucketing=self.bucketing)[:part])
        return int(total)

    def tokens(self, steps: int | None = None) -> tuple[int, int]:
        """(real tokens, padded tokens) of the first ``steps`` steps: what the padding fraction is measured on."""
        steps = self.steps if steps is None else steps
        real = padded = 0
        for k in range(steps):
            idx, length = self.batch(k)
            real += int(self.lengths[idx].sum())
            padded += self.batch_size * length
        return real, padded
