"""Multi-task data: every task's training rows, held-out split and dev split (data/splits.py), and mixed batches
[T, B, L] of training rows.

Step k's batch is a pure function of (seed, k): a common length quantile q is drawn, and every task draws its B
examples from the ``length_window`` examples nearest to q in its own length order. Tasks' short examples thus meet
in one batch and long ones in another, which keeps the padding of a mixed batch low; a resumed run sees the same
batches.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mgen_jax.data.glue import get_task, load_split
from mgen_jax.data.pipeline import EncodedSplit, bucket_for, collate, encode_split
from mgen_jax.data.splits import HeldoutSpec, train_and_heldout
from mgen_jax.errors import ConfigError

# The mixed-batch streams (``mixed_batch(step, stream)``): each phase draws its own batches; without a held-out split
# the loss profile reads a stream that no phase trains on.
WARMUP_STREAM, SEARCH_STREAM, FINETUNE_STREAM = 0, 1, 2
PROFILE_STREAM = 7


class MultiTaskData:
    """``train[t]``: task t's training rows (its train split minus the held-out split, capped at
    ``max_train[task]`` by a subset drawn with ``data_seed``); ``heldout[t]``: its held-out split (None without
    one); ``dev[t]``: its dev split, reported only."""

    def __init__(self, tasks: Sequence[str], tokenizer, *, max_length: int, buckets: Sequence[int],
                 per_task_batch: int, length_window: int, seed: int, glue_dir=None, max_dev_per_task=None,
                 heldout: HeldoutSpec | None = None, max_train: Mapping[str, int | None] | None = None,
                 data_seed: int = 0):
        self.tasks = [get_task(t) for t in tasks]
        self.buckets = tuple(buckets)
        self.batch = per_task_batch
        self.window = max(length_window, per_task_batch)
        self.seed = seed
        heldout = heldout or HeldoutSpec(fraction=0.0)
        max_train = dict(max_train or {})
        self.train: list[EncodedSplit] = []
        self.heldout: list[EncodedSplit | None] = []
        self.dev: list[EncodedSplit] = []
        for task in self.tasks:
            train, held = train_and_heldout(task.name, heldout, max_train_examples=max_train.get(task.name),
                                            data_seed=data_seed, glue_dir=glue_dir)
            self.train.append(encode_split(train, tokenizer, max_length=max_length))
            self.heldout.append(encode_split(held, tokenizer, max_length=max_length) if len(held) else None)
            dev = load_split(task.name, "dev", glue_dir=glue_dir)
            if max_dev_per_task is not None and max_dev_per_task < len(dev):
                idx = np.sort(np.random.default_rng([seed, 5]).permutation(len(dev))[:max_dev_per_task])
                dev = dev.take(idx, note=f"dev capped at {max_dev_per_task} rows (seeded subset)")
            self.dev.append(encode_split(dev, tokenizer, max_length=max_length))
        self._order = [np.argsort(d.lengths, kind="stable") for d in self.train]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def mixed_rows(self, step: int, stream: int = 0) -> list[np.ndarray]:
        """Every task's row indices (into ``train[t]``) of step ``step`` of data stream ``stream``."""
        rng = np.random.default_rng([self.seed, 17, stream, step])
        q = rng.random()
        rows = []
        for t, data in enumerate(self.train):
            n = len(data)
            window = min(self.window, n)
            start = int(round(q * (n - window)))
            pick = rng.choice(window, size=min(self.batch, window), replace=False)
            rows.append(self._order[t][start + pick])
        return rows

    def mixed_batch(self, step: int, stream: int = 0) -> dict[str, np.ndarray]:
        """Arrays [T, B, L] (+ labels [T, B] as float32, weights [T, B]) for step ``step`` of data stream
        ``stream`` (warm-up, search and fine-tuning draw from different streams): training rows only."""
        rows = self.mixed_rows(step, stream)
        length = bucket_for(max(int(d.lengths[idx].max()) for d, idx in zip(self.train, rows)), self.buckets)
        parts = [collate(d, idx, length, self.batch) for d, idx in zip(self.train, rows)]
        batch = {k: np.stack([p[k] for p in parts]) for k in ("input_ids", "token_type_ids", "attention_mask", "weights")}
        batch["labels"] = np.stack([p["labels"].astype(np.float32) for p in parts])
        return batch

    def split(self, name: str) -> list[EncodedSplit]:
        """Every task's rows of split ``name``: "train", "heldout" or "dev"."""
        if name == "heldout" and any(h is None for h in self.heldout):
            raise ConfigError("this run has no held-out split (heldout_fraction: 0)")
        try:
            return {"train": self.train, "heldout": self.heldout, "dev": self.dev}[name]
        except KeyError:
            raise ConfigError(f"split must be 'train', 'heldout' or 'dev', got {name!r}") from None

    @property
    def has_heldout(self) -> bool:
        return all(h is not None for h in self.heldout)

    def eval_batches(self, t: int, batch_size: int, split: str = "dev"):
        """(indices, batch [B, L]) over task t's rows of ``split`` ("dev" or "heldout"), sorted by length."""
        data = self.split(split)[t]
        order = np.argsort(data.lengths, kind="stable")
        for i in range(0, len(data), batch_size):
            idx = order[i: i + batch_size]
            yield idx, collate(data, idx, bucket_for(int(data.lengths[idx].max()), self.buckets), batch_size)
