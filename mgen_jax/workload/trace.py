"""Requests and traces: what the exact simulator runs, and the statistics the cost model needs.

A request is one input sequence of n tokens and the set of tasks that must run on it (DESIGN.md section 2).
A trace is a list of requests, stored as arrays: ``tokens[r]`` and ``task_mask[r, t]``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mgen_jax.errors import ConfigError

MAX_SUBSETS = 4096  # task subsets of --task-subsets


@dataclasses.dataclass(frozen=True)
class Trace:
    """R requests over T tasks: tokens [R] (int, >= 1) and task_mask [R, T] (bool, >= 1 task per request)."""

    tokens: np.ndarray
    task_mask: np.ndarray
    task_names: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        tokens = np.asarray(self.tokens)
        mask = np.asarray(self.task_mask)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ConfigError(f"trace: tokens must be a non-empty 1-D array, got shape {tokens.shape}")
        if not np.issubdtype(tokens.dtype, np.integer) or tokens.min() < 1:
            raise ConfigError("trace: every request needs an integer token count >= 1")
        if mask.shape != (tokens.size, len(self.task_names)):
            raise ConfigError(f"trace: task_mask shape {mask.shape} != (requests {tokens.size}, tasks {len(self.task_names)})")
        if not mask.any(axis=1).all():
            raise ConfigError(f"trace: request {int(np.argmin(mask.any(axis=1)))} runs no task")
        object.__setattr__(self, "tokens", tokens.astype(np.int64))
        object.__setattr__(self, "task_mask", mask.astype(bool))

    @property
    def num_requests(self) -> int:
        return int(self.tokens.size)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


def default_task_names(num_tasks: int) -> tuple[str, ...]:
    return tuple(f"task{t}" for t in range(num_tasks))


def fixed_trace(num_tasks: int, tokens: int, *, num_requests: int = 1, task_names: Sequence[str] | None = None) -> Trace:
    """Every request has ``tokens`` tokens and runs every task."""
    names = tuple(task_names) if task_names is not None else default_task_names(num_tasks)
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 1:
        raise ConfigError(f"--tokens must be an integer >= 1, got {tokens!r}")
    return Trace(
        np.full(num_requests, tokens, dtype=np.int64), np.ones((num_requests, num_tasks), dtype=bool), names,
        f"fixed length {tokens}, all tasks",
    )


def parse_subsets(text: str, task_names: Sequence[str]) -> dict[tuple[int, ...], float]:
    """Parse "A+B:0.5,C:0.5" (task names or indices) into {task-index tuple: probability} (probabilities sum to 1)."""
    from mgen_jax.io import describe_value

    index = {name: t for t, name in enumerate(task_names)}
    result: dict[tuple[int, ...], float] = {}
    items = [s.strip() for s in text.split(",") if s.strip()]
    if len(items) > MAX_SUBSETS:
        raise ConfigError(f"task subsets: {len(items):,} listed, at most {MAX_SUBSETS:,}")
    for item in items:
        shown = describe_value(item, 60)
        if ":" not in item:
            raise ConfigError(f"task subset {shown}: expected TASK+TASK:probability")
        names, prob_text = item.rsplit(":", 1)
        members = []
        for name in names.split("+"):
            name = name.strip()
            if name in index:
                members.append(index[name])
            elif name.isdigit() and int(name) < len(task_names):
                members.append(int(name))
            else:
                raise ConfigError(f"task subset {shown}: unknown task {describe_value(name, 40)}; tasks are "
                                  f"{describe_value(list(task_names), 200)}")
        try:
            prob = float(prob_text)
        except ValueError:
            raise ConfigError(f"task subset {shown}: probability {describe_value(prob_text, 40)} is not a number") from None
        if not 0 <= prob <= 1:
            raise ConfigError(f"task subset {shown}: probability must be in [0, 1]")
        key = tuple(sorted(set(members)))
        if key in result:
            raise ConfigError(f"task subset {shown}: the set {[task_names[t] for t in key]} is listed twice")
        result[key] = prob
    if not result or abs(sum(result.values()) - 1.0) > 1e-6:
        raise ConfigError(f"task subset probabilities must sum to 1, got {sum(result.values()):.6g} from "
                          f"{describe_value(text, 80)}")
    return result


def assign_subsets(trace: Trace, subsets: Mapping[tuple[int, ...], float], *, seed: int = 0) -> Trace:
    """Give each request a task set drawn (seeded) from ``subsets``; token counts stay."""
    keys = list(subsets)
    probs = np.asarray([subsets[k] for k in keys], dtype=np.float64)
    draws = np.random.default_rng(seed).choice(len(keys), size=trace.num_requests, p=probs / probs.sum())
    mask = np.zeros((trace.num_requests, trace.num_tasks), dtype=bool)
    for i, key in enumerate(keys):
        mask[np.ix_(draws == i, list(key))] = True
    return dataclasses.replace(trace, task_mask=mask, description=f"{trace.description}; task subsets drawn with seed {seed}")


def proportional_subsets(trace: Trace, subsets: Mapping[tuple[int, ...], float]) -> Trace:
    """Give the requests task sets in the exact proportions of ``subsets`` (largest-remainder rounding of p x N,
    deterministic, no draw): with N = 10,000 and probabilities of up to 4 decimals the trace's mean energy per
    request is the distribution's expectation."""
    keys = list(subsets)
    probs = np.asarray([subsets[k] for k in keys], dtype=np.float64)
    probs = probs / probs.sum()
    exact = probs * trace.num_requests
    counts = np.floor(exact).astype(np.int64)
    short = trace.num_requests - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    mask = np.zeros((trace.num_requests, trace.num_tasks), dtype=bool)
    row = 0
    for key, count in zip(keys, counts):
        mask[row: row + count, list(key)] = True
        row += count
    return dataclasses.replace(trace, task_mask=mask, description=f"{trace.description}; {trace.num_requests:,} "
                               "requests with task sets in exact proportion")


@dataclasses.dataclass(frozen=True)
class TraceMoments:
    """Per distinct task set S of a trace: its mask [M, T], frequency [M], E[n | S] and E[n^2 | S] [M]."""

    subset_mask: np.ndarray
    prob: np.ndarray
    mean_tokens: np.ndarray
    mean_tokens_sq: np.ndarray


def trace_moments(trace: Trace) -> TraceMoments:
    """The workload statistics of a trace, exact (float64): what the cost model needs to match the simulator."""
    subsets, inverse = np.unique(trace.task_mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(subsets)).astype(np.float64)
    n = trace.tokens.astype(np.float64)
    return TraceMoments(
        subset_mask=subsets.astype(np.float64),
        prob=counts / trace.num_requests,
        mean_tokens=np.bincount(inverse, weights=n, minlength=len(subsets)) / counts,
        mean_tokens_sq=np.bincount(inverse, weights=n * n, minlength=len(subsets)) / counts,
    )
