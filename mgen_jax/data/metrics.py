"""The official GLUE metric of each task (DESIGN.md section 8): accuracy, F1, Matthews correlation, Pearson and
Spearman correlation. Inputs are numpy arrays; predictions are class ids or regression scores."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mgen_jax.data.glue import GlueTask


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def f1_binary(pred: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    tp = float(np.sum((pred == 1) & (labels == 1)))
    fp = float(np.sum((pred == 1) & (labels == 0)))
    fn = float(np.sum((pred == 0) & (labels == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(pred: np.ndarray, labels: np.ndarray) -> float:
    """Binary Matthews correlation coefficient; 0 when a row or column of the confusion matrix is empty."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    tp = float(np.sum((pred == 1) & (labels == 1)))
    tn = float(np.sum((pred == 0) & (labels == 0)))
    fp = float(np.sum((pred == 1) & (labels == 0)))
    fn = float(np.sum((pred == 0) & (labels == 1)))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else float((tp * tn - fp * fn) / denominator)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(stats.pearsonr(x, y)[0])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y)[0])


_METRICS = {"accuracy": accuracy, "f1": f1_binary, "mcc": matthews_corrcoef, "pearson": pearson, "spearman": spearman}


def predictions(task: GlueTask, outputs: np.ndarray) -> np.ndarray:
    """[N] predictions from model outputs ([N, C] logits, or [N] / [N, 1] scores for regression): class ids, or
    scores for a regression task."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.reshape(-1) if task.is_regression else np.argmax(outputs, axis=-1)


def prediction_metrics(task: GlueTask, pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All metrics of ``task`` from its [N] predictions (``predictions``)."""
    return {name: _METRICS[name](pred, labels) for name in task.metrics}


def task_metrics(task: GlueTask, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All metrics of ``task`` from model outputs ([N, C] logits, or [N] / [N, 1] scores for regression)."""
    return prediction_metrics(task, predictions(task, outputs), labels)


def main_score(task: GlueTask, metrics: dict[str, float]) -> float:
    """The task's main metric x 100 (the score averaged across tasks)."""
    return 100.0 * metrics[task.main_metric]
