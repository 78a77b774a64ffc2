"""How one ``mgen`` command runs: its standard streams, and its errors turned into one line and an exit status."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from mgen_jax.errors import MgenError, TrainingError

EXIT_BAD_INPUT = 2  # a config field, flag, file or data row is wrong: the message names it (argparse uses 2 too)
EXIT_FAILED = 1  # the run itself failed (a NaN loss, a full disk): its last checkpoint is kept
EXIT_INTERRUPTED = 130  # Ctrl-C: the run resumes from its last checkpoint when started again


def stdout_for_results_only() -> None:
    """In a multi-process run, native libraries write to file descriptor 1 (gloo announces every connection there,
    "[Gloo] Rank 0 is connected to 1 peer ranks"), which would break ``--json`` readers: point descriptor 1 at stderr
    and keep Python's ``sys.stdout`` on the original stream, so stdout carries the results only. A single-process
    run is left as it is."""
    if not (os.environ.get("MGEN_COORDINATOR") or os.environ.get("MGEN_DISTRIBUTED")):
        return  # (without importing JAX)
    from mgen_jax.train.parallel import distributed_settings  # ConfigError (exit 2) for malformed variables

    if distributed_settings() is None:
        return
    sys.stdout.flush()
    results = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(results, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors)


def closed_standard_streams() -> list[str]:
    """Standard streams the program was started without (``>&-``): each gets /dev/null on its file descriptor, so
    that no file this run opens takes descriptor 1 or 2 and receives the output meant for the terminal. Returns the
    names of the streams that were closed."""
    closed = []
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.append(name)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
    return closed


def ignore_further_interrupts() -> None:
    """After a Ctrl-C, the next ones (a user pressing it again while the run winds down) are ignored: a second
    KeyboardInterrupt inside the clean-up would end in a traceback, or in a crash of a native thread at exit."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def run_command(build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command (``args.func``); every failure ends in one line on stderr and its exit
    status. ``argv`` None: the program itself (the process's arguments and streams)."""
    closed = closed_standard_streams() if argv is None else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse's message already printed)
        return int(exc.code or 0)
    if "stdout" in closed:
        print(f"mgen {args.command}: failed: standard output is closed (>&-); redirect it to /dev/null to discard "
              "what mgen prints", file=sys.stderr)
        return EXIT_FAILED
    try:
        stdout_for_results_only()
        args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        if argv is None:  # the program itself (not a caller of main()): it is ending
            ignore_further_interrupts()
        print(f"mgen {args.command}: interrupted; run it again to resume from the last checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (mgen simulate | head): end quietly
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more reaches the closed pipe, not even at exit
        except OSError:
            pass
        print(f"mgen {args.command}: output pipe closed", file=sys.stderr)
        return EXIT_FAILED
    except (MgenError, OSError) as exc:
        print(f"mgen {args.command}: {_failure(exc)}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, (TrainingError, OSError)) else EXIT_BAD_INPUT
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        print(f"mgen {args.command}: failed: out of memory ({_first_line(exc)}): a batch size, length or count "
              "is too large for this machine; its last checkpoint is kept", file=sys.stderr)
        return EXIT_FAILED
    return 0


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that an allocation failed: numpy's (a MemoryError) or XLA's (RESOURCE_EXHAUSTED)."""
    return isinstance(exc, MemoryError) or (type(exc).__name__ in ("JaxRuntimeError", "XlaRuntimeError")
                                            and "RESOURCE_EXHAUSTED" in str(exc)[:200])


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= 200 else text[:200] + "..."


def _failure(exc: Exception) -> str:
    """The one line of a failed command (cut: no value of unbounded size reaches the terminal)."""
    from mgen_jax.io import cut_message

    if isinstance(exc, TrainingError):
        return f"failed: {cut_message(str(exc))}"
    if isinstance(exc, MgenError):
        return f"error: {cut_message(str(exc))}"
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"failed: {exc.strerror or exc}{where}"
