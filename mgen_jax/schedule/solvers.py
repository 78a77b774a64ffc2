"""Schedulers: the naive references, an exact solver for small instances and a fast one for large instances.

All minimise the schedule's energy beyond compute (crossbar programming + DRAM traffic); ties go to fewer loads
(longer cell lifetime), then to the smaller batch.

- ``request_major``: groups of one request (each request runs all its tasks before the next); ``task_major``: the
  whole batch as one group, branches in task-index order. Both pin nodes first-fit in model order.
- ``solve_exact``: every batch size 1..R, every child order, every maximal set of pinned nodes (pinning more never
  costs more, and a subset of a feasible pinning is feasible, so the optimum is among the maximal ones).
- ``solve_fast``: batch sizes 1, 2, 4, ... and R, then a geometric grid around the best; the default and the
  task-index child order (every order when there are few); pinnings that fill the chip greedily by loads saved per
  crossbar, for every possible swap-region size, then improved by 1-for-1 swaps on small trees; the naive schedules
  are among the candidates, so it is never worse than they are.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Iterator

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.schedule import Schedule, child_orders, count_child_orders
from mgen_jax.schedule.problem import ScheduleCost, SchedulingProblem, evaluate


@dataclasses.dataclass(frozen=True)
class Solution:
    schedule: Schedule
    cost: ScheduleCost
    candidates: int  # schedules evaluated


def _key(cost: ScheduleCost, schedule: Schedule):
    return (round(cost.energy_j, 18), cost.loads, schedule.batch_size)


def first_fit_pinning(problem: SchedulingProblem) -> frozenset:
    pinned: frozenset = frozenset()
    for node in problem.nodes:
        if problem.fits(pinned | {node}):
            pinned = pinned | {node}
    return pinned


def task_index_order(problem: SchedulingProblem) -> tuple:
    """Children in the order of their lowest task index (task 0's path first) at every branching node."""
    return tuple(
        (node, tuple(sorted(kids, key=lambda n: min(n[1]))))
        for node, kids in problem.kids.items() if len(kids) > 1
    )


def request_major(problem: SchedulingProblem) -> Schedule:
    return Schedule(first_fit_pinning(problem), 1, task_index_order(problem), name="request-major")


def task_major(problem: SchedulingProblem) -> Schedule:
    return Schedule(first_fit_pinning(problem), problem.num_requests, task_index_order(problem), name="task-major")


def _best(problem: SchedulingProblem, schedules) -> Solution:
    best, best_cost, count = None, None, 0
    for schedule in schedules:
        cost = evaluate(problem, schedule)
        count += 1
        if best is None or _key(cost, schedule) < _key(best_cost, best):
            best, best_cost = schedule, cost
    return Solution(best, best_cost, count)


def maximal_pinnings(problem: SchedulingProblem) -> Iterator[frozenset]:
    """Every maximal feasible set of pinned nodes, in the order of a depth-first walk that takes each node before
    leaving it out. Leaving node i out is not tried where node i, the chosen nodes and every later node fit together:
    no set of that branch could then be maximal (node i could still join it; a subset of a feasible set is
    feasible), so the walk visits the maximal sets, not all 2^nodes subsets."""
    nodes = problem.nodes

    def grow(i: int, chosen: frozenset) -> Iterator[frozenset]:
        if i == len(nodes):
            if all(n in chosen or not problem.fits(chosen | {n}) for n in nodes):
                yield chosen
            return
        with_node = chosen | {nodes[i]}
        if problem.fits(with_node):
            yield from grow(i + 1, with_node)
        if not problem.fits(with_node | set(nodes[i + 1:])):
            yield from grow(i + 1, chosen)

    yield from grow(0, frozenset())


def exact_refusal(problem: SchedulingProblem, *, max_tasks: int = 5, max_requests: int = 12,
                  max_nodes: int = 24) -> str | None:
    """Why ``solve_exact`` refuses ``problem`` (too many tasks, requests, nodes or child orders), or None when it
    solves it."""
    if problem.tree.num_tasks > max_tasks or problem.num_requests > max_requests or len(problem.nodes) > max_nodes:
        return (f"exact solver: instance too large ({problem.tree.num_tasks} tasks, {problem.num_requests} requests, "
                f"{len(problem.nodes)} nodes; limits {max_tasks}, {max_requests}, {max_nodes}); use the fast solver")
    if count_child_orders(problem.tree) > MAX_EXACT_ORDERS:
        return (f"exact solver: {count_child_orders(problem.tree):,} child orders, more than its limit "
                f"{MAX_EXACT_ORDERS:,}; use the fast solver")
    return None


def solve_exact(problem: SchedulingProblem, *, max_tasks: int = 5, max_requests: int = 12,
                max_nodes: int = 24) -> Solution:
    """Every schedule of the space (module docstring); ConfigError for an instance over its limits
    (``exact_refusal``)."""
    refusal = exact_refusal(problem, max_tasks=max_tasks, max_requests=max_requests, max_nodes=max_nodes)
    if refusal is not None:
        raise ConfigError(refusal)
    pinnings = list(maximal_pinnings(problem))
    orders = list(child_orders(problem.tree))
    schedules = (
        Schedule(p, m, order, name="exact")
        for m in range(1, problem.num_requests + 1) for order in orders for p in pinnings
    )
    return _best(problem, schedules)


def greedy_pinnings(problem: SchedulingProblem, batch_size: int) -> list[frozenset]:
    """For every swap-region size s: nodes larger than s pinned, then the rest by loads saved per crossbar."""
    groups = problem.group_tokens(batch_size) > 0
    value = {n: groups[:, problem.index[n]].sum() * problem.cells[n] for n in problem.nodes}
    out = []
    for swap in sorted(set(problem.crossbars.values()), reverse=True):
        pinned = frozenset(n for n in problem.nodes if problem.crossbars[n] > swap)
        room = problem.capacity - problem.head_crossbars - swap - sum(problem.crossbars[n] for n in pinned)
        if room < 0:
            continue
        ranked = sorted((n for n in problem.nodes if n not in pinned),
                        key=lambda n: (-value[n] / max(problem.crossbars[n], 1), problem.index[n]))
        for node in ranked:
            if problem.crossbars[node] <= room:
                pinned |= {node}
                room -= problem.crossbars[node]
        if problem.fits(pinned):
            out.append(pinned)
    return out


def solve_fast(problem: SchedulingProblem) -> Solution:
    """Batch sizes: powers of two (and R), then 16 sizes on a geometric grid around the best of those."""
    r = problem.num_requests
    default = Schedule(frozenset(), 1).child_order  # empty: the default order
    orders = [default, task_index_order(problem)]
    if count_child_orders(problem.tree) <= MAX_ORDERS:
        orders += list(child_orders(problem.tree))

    def candidates(sizes):
        for m in sizes:
            pinnings = greedy_pinnings(problem, m) + [first_fit_pinning(problem)]
            for order, pinned in itertools.product(orders, dict.fromkeys(pinnings)):
                yield Schedule(pinned, m, order, name="fast")

    coarse = sorted({min(2**k, r) for k in range(r.bit_length() + 1)} | {r})
    first = _best(problem, itertools.chain([request_major(problem), task_major(problem)], candidates(coarse)))
    m = first.schedule.batch_size
    fine = sorted({int(round(x)) for x in np.geomspace(max(1, m / 2), min(r, 2 * m), 16)} - set(coarse))
    second = _best(problem, itertools.chain([first.schedule], candidates(fine)))
    if len(problem.nodes) <= LOCAL_SEARCH_NODES:
        third = _swap_search(problem, second)
        return Solution(third.schedule, third.cost, first.candidates + second.candidates + third.candidates - 1)
    return Solution(second.schedule, second.cost, first.candidates + second.candidates - 1)


MAX_ORDERS = 24  # the fast solver tries every child order when there are at most this many
MAX_EXACT_ORDERS = 20_000  # the exact solver's order space (5 tasks at one node: 120; at most 5!^2 within its limits)
LOCAL_SEARCH_NODES = 40  # and improves the pinned set by 1-for-1 swaps on trees of at most this many nodes


def _swap_search(problem: SchedulingProblem, start: Solution) -> Solution:
    """Exchange one pinned for one unpinned node while the energy drops."""
    best, evaluated = start, 0
    improved = True
    while improved:
        improved = False
        pinned = best.schedule.pinned
        for out_node, in_node in itertools.product(sorted(pinned, key=problem.index.get),
                                                   [n for n in problem.nodes if n not in pinned]):
            trial = (pinned - {out_node}) | {in_node}
            if not problem.fits(trial):
                continue
            schedule = dataclasses.replace(best.schedule, pinned=trial)
            cost = evaluate(problem, schedule)
            evaluated += 1
            if _key(cost, schedule) < _key(best.cost, best.schedule):
                best, improved = Solution(schedule, cost, 0), True
                break
    return Solution(best.schedule, best.cost, evaluated)


SOLVERS = {"fast": solve_fast, "exact": solve_exact}
NAIVE = {"request-major": request_major, "task-major": task_major}


def solve(problem: SchedulingProblem, method: str = "fast") -> Solution:
    if method in SOLVERS:
        return SOLVERS[method](problem)
    if method in NAIVE:
        schedule = NAIVE[method](problem)
        return Solution(schedule, evaluate(problem, schedule), 1)
    raise ConfigError(f"unknown scheduler {method!r}; choose from {sorted(SOLVERS) + sorted(NAIVE)}")


