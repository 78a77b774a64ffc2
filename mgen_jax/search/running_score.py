"""A GLUE task's main metric from running sums, in JAX (the gradient search's ``objective: score``).

The constrained search keeps, for every task and branch point, a moving average of what it scores the branch point
by. With ``objective: loss`` that is the batch loss. With ``objective: score`` it is the vector of sums below, over
the rows the logits read at each step (weighted by the batch's row weights, so that padding rows count nothing); the
task's metric is read from the averaged sums. Every metric here is a ratio of sums of equal degree, so scaling all
sums alike (the moving average's start-up bias) leaves it unchanged.

Sums (``STATS``): rows n; correct predictions; the binary confusion counts tp, fp, fn, tn (positive class: label
id 1, as data/metrics.py); and sx, sy, sxx, syy, sxy of prediction x and label y less a center c (regression; the
middle of the task's score range: Pearson's r does not change under a shift, and float32 sums of centred values
keep the variance of a prediction that barely varies). The metrics read from
them are those of data/metrics.py on the same rows: accuracy, F1 of class 1, Matthews correlation (0 when a margin
of the confusion matrix is empty) and Pearson's r (0 when either variance is 0). Spearman's rank correlation has no
running form: ``spearman`` reads Pearson's r (STS-B's main metric is Pearson).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STATS = ("n", "correct", "tp", "fp", "fn", "tn", "sx", "sy", "sxx", "syy", "sxy")
NUM_STATS = len(STATS)
METRICS = ("accuracy", "f1", "mcc", "pearson", "spearman")
_I = {name: i for i, name in enumerate(STATS)}


def batch_stats(outputs: jax.Array, labels: jax.Array, weights: jax.Array, num_labels, regression,
                center=0.0) -> jax.Array:
    """[NUM_STATS] the sums of one batch: ``outputs`` [m, C] (logits, padded past ``num_labels``; column 0 is the
    prediction of a regression task), ``labels`` [m], ``weights`` [m] (0 for padding); a regression task's
    prediction and label are summed less ``center``. ``num_labels``, ``regression`` and ``center`` may be traced
    (the task index of a jitted step)."""
    w = weights.astype(jnp.float32)
    masked = jnp.where(jnp.arange(outputs.shape[-1])[None, :] < num_labels, outputs, -jnp.inf)
    pred = jnp.argmax(masked, axis=-1)
    y_class = labels.astype(jnp.int32)
    correct = (pred == y_class).astype(jnp.float32)
    p1, y1 = (pred == 1).astype(jnp.float32), (y_class == 1).astype(jnp.float32)
    x, y = outputs[:, 0].astype(jnp.float32) - center, labels.astype(jnp.float32) - center
    classes = jnp.stack([w, w * correct, w * p1 * y1, w * p1 * (1 - y1), w * (1 - p1) * y1,
                         w * (1 - p1) * (1 - y1)], axis=-1).sum(0)
    moments = jnp.stack([w * x, w * y, w * x * x, w * y * y, w * x * y], axis=-1).sum(0)
    zeros5, zeros4 = jnp.zeros(5, jnp.float32), jnp.zeros(4, jnp.float32)
    reg = jnp.concatenate([jnp.stack([w.sum(), 0.0]), zeros4, moments])
    cls = jnp.concatenate([classes, zeros5])
    return jnp.where(regression, reg, cls)


def score_from_stats(stats: jax.Array, metric: str) -> jax.Array:
    """[...] the metric (a fraction: accuracy 0.75, not 75) from sums [..., NUM_STATS]; ``metric`` one of
    METRICS (static)."""
    s = lambda name: stats[..., _I[name]]
    safe = lambda num, den: jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
    if metric == "accuracy":
        return safe(s("correct"), s("n"))
    tp, fp, fn, tn = s("tp"), s("fp"), s("fn"), s("tn")
    if metric == "f1":
        return safe(2 * tp, 2 * tp + fp + fn)
    if metric == "mcc":
        den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        return safe(tp * tn - fp * fn, jnp.sqrt(jnp.maximum(den, 0.0)))
    if metric in ("pearson", "spearman"):
        n = s("n")
        cov = s("sxy") * n - s("sx") * s("sy")
        var_x = jnp.maximum(s("sxx") * n - s("sx") ** 2, 0.0)
        var_y = jnp.maximum(s("syy") * n - s("sy") ** 2, 0.0)
        # relative floor: a constant prediction's variance is float rounding, not signal
        tiny = 1e-7 * jnp.maximum(s("sxx") * n, 1e-30)
        var_x = jnp.where(var_x > tiny, var_x, 0.0)
        return jnp.clip(safe(cov, jnp.sqrt(var_x * var_y)), -1.0, 1.0)
    raise ValueError(f"no running form of metric {metric!r}; known: {METRICS}")
