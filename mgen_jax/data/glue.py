"""GLUE tasks: the task registry, TSV readers for the GLUE directory layout, and the documented splits.

Local data follows the standard GLUE tree (``<dir>/<TASK>/train.tsv``, ``dev.tsv``). The directory is, in order:
the ``glue_dir`` argument, the environment variable ``MGEN_GLUE_DIR``, or ``../shared/data/glue`` beside the
repository. Users who are online can read the Hugging Face ``nyu-mll/glue`` dataset instead (``source="hf"``).

Tasks without both splits here get a documented, seeded split, labelled in ``GlueSplit.split_note``:
QNLI and MNLI (dev only): the dev file is shuffled with seed 0 and its first ``PSEUDO_DEV_SIZE`` rows are the
"pseudo-dev" split, the rest "pseudo-train"; QQP (a 23k-row train subset, no dev): the same rule on that subset.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mgen_jax.errors import DataError
from mgen_jax.io import describe_value

PSEUDO_DEV_SIZE = 2000
SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True, slots=True)
class GlueTask:
    name: str
    hf_name: str
    text_columns: tuple[str | int, ...]  # header names, or column indices for header-less files
    label_column: str | int
    labels: tuple[str, ...] | None  # label strings in id order; None for regression
    metrics: tuple[str, ...]  # first one is the main metric
    files: tuple[tuple[str, str], ...]  # (split, file name) pairs that exist in GLUE's layout here
    has_header: bool = True
    split_from: str | None = None  # the file split that pseudo-train/pseudo-dev are drawn from
    score_range: tuple[float, float] = (0.0, 5.0)  # a regression task's scores (STS-B: 0 to 5)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


_BINARY = ("0", "1")
_ENTAIL = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("CoLA", "cola", (3,), 1, _BINARY, ("mcc",), (("train", "train.tsv"), ("dev", "dev.tsv")), False),
        GlueTask("SST-2", "sst2", ("sentence",), "label", _BINARY, ("accuracy",), (("train", "train.tsv"), ("dev", "dev.tsv"))),
        GlueTask("MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", _BINARY, ("f1", "accuracy"), (("train", "train.tsv"), ("dev", "dev.tsv"))),
        GlueTask("STS-B", "stsb", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), (("train", "train.tsv"), ("dev", "dev.tsv"))),
        GlueTask("QQP", "qqp", ("question1", "question2"), "is_duplicate", _BINARY, ("f1", "accuracy"), (("train_subset", "train_subset.tsv"),), split_from="train_subset"),
        GlueTask("MNLI", "mnli", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"), ("accuracy",), (("dev", "dev_matched.tsv"),), split_from="dev"),
        GlueTask("QNLI", "qnli", ("question", "sentence"), "label", _ENTAIL, ("accuracy",), (("dev", "dev.tsv"),), split_from="dev"),
        GlueTask("RTE", "rte", ("sentence1", "sentence2"), "label", _ENTAIL, ("accuracy",), (("train", "train.tsv"), ("dev", "dev.tsv"))),
        GlueTask("WNLI", "wnli", ("sentence1", "sentence2"), "label", _BINARY, ("accuracy",), (("train", "train.tsv"), ("dev", "dev.tsv"))),
    )
}
_ALIASES = {k.lower().replace("-", ""): k for k in TASKS}


def get_task(name: str) -> GlueTask:
    key = _ALIASES.get(name.lower().replace("-", "").replace("_", "")) if isinstance(name, str) else None
    if key is None:
        raise DataError(f"unknown GLUE task {describe_value(name)}; known tasks: {sorted(TASKS)}")
    return TASKS[key]


@dataclasses.dataclass(frozen=True)
class GlueSplit:
    """One split of one task: texts, labels and where they came from."""

    task: GlueTask
    split: str  # "train" or "dev"
    texts_a: tuple[str, ...]
    texts_b: tuple[str, ...] | None
    labels: np.ndarray  # int64 class ids, or float32 scores for STS-B
    source: str  # file or dataset the rows came from
    split_note: str  # "official" or how a pseudo split was drawn
    row_ids: np.ndarray | None = None  # each row's 0-based data-row number in ``source`` (None: 0..n-1)

    def __post_init__(self) -> None:
        if self.row_ids is None:
            object.__setattr__(self, "row_ids", np.arange(len(self.texts_a), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.texts_a)

    def take(self, indices: Sequence[int] | np.ndarray, note: str | None = None) -> "GlueSplit":
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            texts_a=tuple(self.texts_a[i] for i in idx),
            texts_b=None if self.texts_b is None else tuple(self.texts_b[i] for i in idx),
            labels=self.labels[idx],
            row_ids=self.row_ids[idx],
            split_note=self.split_note if note is None else f"{self.split_note}; {note}",
        )


def default_glue_dir() -> Path | None:
    env = os.environ.get("MGEN_GLUE_DIR")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "glue"
    return beside if beside.is_dir() else None


def resolve_glue_dir(glue_dir: str | Path | None = None) -> Path:
    path = Path(glue_dir) if glue_dir is not None else default_glue_dir()
    if path is None or not path.is_dir():
        raise DataError(
            f"GLUE data directory {str(path) if path else '(none)'} not found: pass glue_dir / --glue-dir, or set "
            "MGEN_GLUE_DIR to a folder in the GLUE TSV layout (<TASK>/train.tsv, dev.tsv); online, use source='hf'"
        )
    return path


def _parse_label(task: GlueTask, raw: str, path: Path, line: int) -> float | int:
    raw = raw.strip()
    if task.labels is None:
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{path}:{line}: score {describe_value(raw)} is not a number") from None
        if not np.isfinite(value):
            raise DataError(f"{path}:{line}: score {describe_value(raw)} is not finite")
        low, high = task.score_range
        if not low <= value <= high:
            raise DataError(f"{path}:{line}: score {describe_value(raw)} is outside {task.name}'s range "
                            f"[{low:g}, {high:g}]")
        return value
    if raw not in task.labels:
        raise DataError(f"{path}:{line}: label {describe_value(raw)} is not one of {list(task.labels)}")
    return task.labels.index(raw)


def read_tsv(task: GlueTask, path: Path) -> tuple[list[str], list[str] | None, np.ndarray]:
    """Read one GLUE TSV file; raise DataError naming the file and line of any malformed row."""
    if not path.is_file():
        raise DataError(f"GLUE file {path} not found (task {task.name})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (bad byte at offset {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    start = 0
    if task.has_header:
        if not lines:
            raise DataError(f"{path}: empty file, expected a header line")
        header = lines[0].rstrip("\r").split("\t")
        start = 1
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise DataError(f"{path}:1: header names column(s) {describe_value(repeated)} more than once (task "
                            f"{task.name}): which one holds the data is ambiguous")
        try:
            text_idx = [header.index(c) for c in task.text_columns]
            label_idx = header.index(task.label_column)
        except ValueError:
            missing = [c for c in list(task.text_columns) + [task.label_column] if c not in header]
            raise DataError(f"{path}:1: header {describe_value(header)} lacks column(s) {missing} (task {task.name})"
                            ) from None
        width = len(header)
    else:
        text_idx = [int(c) for c in task.text_columns]
        label_idx = int(task.label_column)
        width = None
    texts: list[list[str]] = [[] for _ in text_idx]
    labels = []
    for number in range(start, len(lines)):
        row = lines[number].rstrip("\r").split("\t")
        line = number + 1
        if width is None:
            width = len(row)
            if width <= max(text_idx + [label_idx]):
                raise DataError(f"{path}:{line}: expected at least {max(text_idx + [label_idx]) + 1} columns, found {width}")
        if len(row) != width:
            raise DataError(f"{path}:{line}: expected {width} tab-separated columns, found {len(row)}")
        for column, idx in zip(texts, text_idx):
            if not any(ch.isprintable() and not ch.isspace() for ch in row[idx]):  # blank or control characters
                name = task.text_columns[text_idx.index(idx)]
                raise DataError(f"{path}:{line}: blank text in column {name!r} (task {task.name})")
            column.append(row[idx])
        labels.append(_parse_label(task, row[label_idx], path, line))
    if not labels:
        raise DataError(f"{path}: no data rows{' after its header' if task.has_header else ''} (task {task.name})")
    dtype = np.float32 if task.is_regression else np.int64
    return texts[0], (texts[1] if len(texts) > 1 else None), np.asarray(labels, dtype=dtype)


def _pseudo_split_indices(num_rows: int, split: str) -> np.ndarray:
    order = np.random.default_rng(SPLIT_SEED).permutation(num_rows)
    dev_size = min(PSEUDO_DEV_SIZE, num_rows // 2)
    return np.sort(order[:dev_size] if split == "dev" else order[dev_size:])


def load_split(task_name: str, split: str, *, glue_dir: str | Path | None = None, source: str = "local") -> GlueSplit:
    """Load ``split`` ("train" or "dev") of a GLUE task, from local TSVs (default) or the HF hub (source="hf")."""
    task = get_task(task_name)
    if split not in ("train", "dev"):
        raise DataError(f"split must be 'train' or 'dev', got {split!r}")
    if source == "hf":
        return _load_hf(task, split)
    if source != "local":
        raise DataError(f"data source must be 'local' or 'hf', got {source!r}")
    root = resolve_glue_dir(glue_dir) / task.name
    files = dict(task.files)
    if task.split_from is None:
        path = root / files[split]
        a, b, y = read_tsv(task, path)
        return GlueSplit(task, split, tuple(a), None if b is None else tuple(b), y, str(path), "official")
    path = root / files[task.split_from]
    a, b, y = read_tsv(task, path)
    full = GlueSplit(task, split, tuple(a), None if b is None else tuple(b), y, str(path), "")
    idx = _pseudo_split_indices(len(full), split)
    dev_size = min(PSEUDO_DEV_SIZE, len(full) // 2)
    if dev_size == 0:
        raise DataError(f"{path}: {len(full)} data row(s), too few to split into pseudo-dev and pseudo-train "
                        f"(task {task.name})")
    short = "" if dev_size == PSEUDO_DEV_SIZE else (
        f" (the file has {len(full):,} rows, so pseudo-dev holds {dev_size:,} of the {PSEUDO_DEV_SIZE:,} rows it is "
        "meant to hold)")
    note = (
        f"pseudo-{split}: rows of {task.name}/{path.name} shuffled with seed {SPLIT_SEED}; "
        f"first {dev_size} = pseudo-dev, rest = pseudo-train{short}"
    )
    return dataclasses.replace(full.take(idx), split_note=note)


def _load_hf(task: GlueTask, split: str) -> GlueSplit:  # pragma: no cover - needs the network
    try:
        import datasets
    except ImportError as exc:
        raise DataError("source='hf' needs the `datasets` package (pip install datasets) and network access") from exc
    hf_split = {"train": "train", "dev": "validation_matched" if task.name == "MNLI" else "validation"}[split]
    ds = datasets.load_dataset("nyu-mll/glue", task.hf_name, split=hf_split)
    columns = {
        "CoLA": ("sentence", None), "SST-2": ("sentence", None), "MRPC": ("sentence1", "sentence2"),
        "STS-B": ("sentence1", "sentence2"), "QQP": ("question1", "question2"), "MNLI": ("premise", "hypothesis"),
        "QNLI": ("question", "sentence"), "RTE": ("sentence1", "sentence2"), "WNLI": ("sentence1", "sentence2"),
    }[task.name]
    a = tuple(ds[columns[0]])
    b = None if columns[1] is None else tuple(ds[columns[1]])
    y = np.asarray(ds["label"], dtype=np.float32 if task.is_regression else np.int64)
    return GlueSplit(task, split, a, b, y, f"hf:nyu-mll/glue/{task.hf_name}/{hf_split}", "official")
