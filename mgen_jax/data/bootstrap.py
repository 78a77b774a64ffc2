"""Confidence intervals of a score difference between two models trained over several seeds: a paired bootstrap
that resamples the evaluation rows of every task (the same rows for both models) and the seeds of each model.

A "run" is one trained model's predictions on the rows: {task: {"pred": [N], "labels": [N]}} (data/predictions.py).
The score of a set of runs is the mean over tasks of the mean over runs of the task's main metric x 100; the
difference reported is reference - model (a drop in points: positive when the model scores lower).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mgen_jax.data.glue import get_task
from mgen_jax.data.metrics import main_score, prediction_metrics
from mgen_jax.errors import DataError

Run = Mapping[str, Mapping[str, np.ndarray]]


def _task_score(task: str, run: Run, rows: np.ndarray | None = None) -> float:
    spec = get_task(task)
    pred, labels = np.asarray(run[task]["pred"]), np.asarray(run[task]["labels"])
    if rows is not None:
        pred, labels = pred[rows], labels[rows]
    return main_score(spec, prediction_metrics(spec, pred, labels))


def mean_score(runs: Sequence[Run], tasks: Sequence[str], rows: Mapping[str, np.ndarray] | None = None) -> float:
    """Mean over tasks of the mean over ``runs`` of the main score (x 100), on ``rows[task]`` (default all)."""
    return float(np.mean([np.mean([_task_score(t, r, None if rows is None else rows[t]) for r in runs])
                          for t in tasks]))


def _check(model: Sequence[Run], reference: Sequence[Run], tasks: Sequence[str]) -> None:
    if not model or not reference:
        raise DataError("a paired bootstrap needs at least one run of each model")
    for task in tasks:
        labels = [np.asarray(r[task]["labels"]) for r in list(model) + list(reference) if task in r]
        if len(labels) != len(model) + len(reference):
            raise DataError(f"a run has no predictions for task {task}")
        if any(x.shape != labels[0].shape or not np.array_equal(x, labels[0]) for x in labels):
            raise DataError(f"{task}: the runs were evaluated on different rows (their labels differ)")


def paired_bootstrap_drop(model: Sequence[Run], reference: Sequence[Run], tasks: Sequence[str], *,
                          samples: int = 2000, level: float = 0.90, seed: int = 0) -> dict:
    """The drop reference - model in mean score points, with a ``level`` percentile interval: every bootstrap sample
    draws, per task, N rows with replacement (the same rows for both models: paired) and, per model, its runs
    (seeds) with replacement. Returns {"drop", "low", "high", "level", "samples", "resampled": "rows and seeds"}."""
    if not 0 < level < 1 or samples < 1:
        raise DataError(f"need 0 < level < 1 and samples >= 1, got {level}, {samples}")
    _check(model, reference, tasks)
    rng = np.random.default_rng(seed)
    sizes = {t: len(np.asarray(model[0][t]["labels"])) for t in tasks}
    drops = np.empty(samples)
    for i in range(samples):
        rows = {t: rng.integers(0, n, n) for t, n in sizes.items()}
        m = [model[j] for j in rng.integers(0, len(model), len(model))]
        r = [reference[j] for j in rng.integers(0, len(reference), len(reference))]
        drops[i] = mean_score(r, tasks, rows) - mean_score(m, tasks, rows)
    tail = (1 - level) / 2
    return {"drop": mean_score(reference, tasks) - mean_score(model, tasks),
            "low": float(np.quantile(drops, tail)), "high": float(np.quantile(drops, 1 - tail)), "level": level,
            "samples": samples, "resampled": "rows (paired) and seeds"}


def seed_bootstrap_drop(model_scores: Sequence[float], reference_scores: Sequence[float], *, samples: int = 2000,
                        level: float = 0.90, seed: int = 0) -> dict:
    """The same interval from per-seed mean scores alone (runs whose row predictions were not kept): seeds are
    resampled, rows are not, so the interval leaves out the evaluation set's sampling error."""
    m, r = np.asarray(model_scores, np.float64), np.asarray(reference_scores, np.float64)
    if not len(m) or not len(r):
        raise DataError("a seed bootstrap needs at least one score of each model")
    rng = np.random.default_rng(seed)
    drops = np.array([rng.choice(r, len(r)).mean() - rng.choice(m, len(m)).mean() for _ in range(samples)])
    tail = (1 - level) / 2
    return {"drop": float(r.mean() - m.mean()), "low": float(np.quantile(drops, tail)),
            "high": float(np.quantile(drops, 1 - tail)), "level": level, "samples": samples,
            "resampled": "seeds only (row predictions not kept for every run)"}
