"""GLUE loaders: every task file parses to the manifest's row counts; malformed rows name file and line."""

import numpy as np
import pytest

from mgen_jax.data import get_task, load_split, load_tokenizer, token_lengths
from mgen_jax.data.glue import PSEUDO_DEV_SIZE, TASKS, read_tsv
from mgen_jax.errors import DataError

# Row counts from ../shared/data/glue/MANIFEST.md.
FILE_ROWS = {
    ("CoLA", "train.tsv"): 8551, ("CoLA", "dev.tsv"): 1043,
    ("SST-2", "train.tsv"): 67349, ("SST-2", "dev.tsv"): 872,
    ("MRPC", "train.tsv"): 3668, ("MRPC", "dev.tsv"): 408,
    ("STS-B", "train.tsv"): 5749, ("STS-B", "dev.tsv"): 1500,
    ("RTE", "train.tsv"): 2490, ("RTE", "dev.tsv"): 277,
    ("WNLI", "train.tsv"): 635, ("WNLI", "dev.tsv"): 71,
    ("QNLI", "dev.tsv"): 5463, ("MNLI", "dev_matched.tsv"): 9815, ("QQP", "train_subset.tsv"): 23497,
}
LABEL_COUNTS = {("SST-2", "dev.tsv"): {1: 444, 0: 428}, ("CoLA", "dev.tsv"): {1: 721, 0: 322},
                ("MRPC", "train.tsv"): {1: 2474, 0: 1194}}


@pytest.mark.parametrize("task, name", sorted(FILE_ROWS))
def test_every_file_parses_to_manifest_rows(glue_dir, task, name):
    a, b, y = read_tsv(get_task(task), glue_dir / task / name)
    assert len(a) == len(y) == FILE_ROWS[(task, name)]
    assert (b is None) == (not get_task(task).is_pair)
    assert all(isinstance(s, str) and s for s in a[:50])
    if (task, name) in LABEL_COUNTS:
        assert dict(zip(*np.unique(y, return_counts=True))) == LABEL_COUNTS[(task, name)]
    if task == "STS-B":
        assert 0.0 <= y.min() and y.max() <= 5.0


def test_pseudo_splits_are_disjoint_seeded_and_labelled(glue_dir):
    for task in ("QNLI", "MNLI", "QQP"):
        dev, train = load_split(task, "dev", glue_dir=glue_dir), load_split(task, "train", glue_dir=glue_dir)
        assert len(dev) == PSEUDO_DEV_SIZE
        assert "pseudo-dev" in dev.split_note and "seed 0" in dev.split_note
        assert not set(zip(dev.texts_a, dev.texts_b)) & set(zip(train.texts_a, train.texts_b))
        assert load_split(task, "dev", glue_dir=glue_dir).texts_a == dev.texts_a
    assert load_split("SST-2", "dev", glue_dir=glue_dir).split_note == "official"


def test_mnli_labels_and_task_names(glue_dir):
    dev = load_split("mnli", "dev", glue_dir=glue_dir)
    assert set(np.unique(dev.labels)) == {0, 1, 2}
    assert get_task("sst2").name == "SST-2" and get_task("STS_B").num_labels == 1
    with pytest.raises(DataError, match="unknown GLUE task"):
        get_task("SQuAD")


def _copy_task(glue_dir, tmp_path, task, name, edit):
    (tmp_path / task).mkdir()
    lines = (glue_dir / task / name).read_text(encoding="utf-8-sig").split("\n")
    lines = edit(lines)
    (tmp_path / task / name).write_text("\n".join(lines), encoding="utf-8")
    return tmp_path


def test_malformed_rows_name_file_and_line(glue_dir, tmp_path):
    def drop_column(lines):
        lines[5] = lines[5].rsplit("\t", 1)[0]
        return lines

    root = _copy_task(glue_dir, tmp_path, "RTE", "dev.tsv", drop_column)
    with pytest.raises(DataError, match=r"RTE/dev.tsv:6: expected 4 tab-separated columns, found 3"):
        load_split("RTE", "dev", glue_dir=root)


def test_bad_label_and_bad_score(glue_dir, tmp_path):
    def bad_label(lines):
        lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
        return lines

    root = _copy_task(glue_dir, tmp_path, "SST-2", "dev.tsv", bad_label)
    with pytest.raises(DataError, match=r"SST-2/dev.tsv:4: label 'maybe'"):
        load_split("SST-2", "dev", glue_dir=root)
    root2 = tmp_path / "b"
    root2.mkdir()
    _copy_task(glue_dir, root2, "STS-B", "dev.tsv", lambda ls: ls[:2] + [ls[2].rsplit("\t", 1)[0] + "\tfive"] + ls[3:])
    with pytest.raises(DataError, match=r"STS-B/dev.tsv:3: score 'five'"):
        load_split("STS-B", "dev", glue_dir=root2)


def test_missing_files_and_dirs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_split("CoLA", "dev", glue_dir=tmp_path)
    with pytest.raises(DataError, match="MGEN_GLUE_DIR"):
        load_split("CoLA", "dev", glue_dir=tmp_path / "nowhere")


def test_token_lengths_count_special_tokens(glue_dir):
    tok = load_tokenizer("minilm-l6")
    lengths = token_lengths(tok, ["hello world"], None)
    assert list(lengths) == [4]  # [CLS] hello world [SEP]
    pair = token_lengths(tok, ["hello world"], ["good bye"])
    assert list(pair) == [7]
    long = token_lengths(tok, ["word " * 300], None, max_length=128)
    assert list(long) == [128]
    assert len(TASKS) == 9
