"""Tokenization with the tokenizer of a pretrained BERT directory (tokenizer.json, via the `tokenizers` library).

The padding and truncation baked into a tokenizer.json are switched off: mgen_jax pads and truncates itself
(length bucketing), so token counts are the real ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from mgen_jax.errors import ConfigError
from mgen_jax.pretrained import load_tokenizer  # noqa: F401  (re-exported: the data side's tokenizer)


def _truncating(tokenizer: Tokenizer, max_length: int | None) -> Tokenizer:
    if max_length is None:
        return tokenizer
    if max_length < 4:
        raise ConfigError(f"max_length must be >= 4, got {max_length}")
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.enable_truncation(max_length=max_length, strategy="longest_first")
    return copy


def encode_pairs(
    tokenizer: Tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None = None, *, max_length: int | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """(token ids, token type ids) per example: [CLS] a [SEP] (b [SEP]), truncated longest-first to max_length."""
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise ConfigError(f"encode: {len(texts_a)} first texts but {len(texts_b)} second texts")
    inputs = list(texts_a) if texts_b is None else list(zip(texts_a, texts_b))
    encodings = _truncating(tokenizer, max_length).encode_batch(inputs)
    return [e.ids for e in encodings], [e.type_ids for e in encodings]


def encode(
    tokenizer: Tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None = None, *, max_length: int | None = None
) -> list[list[int]]:
    """Token ids per example ([CLS] a [SEP] (b [SEP])), truncated to max_length (longest-first for pairs)."""
    return encode_pairs(tokenizer, texts_a, texts_b, max_length=max_length)[0]


def token_lengths(
    tokenizer: Tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None = None, *, max_length: int | None = None
) -> np.ndarray:
    """[N] int64 number of tokens of each example, special tokens included."""
    return np.asarray([len(ids) for ids in encode(tokenizer, texts_a, texts_b, max_length=max_length)], dtype=np.int64)
