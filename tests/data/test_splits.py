"""The held-out split and the train cap (data/splits.py), and the training stream (data/pipeline.py BatchStream)."""

import numpy as np
import pytest

from mgen_jax.data.glue import load_split
from mgen_jax.data.pipeline import BatchStream
from mgen_jax.data.splits import HeldoutSpec, rows_digest, split_train
from mgen_jax.errors import ConfigError


def test_heldout_is_disjoint_seeded_and_capped(glue_dir):
    train = load_split("CoLA", "train", glue_dir=glue_dir)  # 8,551 rows
    rest, held = split_train(train, HeldoutSpec())
    assert len(held) == 855 and len(rest) == len(train) - 855
    assert not set(held.row_ids.tolist()) & set(rest.row_ids.tolist())
    assert sorted(held.row_ids.tolist() + rest.row_ids.tolist()) == list(range(len(train)))
    assert held.split == "heldout" and "excluded from training" in held.split_note
    assert held.texts_a[0] == train.texts_a[held.row_ids[0]] and held.labels[3] == train.labels[held.row_ids[3]]
    again, held_again = split_train(train, HeldoutSpec())
    np.testing.assert_array_equal(held.row_ids, held_again.row_ids)
    _, other = split_train(train, HeldoutSpec(seed=1))
    assert set(other.row_ids.tolist()) != set(held.row_ids.tolist())
    # at most max_rows; the cap draws from the rest only, by the data seed, never from the held-out rows
    sst2 = load_split("SST-2", "train", glue_dir=glue_dir)
    capped, held2 = split_train(sst2, HeldoutSpec(), max_train_examples=20000, data_seed=0)
    assert len(held2) == 1000 and len(capped) == 20000
    assert not set(capped.row_ids.tolist()) & set(held2.row_ids.tolist())
    capped1, held3 = split_train(sst2, HeldoutSpec(), max_train_examples=20000, data_seed=1)
    np.testing.assert_array_equal(held2.row_ids, held3.row_ids)
    assert rows_digest(capped.row_ids, capped.source) != rows_digest(capped1.row_ids, capped1.source)
    none_rest, none_held = split_train(train, HeldoutSpec(fraction=0.0))
    assert len(none_held) == 0 and len(none_rest) == len(train)


def test_digest_ignores_where_the_data_lies():
    ids = np.arange(5)
    assert rows_digest(ids, "/a/b/CoLA/train.tsv") == rows_digest(ids, "/elsewhere/CoLA/train.tsv")
    assert rows_digest(ids, "/a/CoLA/train.tsv") != rows_digest(ids, "/a/RTE/train.tsv")
    assert rows_digest(ids, "x/CoLA/train.tsv") != rows_digest(np.arange(1, 6), "x/CoLA/train.tsv")


@pytest.mark.parametrize("field, value", [("fraction", 1.0), ("fraction", -0.1), ("fraction", float("nan")),
                                          ("max_rows", 0), ("seed", -1), ("fraction", True)])
def test_heldout_fields_are_checked(field, value):
    with pytest.raises(ConfigError, match="heldout"):
        HeldoutSpec(**{field: value})


def test_batch_stream_counts_its_budget():
    lengths = np.random.default_rng(0).integers(3, 100, 103)
    stream = BatchStream.for_epochs(lengths, 32, 2.5, buckets=(32, 64, 128), seed=4)
    assert stream.steps_per_epoch == 4 and stream.steps == 10
    drawn = [stream.batch(k)[0] for k in range(stream.steps)]
    assert stream.examples() == sum(len(i) for i in drawn)
    assert sorted(np.concatenate(drawn[:4]).tolist()) == list(range(103))  # each epoch is a permutation
    assert 2 * 103 + 39 <= stream.examples() <= 2 * 103 + 64  # and 2 of the third epoch's 4 batches (32, 32, 32, 7)
    real, padded = stream.tokens()
    assert real == sum(int(lengths[i].sum()) for i in drawn) and padded >= real
    with pytest.raises(IndexError):
        stream.batch(10)
