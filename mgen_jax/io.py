"""Atomic output: a file is written beside its target and renamed into place, so a killed run never leaves a
half-written result."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary path)`` in the target's folder, then rename the result onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure_atomic(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the file suffix)."""
    return _atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one JSON line (metrics logs; a torn last line is skipped by readers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_config_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; ConfigError naming the file if it is missing or malformed."""
    import yaml

    from mgen_jax.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of field: value")
    return values


def build_config(cls: Any, values: dict[str, Any], *, source: str, what: str, required: tuple[str, ...]) -> Any:
    """``cls(**values)`` for a frozen config dataclass, with unknown/missing fields and bad values reported by name
    and file."""
    import dataclasses

    from mgen_jax.errors import ConfigError

    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(k for k in values if k not in fields)
    if unknown:
        raise ConfigError(f"{what} {source}: unknown field(s) {unknown}; known: {fields}")
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"{what} {source}: missing field(s) {missing}")
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {source})") from None
    except TypeError as exc:
        raise ConfigError(f"{what} {source}: {exc}") from None
