"""Atomic output: a file is written beside its target and renamed into place, so a killed run never leaves a
half-written result. In a multi-process JAX run (jax.distributed, mgen_jax/train/parallel.py) process 0 is the one
writer: the others skip the write and wait for it at a barrier, so that every process then reads the same files."""

from __future__ import annotations

import json
import math
import os
import re
import reprlib
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# Every temporary file ``_atomic`` writes is named ``.<target name>.mgen-partial-<8 random characters><suffix>`` (the
# suffix kept: matplotlib picks the format from it); ``clean_partial_files`` deletes only names of exactly that form.
TEMP_MARK = ".mgen-partial-"
_TEMP_NAME = re.compile(r"\..+" + re.escape(TEMP_MARK) + r"[a-z0-9_]{8}(\.[A-Za-z0-9]{1,8})?")
# the lock file of a work folder (mgen_jax.workfolder): a recursive clean never enters a subfolder that has one
LOCK_FILE = ".mgen.lock"


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


MAX_NAME_CHARS = 120
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f:*?\"<>|]")


def check_name(name: Any, what: str) -> str:
    """``name`` if it can be used as one file or folder name inside a folder: a non-empty string of at most
    MAX_NAME_CHARS characters, no path separator, control character or character Windows forbids, and not starting
    with '.' (so not '.', '..' or a hidden file); ConfigError naming ``what`` otherwise. Every name that becomes part
    of a path (a config's name, a file stem, a preset's name) goes through here, so that no output lands outside
    its folder."""
    from mgen_jax.errors import ConfigError

    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or name.startswith(".") or \
            name != name.strip() or _BAD_NAME_CHARS.search(name):
        raise ConfigError(f"{what} {describe_value(name)} is not a plain name: use 1 to {MAX_NAME_CHARS} characters, "
                          "no '/', '\\', control or :*?\"<>| characters, not starting with '.' or a space")
    return name


def path_inside(folder: str | Path, name: str, what: str) -> Path:
    """``folder / name`` for a name that passes ``check_name`` (the result cannot leave ``folder``)."""
    return Path(folder) / check_name(name, what)


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix or ".tmp")
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


def is_partial_file(path: str | Path) -> bool:
    """Whether ``path``'s name is one that ``_atomic`` gives its temporary files (and nothing else)."""
    return bool(_TEMP_NAME.fullmatch(Path(path).name))


def clean_partial_files(directory: str | Path, *, recursive: bool = True) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write left in ``directory`` (and, ``recursive``, in its
    subfolders; a checkpoint killed mid-write leaves hundreds of MB); returns what was removed. Only this module's own
    temporary names are touched (``is_partial_file``), never a user's file, never a link. Call it only while holding
    the folder's lock (``mgen_jax.workfolder.claim_work_folder``): another run's temporary file may be in flight. A
    subfolder with a lock file of its own (LOCK_FILE: another phase's or run's folder, e.g. ``teachers/<run>/`` below
    ``teachers/``) is not entered: its own run cleans it, holding its lock."""
    return one_writer(f"clean {directory}", lambda: _clean_partial_files_here(Path(directory), recursive), [])


def _clean_partial_files_here(directory: Path, recursive: bool) -> list[Path]:
    if not directory.is_dir() or directory.is_symlink():
        return []
    removed = []
    for folder, subfolders, files in os.walk(directory):  # links to folders are not followed
        subfolders[:] = [d for d in subfolders if not os.path.lexists(os.path.join(folder, d, LOCK_FILE))]
        for name in files:
            tmp = Path(folder) / name
            if is_partial_file(tmp) and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        if not recursive:
            break
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


MAX_TEXT_BYTES = 1 << 20  # a config, preset or other YAML file, 1 MiB
MAX_JSON_BYTES = 256 << 20  # a JSON record or state file, 256 MiB
MAX_ITEMS = 100_000  # elements of one YAML document, every alias expanded (a "billion laughs" stops here)
MAX_DEPTH = 100  # nesting of lists and mappings in a YAML or JSON document
MAX_INT_BITS = 53  # integers in configs and flags: |value| <= 2**53 (exact as a float too)


def describe_value(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, with the type and size of what was cut: safe for a value
    of any size (a YAML alias bomb, a 10 MB string, an integer of a million digits) in an error message."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 2, 4, 4, 4, 4
    short.maxstring, short.maxlong, short.maxother = limit, 40, limit
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length():,} bits"
    try:
        text = short.repr(value)
    except Exception:  # a value whose repr fails (or is itself unbounded)
        text = f"<{type(value).__name__}>"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 4:
        text += f" ({type(value).__name__} of {len(value):,} items)"
    elif isinstance(value, str) and len(value) > limit:
        text += f" ({len(value):,} characters)"
    return text if len(text) <= limit + 40 else text[: limit] + "..."


def check_bounded(value: Any, what: str, *, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` (a parsed YAML or JSON document) if it has at most ``max_items`` elements, counting every reference
    to a shared (aliased) list or mapping again, and at most ``max_depth`` levels of nesting; ConfigError naming
    ``what`` otherwise. Stops counting at the limit, so a document that would expand to 9**10 elements costs at most
    ``max_items`` steps."""
    from mgen_jax.errors import ConfigError

    count = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= max_depth:
                raise ConfigError(f"{what}: nested deeper than {max_depth} levels")
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            count += len(children)
            if count > max_items:
                raise ConfigError(f"{what}: more than {max_items:,} elements (with its aliases expanded); "
                                  "a config never needs that many")
            stack.extend((child, depth + 1) for child in children)
    return value


