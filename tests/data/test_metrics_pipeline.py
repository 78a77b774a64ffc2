import numpy as np
import pytest

from mgen_jax.data import get_task
from mgen_jax.data.metrics import f1_binary, matthews_corrcoef, pearson, spearman, task_metrics
from mgen_jax.data.pipeline import DEFAULT_BUCKETS, EncodedSplit, batch_plan, bucket_for, collate
from mgen_jax.errors import ConfigError


def test_metrics_by_hand():
    pred = np.array([1, 1, 0, 0, 1, 0])
    gold = np.array([1, 0, 0, 1, 1, 0])
    # tp 2, fp 1, fn 1, tn 2
    assert f1_binary(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert matthews_corrcoef(pred, gold) == pytest.approx((2 * 2 - 1 * 1) / np.sqrt(3 * 3 * 3 * 3))
    assert matthews_corrcoef(np.ones(6), gold) == 0.0
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6.5])) == pytest.approx(4.5 / np.sqrt(2 * 10.1666667), abs=1e-6)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 15, 40])) == pytest.approx(0.8)


def test_task_metrics_from_logits_and_scores():
    mrpc = task_metrics(get_task("MRPC"), np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0]]), np.array([1, 0, 0]))
    assert mrpc == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(2 / 3)}
    stsb = task_metrics(get_task("STS-B"), np.array([[1.0], [2.0], [3.5]]), np.array([0.5, 2.5, 3.0]))
    assert set(stsb) == {"pearson", "spearman"} and stsb["spearman"] == pytest.approx(1.0)


def _toy(lengths):
    ids = tuple(np.arange(1, n + 1, dtype=np.int32) for n in lengths)
    return EncodedSplit(get_task("SST-2"), "train", ids, tuple(np.zeros(n, np.int32) for n in lengths),
                        np.arange(len(lengths)) % 2, "official", np.arange(len(lengths)), "toy/train.tsv")


def test_batch_plan_covers_each_example_once_and_is_seeded():
    lengths = np.random.default_rng(0).integers(3, 120, 1000)
    plan = batch_plan(lengths, 32, shuffle=True, seed=1, epoch=2)
    seen = np.concatenate([idx for idx, _ in plan])
    assert sorted(seen) == list(range(1000))
    assert all(lengths[idx].max() <= pad and pad in DEFAULT_BUCKETS for idx, pad in plan)
    again = batch_plan(lengths, 32, shuffle=True, seed=1, epoch=2)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plan, again))
    other = batch_plan(lengths, 32, shuffle=True, seed=1, epoch=3)
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(plan, other))
    padded = sum(pad * len(idx) for idx, pad in plan)
    unbucketed = sum(pad * len(idx) for idx, pad in batch_plan(lengths, 32, shuffle=True, bucketing=False))
    assert padded < 0.75 * unbucketed


def test_collate_pads_rows_and_tokens():
    data = _toy([3, 5, 2])
    batch = collate(data, np.array([0, 1]), 8, 4)
    assert batch["input_ids"].shape == (4, 8)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert batch["weights"].tolist() == [1, 1, 0, 0]
    with pytest.raises(ConfigError, match="largest bucket"):
        bucket_for(300, (16, 128))
