"""Traces of real token lengths: the GLUE dev sets, tokenized with a pretrained model's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mgen_jax.data import get_task, load_split, load_tokenizer, token_lengths
from mgen_jax.errors import ConfigError
from mgen_jax.workload.trace import Trace

DEFAULT_MAX_LENGTH = 128


def glue_lengths(
    task_name: str, *, split: str = "dev", tokenizer: str | Path = "minilm-l6", glue_dir: str | Path | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """[N] token counts of a task's split ([CLS] and [SEP] included, truncated at max_length)."""
    data = load_split(task_name, split, glue_dir=glue_dir)
    return token_lengths(load_tokenizer(tokenizer), data.texts_a, data.texts_b, max_length=max_length)


def glue_trace(
    length_tasks: Sequence[str], *, task_names: Sequence[str] | None = None, split: str = "dev",
    tokenizer: str | Path = "minilm-l6", glue_dir: str | Path | None = None, max_length: int = DEFAULT_MAX_LENGTH,
) -> Trace:
    """One request per example of the ``length_tasks`` dev sets, each running every task of ``task_names``
    (default: the GLUE tasks themselves): DESIGN.md's default workload."""
    sources = tuple(get_task(t).name for t in length_tasks)
    names = tuple(task_names) if task_names is not None else sources
    if len(set(sources)) != len(sources):
        raise ConfigError(f"the length tasks name a task twice: {list(sources)}")
    tok = load_tokenizer(tokenizer)
    lengths, notes = [], []
    for name in sources:
        data = load_split(name, split, glue_dir=glue_dir)
        lengths.append(token_lengths(tok, data.texts_a, data.texts_b, max_length=max_length))
        notes.append(f"{name} {len(data):,}" + (" (a pseudo split smaller than documented)"
                                                 if "meant to hold" in data.split_note else ""))
    tokens = np.concatenate(lengths)
    return Trace(
        tokens, np.ones((tokens.size, len(names)), dtype=bool), names,
        f"GLUE {split} lengths of {', '.join(sources)} (max_length {max_length}; {tokens.size:,} requests: "
        f"{', '.join(notes)}), every request runs every task",
    )
