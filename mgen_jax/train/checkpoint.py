"""Checkpoints: flax.serialization msgpack of a state pytree, written atomically (temp file + rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from flax import serialization

from mgen_jax.errors import MgenError
from mgen_jax.io import write_bytes_atomic


def save_checkpoint(path: str | Path, state: Any) -> Path:
    """Write ``state`` (any pytree of arrays and numbers) to ``path`` atomically."""
    host_state = jax.device_get(state)
    return write_bytes_atomic(path, serialization.msgpack_serialize(serialization.to_state_dict(host_state)))


def restore_checkpoint(path: str | Path, target: Any) -> Any:
    """Read a checkpoint into the structure of ``target``; raises MgenError naming the file if it does not fit."""
    path = Path(path)
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        return serialization.from_state_dict(target, raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise MgenError(f"checkpoint {path} does not match this run's model/optimizer ({exc})") from exc
