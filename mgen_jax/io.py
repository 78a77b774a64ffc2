"""Atomic output: a file is written beside its target and renamed into place, so a killed run never leaves a
half-written result. In a multi-process JAX run (jax.distributed, mgen_jax/train/parallel.py) process 0 is the one
writer: the others skip the write and wait for it at a barrier, so that every process then reads the same files."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

TEMP_MARK = ".partial-"  # in the name of every temporary file ``_atomic`` writes: ``clean_partial_files`` finds them


def prepare_output(path: str | Path, what: str = "output") -> Path:
    """Create ``path``'s folder; ConfigError naming the path if it cannot hold a file (a folder is in the way, a
    parent is a file, no permission)."""
    from mgen_jax.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot create its folder ({exc.strerror or exc})") from None
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"{what} {path}: its folder {path.parent} is not writable")
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _multiprocess_jax() -> Any:
    """The jax module when this is one process of several (jax.distributed initialised), else None. Looks in
    sys.modules: a program that never imported JAX is a single process, and this module needs no JAX."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return None
    return jax if jax.process_count() > 1 else None


def one_writer(label: str, write: Callable[[], T], otherwise: T) -> T:
    """``write()``, in a multi-process JAX run on process 0 only (the others return ``otherwise``) between two
    barriers named by ``label`` (the same in every process: a mismatch is an error): every process has read the files
    as they were before the write (the first barrier) and reads them as they are after it (the second), so that all
    of them take the same branches. The work folder must be one that every process sees."""
    jax = _multiprocess_jax()
    if jax is None:
        return write()
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(f"mgen_jax.io before {label}")
    try:
        result = write() if jax.process_index() == 0 else otherwise
    finally:  # a failed write still releases the others; they then fail on what is missing
        multihost_utils.sync_global_devices(f"mgen_jax.io after {label}")
    return result


def _atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    return one_writer(f"write {path}", lambda: _atomic_here(path, write), Path(path))


def _atomic_here(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary path)`` in the target's folder, flush it to disk, then rename it onto ``path`` (and
    flush the folder), so that a crash leaves either the old file or the new one. A temporary file left by a kill
    carries ``TEMP_MARK`` in its name; ``clean_partial_files`` removes it."""
    path = prepare_output(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}{TEMP_MARK}", suffix=path.suffix or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def clean_partial_files(directory: str | Path) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``directory`` and below (a checkpoint
    killed mid-write leaves hundreds of MB); returns what was removed. Runs call it before they start."""
    return one_writer(f"clean {directory}", lambda: _clean_partial_files_here(Path(directory)), [])


def _clean_partial_files_here(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    removed = []
    for tmp in directory.rglob(f".*{TEMP_MARK}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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
    def append() -> None:
        with open(prepare_output(path), "a") as handle:
            handle.write(json.dumps(record) + "\n")

    one_writer(f"append {path}", append, None)


def truncate_jsonl(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Rewrite a JSON-lines log keeping only the records ``keep`` accepts (and dropping a torn last line): a resumed
    run first drops what it logged after its checkpoint, so that no step is logged twice."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and keep(record):
            kept.append(line)
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file; ConfigError naming it if it is missing, a folder, unreadable or not UTF-8."""
    from mgen_jax.errors import ConfigError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} not found")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None


def read_json_file(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file holding an object; ConfigError naming it if it is missing, malformed or not an object."""
    from mgen_jax.errors import ConfigError

    text = read_text_file(path, what)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; ConfigError naming the file if it is missing or malformed."""
    import yaml

    from mgen_jax.errors import ConfigError

    path = Path(path)
    text = read_text_file(path, what)
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML ({exc})") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of field: value")
    return values


def _describe(tp: Any) -> str:
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(tp, str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (YAML's scalars, lists and mappings), or _Mismatch. A float accepts an integer and
    numeric text such as YAML's 1e-4 string, never a bool, NaN or infinity."""
    import math
    import types
    import typing

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return tuple(_coerce(v, args[0]) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return {_coerce(k, args[0]): _coerce(v, args[1]) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) if isinstance(value, float) else value
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    return value


def check_field_types(cls: Any, values: dict[str, Any], *, source: str, what: str,
                      field_sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Every value checked against its field's annotation (and converted: lists to tuples, numeric text to
    numbers); ConfigError naming the field, the expected type and where the value came from otherwise."""
    import typing

    from mgen_jax.errors import ConfigError

    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        try:
            out[name] = _coerce(value, hints[name])
        except _Mismatch:
            where = (field_sources or {}).get(name, f"in {source}")
            raise ConfigError(f"{what} field '{name}' must be {_describe(hints[name])}, got {value!r} "
                              f"({where})") from None
    return out


def build_config(cls: Any, values: dict[str, Any], *, source: str, what: str, required: tuple[str, ...],
                 field_sources: dict[str, str] | None = None) -> Any:
    """``cls(**values)`` for a frozen config dataclass: unknown and missing fields, values of the wrong type or not
    finite, and out-of-range values are reported by field name and source: ``source`` (a file), or for a field in
    ``field_sources`` its own (e.g. "from the command line")."""
    import dataclasses
    import re

    from mgen_jax.errors import ConfigError

    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        flagged = [k for k in unknown if k in (field_sources or {})]
        where = f"{what} (from the command line)" if flagged and len(flagged) == len(unknown) else f"{what} {source}"
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {fields}")
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"{what} {source}: missing field(s) {missing}")
    values = check_field_types(cls, values, source=source, what=what, field_sources=field_sources)
    try:
        return cls(**values)
    except ConfigError as exc:
        named = re.findall(r"'([a-z_]+)", str(exc))
        where = next(((field_sources or {})[n] for n in named if n in (field_sources or {})), f"in {source}")
        raise ConfigError(f"{exc} ({where})") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} {source}: {exc}") from None
