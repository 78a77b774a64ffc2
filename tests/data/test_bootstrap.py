"""The paired bootstrap of a score drop (data/bootstrap.py): a planted difference is found, none gives an interval
around 0, pairing narrows the interval, and mismatched rows are refused."""

import numpy as np
import pytest

from mgen_jax.data.bootstrap import mean_score, paired_bootstrap_drop, seed_bootstrap_drop
from mgen_jax.errors import DataError

TASKS = ["SST-2", "STS-B"]


def _runs(labels, seeds, flip, rng, noise=0.3):
    """``seeds`` runs: SST-2 predictions equal to the labels except a share ``flip`` of rows; STS-B scores = labels
    plus noise that grows with ``flip``."""
    out = []
    for _ in range(seeds):
        sst = labels["SST-2"].copy()
        wrong = rng.random(len(sst)) < flip
        sst[wrong] = 1 - sst[wrong]
        sts = labels["STS-B"] + rng.normal(0, noise + 3 * flip, len(labels["STS-B"]))
        out.append({"SST-2": {"pred": sst, "labels": labels["SST-2"]},
                    "STS-B": {"pred": sts, "labels": labels["STS-B"]}})
    return out


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return {"SST-2": rng.integers(0, 2, 600), "STS-B": rng.uniform(0, 5, 600)}


def test_a_planted_drop_is_found(labels):
    rng = np.random.default_rng(1)
    reference = _runs(labels, 3, 0.10, rng)
    model = _runs(labels, 3, 0.20, rng)
    ci = paired_bootstrap_drop(model, reference, TASKS, samples=300)
    assert ci["drop"] == pytest.approx(mean_score(reference, TASKS) - mean_score(model, TASKS))
    assert ci["drop"] > 5 and 0 < ci["low"] < ci["drop"] < ci["high"]


def test_no_difference_gives_an_interval_around_zero(labels):
    rng = np.random.default_rng(2)
    reference = _runs(labels, 3, 0.15, rng)
    model = _runs(labels, 3, 0.15, rng)
    ci = paired_bootstrap_drop(model, reference, TASKS, samples=300)
    assert ci["low"] < 0 < ci["high"] and abs(ci["drop"]) < 2
    # the same model against itself: the paired interval is exactly zero
    same = paired_bootstrap_drop(reference, reference, TASKS, samples=50)
    assert same["drop"] == 0.0 and same["low"] <= 0 <= same["high"]


def test_pairing_rows_narrows_the_interval(labels):
    """Two models that differ on few rows: resampling rows for each independently would see the rows' sampling
    noise; paired, only the difference remains, so the interval is narrower than the unpaired one."""
    rng = np.random.default_rng(3)
    reference = _runs(labels, 1, 0.15, rng)
    model = [{t: dict(r[t]) for t in TASKS} for r in reference]
    pred = model[0]["SST-2"]["pred"].copy()
    pred[:30] = 1 - pred[:30]  # 30 rows changed
    model[0]["SST-2"]["pred"] = pred
    ci = paired_bootstrap_drop(model, reference, TASKS, samples=300)
    rng = np.random.default_rng(4)
    unpaired = []
    for _ in range(300):
        a, b = rng.integers(0, 600, 600), rng.integers(0, 600, 600)
        unpaired.append(mean_score(reference, TASKS, {t: a for t in TASKS}) - mean_score(model, TASKS, {t: b for t in TASKS}))
    assert ci["high"] - ci["low"] < 0.5 * (np.quantile(unpaired, 0.95) - np.quantile(unpaired, 0.05))


def test_runs_on_other_rows_are_refused(labels):
    rng = np.random.default_rng(5)
    reference = _runs(labels, 1, 0.1, rng)
    other = {k: v.copy() for k, v in labels.items()}
    other["SST-2"][0] = 1 - other["SST-2"][0]
    with pytest.raises(DataError, match="different rows"):
        paired_bootstrap_drop(_runs(other, 1, 0.1, rng), reference, TASKS, samples=5)


def test_seed_bootstrap():
    ci = seed_bootstrap_drop([68.0, 68.5, 69.0], [69.0, 69.5, 70.0], samples=500)
    assert ci["drop"] == pytest.approx(1.0) and ci["low"] <= 1.0 <= ci["high"] and "seeds only" in ci["resampled"]
    flat = seed_bootstrap_drop([69.0, 69.0], [69.0, 69.0], samples=50)
    assert flat["low"] == flat["high"] == 0.0
