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
from mgen_jax.data.tokenize import encode_pairs
from mgen_jax.errors import ConfigError

DEFAULT_BUCKETS = (16, 32, 48, 64, 96, 128)
POOL_BATCHES = 64


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    task: GlueTask
    split: str
    ids: tuple[np.ndarray, ...]
    type_ids: tuple[np.ndarray, ...]
    labels: np.ndarray
    split_note: str

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(x) for x in self.ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)


def encode_split(data: GlueSplit, tokenizer, *, max_length: int) -> EncodedSplit:
    ids, types = encode_pairs(tokenizer, data.texts_a, data.texts_b, max_length=max_length)
    return EncodedSplit(
        data.task, data.split, tuple(np.asarray(x, np.int32) for x in ids), tuple(np.asarray(x, np.int32) for x in types),
        data.labels, data.split_note,
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
