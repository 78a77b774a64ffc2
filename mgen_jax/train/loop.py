"""The resumable training loop that fine-tuning and every phase of the model generator run: ``run_loop``.

A run lives in one folder: ``checkpoint.msgpack`` (the latest train state, rewritten atomically), ``metrics.jsonl``
(one line per log step) and ``wall_clock.json`` (training seconds up to that checkpoint). A killed run started again
resumes from its checkpoint, exactly: it drops what it logged after the checkpoint and adds the wall clock of the
earlier attempts.

The step's outputs (losses) stay on the devices between progress steps; at a progress step, a log step or before a
checkpoint they are fetched together, and each step's values are checked in order: a NaN or infinite value stops the
run with TrainingError naming the first bad step, before anything is checkpointed (the last checkpoint stays finite).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from tqdm.auto import tqdm

from mgen_jax.errors import ConfigError, TrainingError
from mgen_jax.io import append_jsonl, describe_value, truncate_jsonl, write_json_atomic
from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from mgen_jax.train.parallel import is_main_process, to_host

CHECKPOINT = "checkpoint.msgpack"
METRICS = "metrics.jsonl"
WALL_CLOCK = "wall_clock.json"


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """Where and how often: ``directory`` holds the run's files; every count is in steps."""

    directory: Path
    total_steps: int
    desc: str  # names the run in the progress bar and in errors
    checkpoint_every_steps: int
    log_every_steps: int = 10  # a metrics.jsonl line (``LoopHooks.record``) every this many steps and at the end
    progress_every_steps: int = 10  # the step outputs are fetched and checked, the progress bar's values refreshed
    progress: bool = True  # show a progress bar (process 0 only)
    stop_at_step: int | None = None  # checkpoint and stop there, as an interruption would (None: run to the end)
    error_hint: str = ""  # added to a TrainingError's message, e.g. the learning rate

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        for name in ("checkpoint_every_steps", "log_every_steps", "progress_every_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"loop setting '{name}' must be a positive integer, got {value!r}")
        if isinstance(self.total_steps, bool) or not isinstance(self.total_steps, int) or self.total_steps < 0:
            raise ConfigError(f"loop setting 'total_steps' must be an integer >= 0, got {self.total_steps!r}")


class LoopHooks(NamedTuple):
    """What a run computes. ``k`` counts steps from 0; ``done`` is the number of steps finished."""

    batch: Callable[[int], Any]  # k -> step k's batch, on the devices
    step: Callable[[Any, Any, int], tuple[Any, Any]]  # (state, batch, k) -> (state, outputs left on the devices)
    observe: Callable[[int, Any], dict[str, float]]  # (k, outputs on the host) -> step k's values (checked finite)
    status: Callable[[int, Any], dict[str, str]]  # (done, state) -> the progress bar's values
    record: Callable[[int, Any, float], dict | None]  # (done, state, wall-clock s) -> a metrics line, or None
    place: Callable[[Any], Any] = lambda state: state  # a fresh or restored state -> the same, on the devices


class LoopResult(NamedTuple):
    state: Any
    wall_clock_s: float  # training time of this run, the earlier attempts' included
    stopped: bool  # stopped at ``stop_at_step`` before the end


def previous_wall_clock_s(directory: Path) -> float:
    """Seconds the earlier attempts trained, up to their last checkpoint (0 for a fresh run)."""
    from mgen_jax.workfolder import read_state_json, state_file_error

    path = Path(directory) / WALL_CLOCK
    if not path.exists():
        return 0.0
    seconds = read_state_json(path, ("seconds",))["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise state_file_error(path, f"field 'seconds' must be a finite number >= 0, got {describe_value(seconds)}")
    return float(seconds)


def _check_finite(values: dict[str, Any], step: int, settings: LoopSettings, checkpoint: Path) -> None:
    bad = next((k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)), None)
    if bad is None:
        return
    last = f"the last checkpoint is {checkpoint}" if checkpoint.exists() else "no checkpoint was written yet"
    raise TrainingError(f"{settings.desc}: {bad} became {values[bad]} at step {step} ({values}){settings.error_hint}; "
                        f"{last}")


def run_loop(settings: LoopSettings, state: Any, hooks: LoopHooks) -> LoopResult:
    """Run ``hooks.step`` from the state's step (or the folder's checkpoint, if any) to ``settings.total_steps``.

    Every ``checkpoint_every_steps`` steps, at the end and at ``stop_at_step`` the state is checkpointed with the
    wall clock; every ``log_every_steps`` steps and at the end ``hooks.record`` may add a line to metrics.jsonl."""
    directory = settings.directory
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / CHECKPOINT
    if checkpoint.exists():
        state = restore_checkpoint(checkpoint, state)
    done = int(state.step)
    truncate_jsonl(directory / METRICS, lambda r: r.get("step", 0) <= done)  # no step logged twice
    state = hooks.place(state)
    before = previous_wall_clock_s(directory)
    start = time.perf_counter()
    wall = lambda: before + time.perf_counter() - start
    total = settings.total_steps
    bar = tqdm(total=total, initial=done, desc=settings.desc, unit="step",
               disable=not (settings.progress and is_main_process()))
    pending: list[Any] = []  # outputs of the steps since the last fetch, still on the devices
    try:
        while done < total:
            state, outputs = hooks.step(state, hooks.batch(done), done)
            pending.append(outputs)
            done += 1
            log = done % settings.log_every_steps == 0 or done == total
            save = done % settings.checkpoint_every_steps == 0 or done == total or done == settings.stop_at_step
            if log or save or done % settings.progress_every_steps == 0:
                first = done - len(pending)
                for i, host in enumerate(to_host(pending)):
                    _check_finite(hooks.observe(first + i, host), first + i + 1, settings, checkpoint)
                pending = []
                bar.set_postfix(hooks.status(done, state))
            bar.update(1)
            if log:
                line = hooks.record(done, state, wall())
                if line is not None:
                    append_jsonl(directory / METRICS, {"step": done, **line})
            if save:
                save_checkpoint(checkpoint, state)
                write_json_atomic(directory / WALL_CLOCK, {"seconds": wall()})
            if done == settings.stop_at_step and done < total:
                return LoopResult(state, wall(), True)
    finally:
        bar.close()
    return LoopResult(state, wall(), False)
