"""Work folders that belong to one run: a lock against a second process, and a settings guard against a different
run, for every resumable command (fine-tuning here; the model generator's folders the same way).

- ``lock_work_folder(folder)`` takes an exclusive lock (``fcntl.flock`` on ``folder/.mgen.lock``, never waiting)
  that the process holds until it releases it or exits, even by SIGKILL: a second run on the same folder gets a
  ConfigError (exit 2) naming the folder and the process that holds it, before it touches anything.
- ``check_settings(folder, settings)`` records what the run computes (its config and data) in
  ``folder/settings.json`` on first use, and on every later use compares: a run with other settings gets a ConfigError
  naming the folder and the fields that differ (never a silent resume of someone else's checkpoint).
- ``claim_work_folder(folder, settings)`` does both, then deletes the temporary files that a killed atomic write of
  this folder left (``mgen_jax.io.clean_partial_files``: only the tool's own temporary names): what every run calls
  before it starts, and holds (a context manager) while it runs.

In a multi-process JAX run, process 0 holds the lock for all of them and tells the others whether it got it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from mgen_jax.errors import ConfigError
from mgen_jax.io import (LOCK_FILE, MAX_JSON_BYTES, clean_partial_files, describe_value, one_writer, parse_json,
                         write_json_atomic)

SETTINGS_FILE = "settings.json"


class WorkFolderLock:
    """An exclusive lock on a work folder, held by this process until ``release()`` (or the end of a ``with``)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder = folder
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "WorkFolderLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:  # a lock dropped without release() is released when collected
        try:
            self.release()
        except Exception:
            pass


def _lock_here(folder: Path, what: str) -> tuple[int | None, str | None]:
    """(file descriptor holding the lock, None) or (None, why it could not be taken)."""
    import fcntl

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return None, f"{what} {folder} is a file, not a folder"
    except OSError as exc:
        return None, f"{what} {folder}: cannot create it ({exc.strerror or exc})"
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        return None, f"{what} {folder}: cannot open its lock file {LOCK_FILE} ({exc.strerror or exc})"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            holder = ""
        os.close(fd)
        who = f" (process {holder})" if holder.isdigit() else ""
        return None, (f"{what} {folder} is in use by another run{who}: wait for it to end, or use another folder")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, None


def lock_work_folder(folder: str | Path, what: str = "work folder") -> WorkFolderLock:
    """Take the folder's lock (creating the folder) without waiting; ConfigError naming the folder if another
    process holds it. Use as a context manager, or call ``release()``."""
    folder = Path(folder)
    from mgen_jax.io import _multiprocess_jax

    jax = _multiprocess_jax()
    if jax is None:
        fd, why = _lock_here(folder, what)
        if why is not None:
            raise ConfigError(why)
        return WorkFolderLock(folder, fd)
    import numpy as np
    from jax.experimental import multihost_utils

    fd, why = _lock_here(folder, what) if jax.process_index() == 0 else (None, None)
    failed = multihost_utils.broadcast_one_to_all(np.asarray(why is not None))
    if bool(failed):
        raise ConfigError(why or f"{what} {folder}: process 0 could not lock it (see its message)")
    return WorkFolderLock(folder, fd)


def read_settings(folder: str | Path, file: str = SETTINGS_FILE) -> dict[str, Any] | None:
    """The settings recorded in ``folder/file``, or None if there are none; ConfigError naming the file if it is
    not a JSON object (a corrupt or foreign file is never taken for a run's settings)."""
    path = Path(folder) / file
    if not path.exists():
        return None
    from mgen_jax.io import read_text_file

    value = parse_json(read_text_file(path, "run settings", max_bytes=MAX_JSON_BYTES), f"run settings {path}")
    if not isinstance(value, dict):
        raise ConfigError(f"run settings {path}: expected a JSON object, found {type(value).__name__}; "
                          "move the folder away (it is not a run this version wrote)")
    return value


def settings_differences(saved: Mapping[str, Any], settings: Mapping[str, Any],
                         defaults: Mapping[str, Any] | None = None) -> list[str]:
    """The fields whose values differ, sorted; a field missing on one side counts as its ``defaults`` value (a
    field added after the run started, with the value that reproduces the old behaviour)."""
    defaults = defaults or {}
    canon = lambda v: json.loads(json.dumps(v))  # tuples and lists alike, as the file holds them
    return sorted(k for k in set(saved) | set(settings)
                  if canon(saved.get(k, defaults.get(k))) != canon(settings.get(k, defaults.get(k))))


def check_settings(folder: str | Path, settings: Mapping[str, Any], what: str = "work folder", *,
                   defaults: Mapping[str, Any] | None = None, file: str = SETTINGS_FILE) -> None:
    """Record ``settings`` (JSON-able) in ``folder/file`` if the folder has none; otherwise ConfigError naming the
    folder and the fields whose recorded values differ (``settings_differences``), with both values of the first few."""
    folder = Path(folder)
    saved = read_settings(folder, file)
    if saved is None:
        write_json_atomic(folder / file, dict(settings))
        return
    changed = settings_differences(saved, settings, defaults)
    if changed:
        d = defaults or {}
        shown = "; ".join(f"{k}: {describe_value(saved.get(k, d.get(k)), 40)} there, "
                          f"{describe_value(settings.get(k, d.get(k)), 40)} now" for k in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"{what} {folder} holds a run with other settings ({shown}{more}; recorded in its {file}): "
                          "use another folder, move that one away, or restore those values")


def claim_work_folder(folder: str | Path, settings: Mapping[str, Any] | None, what: str = "work folder", *,
                      defaults: Mapping[str, Any] | None = None, recursive_clean: bool = False) -> WorkFolderLock:
    """Lock ``folder`` (``lock_work_folder``), check or record its ``settings`` (``check_settings``; None: no
    guard), then delete the temporary files a killed write left in it (and in its subfolders if
    ``recursive_clean``). Returns the held lock: use it as a context manager around the run, or ``release()`` it.
    On an error the lock is released again."""
    lock = lock_work_folder(folder, what)
    try:
        if settings is not None:
            check_settings(folder, settings, what, defaults=defaults)
        clean_partial_files(folder, recursive=recursive_clean)
    except BaseException:
        lock.release()
        raise
    return lock


def state_file_error(path: Path, detail: str) -> ConfigError:
    """The error for a run's own state file that is unreadable or not what the run wrote (naming it)."""
    return ConfigError(f"state file {path}: {detail}; it is not what a run of this version wrote (move the folder "
                       "away, or delete the file to redo that part)")


def read_state_json(path: str | Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """A run's own JSON state file (result.json, wall_clock.json, summary.json, ...): a JSON object holding the
    ``required`` keys; ConfigError naming the file otherwise (corrupt, truncated, foreign)."""
    from mgen_jax.io import read_text_file

    path = Path(path)
    try:
        value = parse_json(read_text_file(path, "state file", max_bytes=MAX_JSON_BYTES), f"state file {path}")
    except ConfigError as exc:
        raise state_file_error(path, str(exc).removeprefix(f"state file {path}: ")) from None
    if not isinstance(value, dict):
        raise state_file_error(path, f"expected a JSON object, found {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise state_file_error(path, f"lacks {missing}")
    return value
