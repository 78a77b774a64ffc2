"""Multi-task data: every task's train and dev split, and mixed batches [T, B, L].

Step k's batch is a pure function of (seed, k): a common length quantile q is drawn, and every task draws its B
examples from the ``length_window`` examples nearest to q in its own length order. Tasks' short examples thus meet
in one batch and long ones in another, which keeps the padding of a mixed batch low; a resumed run sees the same
batches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mgen_jax.data.glue import get_task, load_split
from mgen_jax.data.pipeline import EncodedSplit, bucket_for, collate, encode_split


class MultiTaskData:
    def __init__(self, tasks: Sequence[str], tokenizer, *, max_length: int, buckets: Sequence[int],
                 per_task_batch: int, length_window: int, seed: int, glue_dir=None, max_dev_per_task=None):
        self.tasks = [get_task(t) for t in tasks]
        self.buckets = tuple(buckets)
        self.batch = per_task_batch
        self.window = max(length_window, per_task_batch)
        self.seed = seed
        self.train: list[EncodedSplit] = []
        self.dev: list[EncodedSplit] = []
        for task in self.tasks:
            self.train.append(encode_split(load_split(task.name, "train", glue_dir=glue_dir), tokenizer,
                                           max_length=max_length))
            dev = load_split(task.name, "dev", glue_dir=glue_dir)
            if max_dev_per_task is not None and max_dev_per_task < len(dev):
                idx = np.sort(np.random.default_rng([seed, 5]).permutation(len(dev))[:max_dev_per_task])
                dev = dev.take(idx, note=f"dev capped at {max_dev_per_task} rows (seeded subset)")
            self.dev.append(encode_split(dev, tokenizer, max_length=max_length))
        self._order = [np.argsort(d.lengths, kind="stable") for d in self.train]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def mixed_batch(self, step: int, stream: int = 0) -> dict[str, np.ndarray]:
        """Arrays [T, B, L] (+ labels [T, B] as float32, weights [T, B]) for step ``step`` of data stream
        ``stream`` (warm-up, search and fine-tuning draw from different streams)."""
        rng = np.random.default_rng([self.seed, 17, stream, step])
        q = rng.random()
        rows = []
        for t, data in enumerate(self.train):
            n = len(data)
            window = min(self.window, n)
            start = int(round(q * (n - window)))
            pick = rng.choice(window, size=min(self.batch, window), replace=False)
            rows.append(self._order[t][start + pick])
        length = bucket_for(max(int(d.lengths[idx].max()) for d, idx in zip(self.train, rows)), self.buckets)
        parts = [collate(d, idx, length, self.batch) for d, idx in zip(self.train, rows)]
        batch = {k: np.stack([p[k] for p in parts]) for k in ("input_ids", "token_type_ids", "attention_mask", "weights")}
        batch["labels"] = np.stack([p["labels"].astype(np.float32) for p in parts])
        return batch

    def dev_batches(self, t: int, batch_size: int):
        """(indices, batch [B, L]) over task t's dev set, sorted by length."""
        data = self.dev[t]
        order = np.argsort(data.lengths, kind="stable")
        for i in range(0, len(data), batch_size):
            idx = order[i: i + batch_size]
            yield idx, collate(data, idx, bucket_for(int(data.lengths[idx].max()), self.buckets), batch_size)
