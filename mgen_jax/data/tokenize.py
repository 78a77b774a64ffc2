"""Tokenization with the tokenizer of a pretrained BERT directory (tokenizer.json, via the `tokenizers` library).

The padding and truncation baked into a tokenizer.json are switched off: mgen_jax pads and truncates itself
(length bucketing), so token counts are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from mgen_jax.errors import ConfigError
from mgen_jax.pretrained import resolve_pretrained_dir


def load_tokenizer(name_or_path: str | Path = "minilm-l6") -> Tokenizer:
    """The fast WordPiece tokenizer of a pretrained model, with padding and truncation off."""
    directory = resolve_pretrained_dir(name_or_path)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"pretrained model directory {directory} has no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode(
    tokenizer: Tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None = None, *, max_length: int | None = None
) -> list[list[int]]:
    """Token ids ([CLS] a [SEP] (b [SEP])) per example, truncated to max_length (longest-first for pairs)."""
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise ConfigError(f"encode: {len(texts_a)} first texts but {len(texts_b)} second texts")
    if max_length is not None:
        if max_length < 4:
            raise ConfigError(f"max_length must be >= 4, got {max_length}")
        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
    inputs = list(texts_a) if texts_b is None else list(zip(texts_a, texts_b))
    return [e.ids for e in tokenizer.encode_batch(inputs)]


def token_lengths(
    tokenizer: Tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None = None, *, max_length: int | None = None
) -> np.ndarray:
    """[N] int64 number of tokens of each example, special tokens included."""
    return np.asarray([len(ids) for ids in encode(tokenizer, texts_a, texts_b, max_length=max_length)], dtype=np.int64)
