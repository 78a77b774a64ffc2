"""Every row's prediction of an evaluated model, kept beside its metrics (``predictions.json``), so that comparisons
between models can resample rows (data/bootstrap.py) long after the weights are gone.

Format: {"format": 1, "splits": {split: {task: {"pred": [N], "labels": [N]}}}}, with class ids for classification
tasks and scores (rounded to 1e-5) for regression tasks; rows in the split's file order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mgen_jax.errors import DataError
from mgen_jax.io import write_json_atomic

PREDICTIONS = "predictions.json"
FORMAT = 1


def _values(x: np.ndarray) -> list:
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        return [int(v) for v in x]
    if np.all(x == np.round(x)) and np.all(np.abs(x) < 2 ** 31):  # class ids held in a float array
        return [int(v) for v in x]
    return [round(float(v), 5) for v in x]


def write_predictions(path: str | Path, splits: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """Write {split: {task: {"pred", "labels"}}} (arrays of one length per task) atomically to ``path``."""
    out: dict[str, dict] = {}
    for split, tasks in splits.items():
        out[split] = {}
        for task, rows in tasks.items():
            pred, labels = np.asarray(rows["pred"]), np.asarray(rows["labels"])
            if pred.shape != labels.shape or pred.ndim != 1:
                raise DataError(f"{path}: {split}/{task}: predictions {pred.shape} and labels {labels.shape} differ")
            if not np.all(np.isfinite(pred.astype(np.float64))):
                raise DataError(f"{path}: {split}/{task}: a prediction is not finite")
            out[split][task] = {"pred": _values(pred), "labels": _values(labels)}
    write_json_atomic(Path(path), {"format": FORMAT, "splits": out})


def read_predictions(path: str | Path, split: str = "dev") -> dict[str, dict[str, np.ndarray]]:
    """{task: {"pred": [N], "labels": [N]}} of ``split`` from a predictions file; DataError naming the file if it is
    missing, malformed or lacks the split."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} not found (models evaluated before predictions were kept have none)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable predictions file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or split not in record.get("splits", {}):
        raise DataError(f"{path}: no '{split}' split in format {FORMAT}")
    out = {}
    for task, rows in record["splits"][split].items():
        pred, labels = np.asarray(rows.get("pred", [])), np.asarray(rows.get("labels", []))
        if pred.shape != labels.shape or pred.ndim != 1 or not len(pred):
            raise DataError(f"{path}: {split}/{task}: predictions and labels must be two lists of one length")
        out[task] = {"pred": pred, "labels": labels}
    return out
