"""search/running_score.py: a task's main metric from running sums equals data/metrics.py on the same rows."""

import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.data import metrics as glue_metrics
from mgen_jax.search.running_score import METRICS, NUM_STATS, batch_stats, score_from_stats

REFERENCE = {"accuracy": glue_metrics.accuracy, "f1": glue_metrics.f1_binary, "mcc": glue_metrics.matthews_corrcoef,
             "pearson": glue_metrics.pearson}


def _classification(rng, rows, classes=2, pad_to=4, bias=0.0):
    logits = rng.standard_normal((rows, pad_to)).astype(np.float32)
    logits[:, classes:] = 50.0  # padding columns past the task's labels must never win
    logits[:, 1] += bias
    labels = rng.integers(0, classes, rows)
    return logits, labels


def _stats(outputs, labels, weights, num_labels, regression, center=0.0):
    return batch_stats(jnp.asarray(outputs), jnp.asarray(labels), jnp.asarray(weights, jnp.float32), num_labels,
                       regression, center)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "mcc"])
def test_classification_metrics_match_the_glue_metrics_on_the_real_rows_only(metric):
    rng = np.random.default_rng(0)
    logits, labels = _classification(rng, 40)
    weights = np.ones(40)
    weights[30:] = 0.0  # padding rows: their predictions and labels must count nothing
    labels[30:] = 1
    got = float(score_from_stats(_stats(logits, labels, weights, 2, False), metric))
    want = REFERENCE[metric](np.argmax(logits[:30, :2], axis=1), labels[:30])
    assert got == pytest.approx(want, abs=1e-6)


def test_three_class_accuracy():
    rng = np.random.default_rng(1)
    logits, labels = _classification(rng, 50, classes=3)
    got = float(score_from_stats(_stats(logits, labels, np.ones(50), 3, False), "accuracy"))
    assert got == pytest.approx(glue_metrics.accuracy(np.argmax(logits[:, :3], axis=1), labels), abs=1e-6)


def test_pearson_of_a_regression_task_and_spearman_reads_pearson():
    rng = np.random.default_rng(2)
    labels = rng.uniform(0, 5, 60).astype(np.float32)
    outputs = np.zeros((60, 4), np.float32)
    outputs[:, 0] = labels + rng.normal(0, 1.0, 60)
    outputs[:, 1:] = 99.0  # only column 0 is the prediction
    stats = _stats(outputs, labels, np.ones(60), 1, True)
    want = glue_metrics.pearson(outputs[:, 0], labels)
    assert float(score_from_stats(stats, "pearson")) == pytest.approx(want, abs=1e-4)
    assert float(score_from_stats(stats, "spearman")) == float(score_from_stats(stats, "pearson"))
    assert 0.5 < want < 0.95  # the planted correlation is neither trivial nor perfect


def test_pearson_of_a_prediction_that_barely_varies_far_from_zero():
    """Sums of values less the task's center keep a small spread's variance in float32 (an STS-B head early in
    training answers about 2.7 for every pair); r stays within [-1, 1]."""
    rng = np.random.default_rng(4)
    labels = rng.uniform(0, 5, 64)
    pred = 2.7 + 0.003 * (0.5 * (labels - 2.5) / 1.44 + rng.normal(0, 0.87, 64))
    outputs = pred.astype(np.float32)[:, None]
    want = glue_metrics.pearson(outputs[:, 0].astype(np.float64), labels.astype(np.float32).astype(np.float64))
    stats = sum(_stats(outputs[i:i + 8], labels[i:i + 8].astype(np.float32), np.ones(8), 1, True, 2.5)
                for i in range(0, 64, 8))
    got = float(score_from_stats(stats, "pearson"))
    assert got == pytest.approx(want, abs=0.01) and 0.2 < want < 0.8


def test_sums_add_over_batches_and_a_common_scale_leaves_the_metric():
    """The moving average holds (a scaled) sum over batches: the metric of the summed sums is the metric of the
    rows of both batches together, whatever the common scale."""
    rng = np.random.default_rng(3)
    (a, ya), (b, yb) = _classification(rng, 24, bias=0.5), _classification(rng, 24, bias=-0.5)
    both = _stats(np.concatenate([a, b]), np.concatenate([ya, yb]), np.ones(48), 2, False)
    summed = _stats(a, ya, np.ones(24), 2, False) + _stats(b, yb, np.ones(24), 2, False)
    np.testing.assert_allclose(np.asarray(summed), np.asarray(both), rtol=1e-6)
    for metric in ("accuracy", "f1", "mcc"):
        assert float(score_from_stats(0.03 * summed, metric)) == pytest.approx(
            float(score_from_stats(both, metric)), abs=1e-5)


def test_degenerate_rows_score_zero_as_the_glue_metrics_do():
    labels = np.array([0, 1, 1, 0, 1])
    majority = np.zeros((5, 2), np.float32)
    majority[:, 1] = 1.0  # every row predicted 1: MCC has an empty margin
    stats = _stats(majority, labels, np.ones(5), 2, False)
    assert float(score_from_stats(stats, "mcc")) == 0.0 == glue_metrics.matthews_corrcoef(np.ones(5), labels)
    constant = np.full((5, 1), 2.5, np.float32)  # a constant regression prediction: no correlation
    assert float(score_from_stats(_stats(constant, labels.astype(np.float32), np.ones(5), 1, True), "pearson")) == 0.0
    assert np.all(np.asarray(score_from_stats(jnp.zeros((3, NUM_STATS)), "mcc")) == 0.0)  # a task not yet seen


def test_every_metric_is_known_and_an_unknown_one_is_refused():
    assert set(REFERENCE) | {"spearman"} == set(METRICS)
    with pytest.raises(ValueError, match="matthews"):
        score_from_stats(jnp.zeros(NUM_STATS), "matthews")