def check_finite(value: Any, what: str) -> Any:
    """``value`` (a result about to be written or printed: nested dicts, lists and numbers) if every number in it is
    finite; ConfigError naming the first field that is not (NaN or infinity would make invalid JSON and meaningless
    tables and plots). Results are small; the walk is not bounded."""
    from mgen_jax.errors import ConfigError

    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{key}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, float) or type(item).__module__ == "numpy":
            try:
                finite = math.isfinite(float(item))
            except (TypeError, ValueError):
                continue
            if not finite:
                raise ConfigError(f"{what} field '{key}' is {float(item)}: a hardware, model or workload value is "
                                  "too large for a finite result")
    return value


def _parse(parse: Callable[[], Any], what: str, kind: str) -> Any:
    from mgen_jax.errors import ConfigError

    try:
        return parse()
    except RecursionError:
        raise ConfigError(f"{what}: not valid {kind} (nested too deeply)") from None
    except ValueError as exc:  # JSON syntax (JSONDecodeError), an integer of more than 4,300 digits, ...
        raise ConfigError(f"{what}: not valid {kind} ({_one_line(str(exc), 200)})") from None


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _unique_key_loader():
    """yaml.SafeLoader that refuses a mapping naming one key twice (PyYAML would keep the last value silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    repeated = key in seen
                except TypeError:  # an unhashable key: SafeLoader reports it
                    break
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found the key {describe_value(key, 60)} twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _flow_depth(text: str) -> int:
    """The deepest nesting of [ ] and { } in ``text`` (brackets inside quotes counted too: an upper bound)."""
    depth = deepest = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load(text)`` (never a Python tag), bounded: ConfigError naming ``what`` for a syntax error, a key
    given twice in one mapping, a document nested deeper than MAX_DEPTH or larger than MAX_ITEMS elements (aliases
    expanded)."""
    import yaml

    from mgen_jax.errors import ConfigError

    if _flow_depth(text) > MAX_DEPTH or max((len(line) - len(line.lstrip(" ")) for line in text.splitlines()),
                                            default=0) > 8 * MAX_DEPTH:
        raise ConfigError(f"{what}: nested deeper than {MAX_DEPTH} levels")  # before PyYAML recurses into it
    try:
        value = _parse(lambda: yaml.load(text, Loader=_unique_key_loader()), what, "YAML")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({_one_line(str(exc), 300)})") from None
    return check_bounded(value, what)


def parse_json(text: str, what: str) -> Any:
    """``json.loads(text)``; ConfigError naming ``what`` if it is malformed or nested deeper than Python allows."""
    return _parse(lambda: json.loads(text), what, "JSON")


def not_a_regular_file(path: Path) -> str | None:
    """None for a regular file (or a link to one), else what ``path`` is instead, as words after its name: "not
    found", "is a folder, not a file", or "is not a regular file" (a FIFO or a device would block a read, or never
    end). OSError for a name the system cannot look up (too long, a loop of links)."""
    if not path.exists():
        return "not found"
    if path.is_dir():
        return "is a folder, not a file"
    return None if path.is_file() else "is not a regular file"


