"""The rows a run trains on and the held-out selection split (DESIGN.md section 11).

Every run on a task - independent fine-tuning, the generator's warm-up, and the fine-tuning of every discrete model -
reads the task's train split through ``train_and_heldout``:

1. the **held-out split** is carved from the train split first: ``min(max_rows, round(fraction x n))`` rows drawn
   with ``HeldoutSpec.seed`` (default: 10%, at most 1,000 rows, seed 0). It never reaches a training batch; every
   choice (task weights, loss profiles, budgets, thresholds) is made on it, and the official dev set is only
   reported;
2. the remaining rows are **capped** (``max_train_examples``) by a seeded subset drawn with ``data_seed``, which is
   separate from the training seed, so that every seed and every model of a comparison trains on the same rows.

``rows_digest`` fingerprints the row numbers a split holds, so that a multi-task run can check that it trains on
exactly the rows of the independent run it is compared with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

import numpy as np

from mgen_jax.data.glue import GlueSplit, load_split
from mgen_jax.errors import ConfigError

HELDOUT_STREAM = 23  # rng stream of the held-out draw
CAP_STREAM = 7  # rng stream of the train cap


@dataclasses.dataclass(frozen=True)
class HeldoutSpec:
    """How the held-out split is carved from a train split: ``fraction`` of the rows (0 = none), at most
    ``max_rows``, drawn with ``seed``."""

    fraction: float = 0.1
    max_rows: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) or not (
                math.isfinite(self.fraction) and 0 <= self.fraction < 1):
            raise ConfigError(f"held-out field 'heldout_fraction' must be in [0, 1), got {self.fraction!r}")
        if isinstance(self.max_rows, bool) or not isinstance(self.max_rows, int) or self.max_rows < 1:
            raise ConfigError(f"held-out field 'heldout_max_rows' must be a positive integer, got {self.max_rows!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"held-out field 'heldout_seed' must be an integer >= 0, got {self.seed!r}")

    def size(self, num_rows: int) -> int:
        """Rows held out of a train split of ``num_rows`` rows (at least one when the fraction is positive)."""
        if self.fraction == 0 or num_rows < 2:
            return 0
        return int(min(self.max_rows, max(1, round(self.fraction * num_rows)), num_rows - 1))

    def positions(self, num_rows: int) -> np.ndarray:
        """Sorted positions (0..num_rows-1) of the held-out rows."""
        order = np.random.default_rng([self.seed, HELDOUT_STREAM]).permutation(num_rows)
        return np.sort(order[: self.size(num_rows)])

    def to_dict(self) -> dict[str, Any]:
        return {"heldout_fraction": self.fraction, "heldout_max_rows": self.max_rows, "heldout_seed": self.seed}


def split_train(train: GlueSplit, heldout: HeldoutSpec, *, max_train_examples: int | None = None,
                data_seed: int = 0) -> tuple[GlueSplit, GlueSplit]:
    """(training rows, held-out rows) of a loaded train split: the held-out rows first, then the cap (a seeded subset
    of the rest). The two never share a row."""
    n = len(train)
    held = heldout.positions(n)
    rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
    held_note = (f"held-out split: {len(held)} of {n} train rows ({heldout.fraction:g}, at most {heldout.max_rows}; "
                 f"seed {heldout.seed}), excluded from training")
    train_note = f"train minus its {len(held)}-row held-out split (seed {heldout.seed})" if len(held) else None
    if max_train_examples is not None and max_train_examples < len(rest):
        pick = np.random.default_rng([data_seed, CAP_STREAM]).permutation(len(rest))[:max_train_examples]
        rest = np.sort(rest[pick])
        cap = f"capped at {max_train_examples} rows (seeded subset, data seed {data_seed})"
        train_note = cap if train_note is None else f"{train_note}, {cap}"
    training = train.take(rest, note=train_note)
    held_rows = dataclasses.replace(train.take(held, note=held_note), split="heldout")
    return training, held_rows


def train_and_heldout(task: str, heldout: HeldoutSpec, *, max_train_examples: int | None = None, data_seed: int = 0,
                      glue_dir=None) -> tuple[GlueSplit, GlueSplit]:
    """Load a task's train split and return (training rows, held-out rows); see ``split_train``."""
    return split_train(load_split(task, "train", glue_dir=glue_dir), heldout, max_train_examples=max_train_examples,
                       data_seed=data_seed)


def rows_digest(row_ids: np.ndarray, source: str) -> str:
    """A short fingerprint of the source rows a split holds: sha256 of its row numbers and of the source's last two
    path parts (``<TASK>/train.tsv``, so that the digest does not depend on where the data lies)."""
    h = hashlib.sha256(np.asarray(row_ids, dtype=np.int64).tobytes())
    h.update("/".join(str(source).replace("\\", "/").split("/")[-2:]).encode())
    return h.hexdigest()[:16]
