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
    if not path.is_file():
        raise MgenError(f"checkpoint {path} not found")
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
    except Exception as exc:  # msgpack's own error types for a truncated or foreign file
        raise MgenError(f"checkpoint {path} is not a readable checkpoint ({type(exc).__name__}: {str(exc)[:160]}): "
                        "move it away to start that run again") from None
    if target is not None:
        _check_shapes(path, target, raw)
    try:
        return serialization.from_state_dict(target, raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise MgenError(f"checkpoint {path} does not match this run's model/optimizer ({str(exc)[:200]})") from None


def _check_shapes(path: Path, target: Any, raw: Any) -> None:
    """MgenError naming the first array whose shape in the checkpoint differs from the run's (flax restores arrays
    of any shape, and the first step would then fail deep inside XLA)."""
    import numpy as np

    want = serialization.to_state_dict(target)
    stack = [((), want, raw)]
    while stack:
        keys, a, b = stack.pop()
        if isinstance(a, dict):
            if not isinstance(b, dict):
                raise MgenError(f"checkpoint {path} does not match this run's model/optimizer (at "
                                f"{'/'.join(map(str, keys)) or 'the top'}: not a mapping)")
            stack.extend((keys + (k,), v, b[k]) for k, v in a.items() if k in b)
        elif hasattr(a, "shape") and np.shape(b) != tuple(a.shape):
            raise MgenError(f"checkpoint {path} does not match this run's model/optimizer ({'/'.join(map(str, keys))}"
                            f" has shape {list(np.shape(b))}, the run's {list(a.shape)})")