def read_text_file(path: str | Path, what: str, *, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A UTF-8 text file of at most ``max_bytes``; ConfigError naming it if it is missing, a folder, too large,
    unreadable or not UTF-8."""
    from mgen_jax.errors import ConfigError

    path = Path(path)
    try:
        unfit = not_a_regular_file(path)
    except OSError as exc:  # a name too long, a loop of links
        raise ConfigError(f"{what} {describe_value(str(path))}: cannot be read ({exc.strerror or exc})") from None
    if unfit:
        raise ConfigError(f"{what} {path} {unfit}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{what} {path}: {size:,} bytes, more than the {max_bytes:,} such a file may hold")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)  # a file that grows (or a pipe) is cut at the limit too
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {path}: more than the {max_bytes:,} bytes such a file may hold")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def read_json_file(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON file holding an object; ConfigError naming it if it is missing, malformed or not an object."""
    from mgen_jax.errors import ConfigError

    text = read_text_file(path, what, max_bytes=MAX_JSON_BYTES)
    value = parse_json(text, f"{what} {path}")
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; ConfigError naming the file if it is missing, malformed, too large or not a
    mapping."""
    from mgen_jax.errors import ConfigError

    path = Path(path)
    text = read_text_file(path, what)
    values = parse_yaml(text, f"{what} {path}")
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{what} {path}: expected a mapping of field: value")
    return values


MAX_EXTENDS = 32  # files a config may extend in a chain


def read_extends_chain(path: str | Path, what: str, *, resolve: Callable[[str, Path], Path],
                       check: Callable[[Path, dict[str, Any]], None] | None = None
                       ) -> list[tuple[Path, dict[str, Any]]]:
    """The YAML mappings of ``path`` and of every file its ``extends: <name or path>`` names in turn, the most basic
    first and each without its 'extends' key: the caller merges them in that order (a hardware preset field by
    field, a search config section by section). ``resolve(value, folder)`` is the file an 'extends' value names
    (``folder``: the extending file's); ``check(path, mapping)`` sees each file's own mapping before its base is
    read, so that a bad key is reported in the file that has it. ConfigError naming the file for a cycle, a chain
    longer than MAX_EXTENDS files, or an 'extends' that is not a non-empty string."""
    from mgen_jax.errors import ConfigError

    path, chain, seen = Path(path), [], []
    while True:
        if path.resolve() in seen:
            raise ConfigError(f"{what} {path}: 'extends' forms a cycle")
        if len(seen) >= MAX_EXTENDS:
            raise ConfigError(f"{what} {seen[0]}: its 'extends' chain is longer than {MAX_EXTENDS} files")
        seen.append(path.resolve())
        values = dict(read_config_yaml(path, what))
        extends = "extends" in values
        base = values.pop("extends", None)
        if check is not None:
            check(path, values)
        chain.append((path, values))
        if not extends:
            return chain[::-1]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{what} {path}: field 'extends' must name the file it starts from (a name or a YAML "
                              f"path), got {describe_value(base)}")
        try:
            path = Path(resolve(base, path.parent))
        except OSError as exc:  # a name too long for the file system
            raise ConfigError(f"{what} {path}: field 'extends' names no readable file ({exc.strerror or exc}): "
                              f"{describe_value(base)}") from None


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
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**MAX_INT_BITS:
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _Mismatch from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**MAX_INT_BITS:
            raise _Mismatch
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value) if isinstance(value, float) else value
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    return value


def _has_huge_int(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_huge_int(v) for v in value[:1000])
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**MAX_INT_BITS


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
            size = " (integers are limited to 2**53 in size)" if _has_huge_int(value) else ""
            raise ConfigError(f"{what} field '{name}' must be {_describe(hints[name])}{size}, got "
                              f"{describe_value(value)} ({where})") from None
    return out


def check_known_fields(cls: Any, values: dict[str, Any], where: str) -> None:
    """ConfigError naming ``where`` if ``values`` has keys that are not fields of the dataclass ``cls``."""
    import dataclasses

    from mgen_jax.errors import ConfigError

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown[:10]}; known: {sorted(known)}")


def build_config(cls: Any, values: dict[str, Any], *, source: str, what: str, required: tuple[str, ...],
                 field_sources: dict[str, str] | None = None) -> Any:
    """``cls(**values)`` for a frozen config dataclass: unknown and missing fields, values of the wrong type or not
    finite, and out-of-range values are reported by field name and source: ``source`` (a file), or for a field in
    ``field_sources`` its own (e.g. "from the command line")."""
    import dataclasses
    import re

    from mgen_jax.errors import ConfigError

    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(describe_value(k, 60) if not isinstance(k, str) or len(k) > 60 else k
                     for k in values if k not in fields)
    if unknown:
        flagged = [k for k in unknown if k in (field_sources or {})]
        where = f"{what} (from the command line)" if flagged and len(flagged) == len(unknown) else f"{what} {source}"
        raise ConfigError(f"{where}: unknown field(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''}; "
                          f"known: {fields}")
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"{what} {source}: missing field(s) {missing}")
    values = check_field_types(cls, values, source=source, what=what, field_sources=field_sources)
    try:
        return cls(**values)
    except ConfigError as exc:
        named = re.findall(r"'([a-z_]+)", str(exc)[:300])
        where = next(((field_sources or {})[n] for n in named if n in (field_sources or {})), f"in {source}")
        raise ConfigError(f"{cut_message(str(exc))} ({where})") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} {source}: {cut_message(str(exc))}") from None


MAX_MESSAGE_CHARS = 1000


def cut_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """An error message of at most about ``limit`` characters: a longer one (a validation that quoted a huge value
    whole) keeps its start and end and says how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]} ...[{len(text) - 2 * keep:,} characters cut]... {text[-keep:]}"
