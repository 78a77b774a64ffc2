"""The constrained branch-point search, as pure functions: an energy target instead of a hand-set lambda.

Task t's branch point b_t has logits z_t [U + 1]; q_t = softmax(z_t) is its distribution. The search solves

    minimise  sum_t w_t E_{q_t}[loss_t(b_t)]   subject to   E(q) / E_independent <= r

with an entropy term tau H(q) whose weight (the temperature) falls geometrically from ``start`` to ``end`` over the
search: mirror-descent (natural-gradient) steps of the logits on the Lagrangian
sum_t w_t E_q[loss_t] + mu (E(q) / E0 - r) - tau H(q) (``natural_step``; q tracks the Gibbs distribution of the
Lagrangian costs at temperature tau, so it ends one-hot), and dual ascent on the multiplier in log space:
mu <- mu exp(eta_k (E(q) / E0 - r) / r),  eta_k = eta / (1 + k / K_0)  (``dual_update``; a fixed lambda is
the special case of a frozen mu). The discrete tree is argmax z_t.

The discrete tree starts from argmax z_t and is decoded against the search's own estimate of every task's loss at
every branch point (``decode_tree``): repaired if its energy (the cost model on one-hot p: the exact simulator's
mean on the same workload) exceeds r, then improved by single-task moves that stay within r; full sharing is always
feasible because targets below its ratio are refused (``check_target``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax import cost
from mgen_jax.errors import ConfigError

TARGET_RTOL = 1e-6  # the cost model runs in float32: a tree at the target to this relative tolerance is feasible


def temperature(step: int | jax.Array, steps: int, start: float, end: float) -> jax.Array:
    """tau at search step ``step``: geometric from ``start`` (step 0) to ``end`` (step ``steps`` - 1), then ``end``."""
    frac = jnp.asarray(step, jnp.float32) / max(steps - 1, 1)
    return jnp.float32(start) * (jnp.float32(end) / jnp.float32(start)) ** jnp.minimum(frac, 1.0)


def dual_step_size(step: int | jax.Array, eta: float, settle_steps: float, power: float = 0.5) -> jax.Array:
    """eta_k = eta / (1 + k / settle_steps)^power: large early (mu finds its scale), then shrinking so that mu
    settles (power 1 is the Robbins-Monro 1 / k rate; 0.5 lets mu travel further late in a short search)."""
    return jnp.float32(eta) / (1.0 + jnp.asarray(step, jnp.float32) / jnp.float32(settle_steps)) ** power


MU_FLOOR = 1e-4  # mu never reaches 0 in the multiplicative update: this stands for "constraint not binding"


def dual_update(mu: jax.Array, ratio: jax.Array, target: float, step_size: jax.Array) -> jax.Array:
    """Dual ascent in log space: mu x exp(step_size (ratio - target) / target), at least MU_FLOOR. The step is
    relative to mu, so that mu can fall from an early overshoot (a broad, high-temperature q needs a large mu) to its
    final scale in a few steps and its noise is relative to its size; a slack constraint sends it to the floor."""
    return jnp.maximum(MU_FLOOR, mu * jnp.exp(step_size * (ratio - target) / target))


def energy_ratio(q_tb: jax.Array, tables: cost.CostTables, workload: cost.Workload, independent_j: float) -> jax.Array:
    """E(q) / E_independent: the cost model's expected energy per request of branch-point distributions q [T, U + 1]
    over the independent models' (a differentiable scalar)."""
    p = cost.branch_probs_from_dist(q_tb)
    return cost.expected_energy(p, tables, workload).total_j / independent_j


def tree_ratio(branch_points: Sequence[int], tables: cost.CostTables, workload: cost.Workload,
               independent_j: float) -> float:
    """Energy ratio of one discrete tree (cost model on one-hot p: on a trace's moments, the exact simulator's mean
    over its requests)."""
    p = cost.onehot_probs([int(b) for b in branch_points], tables.unit_coef.shape[0])
    return float(cost.expected_energy(p, tables, workload).total_j) / independent_j


def feasible_range(tables: cost.CostTables, workload: cost.Workload, independent_j: float,
                   num_tasks: int) -> tuple[float, float]:
    """(full sharing's energy ratio, 1.0): the targets a tree can meet."""
    units = tables.unit_coef.shape[0]
    return tree_ratio([units] * num_tasks, tables, workload, independent_j), 1.0


def check_target(target, low: float, high: float = 1.0, *, what: str = "energy target") -> float:
    """The target (a number, or its text from a flag) as a float in [low, high], or ConfigError printing the
    feasible range."""
    if isinstance(target, str):
        try:
            target = float(target)
        except ValueError:
            pass
    ok = isinstance(target, (int, float)) and not isinstance(target, bool) and math.isfinite(target)
    if not ok or not low * (1 - TARGET_RTOL) <= target <= high:
        raise ConfigError(f"{what} {target!r} is not feasible: it must be a number in [{low:.5f}, {high:g}] (full "
                          f"sharing's energy ratio to 1, the independent models) for this model, tasks and workload")
    return float(target)


def decode_tree(branch_points: Sequence[int], cost_tb: np.ndarray, target: float,
                ratio_of: Callable[[Sequence[int]], float]) -> tuple[list[int], list[dict]]:
    """The discrete tree from the search's argmax ``branch_points`` and its estimated cost of every branch point
    ``cost_tb`` [T, U + 1] (the weighted loss estimates): the tree of least sum_t cost[t, b_t] within the target
    that these moves reach:
    1. repair: while the tree exceeds the target, the single-task move to a later branch point (more sharing) that
       meets the target at the least added cost, or, if no single move does, the move of least added cost per unit
       of energy saved;
    2. improve: while some single-task move to any branch point keeps the tree within the target and lowers its
       estimated cost, the move that lowers it most.
    Step 2 reaches trees a Lagrangian cannot: the relaxation settles on a mixture of the branch points on the lower
    convex hull of (energy, cost), and a better tree inside the hull is never its argmax. Returns the tree and the
    moves made, each {"task", "from", "to", "ratio_before", "ratio_after", "cost_change", "why"}."""
    b = [int(x) for x in branch_points]
    c = np.asarray(cost_tb, dtype=np.float64)
    units = c.shape[1] - 1
    moves: list[dict] = []
    limit = target * (1 + TARGET_RTOL)
    ratio = ratio_of(b)

    def move(t: int, new: int, why: str) -> None:
        nonlocal b, ratio
        old_ratio, old = ratio, b[t]
        b = b[:t] + [new] + b[t + 1:]
        ratio = ratio_of(b)
        moves.append({"task": t, "from": old, "to": new, "ratio_before": old_ratio, "ratio_after": ratio,
                      "cost_change": float(c[t, new] - c[t, old]), "why": why})

    while ratio > limit:
        options = [(t, new, ratio_of(b[:t] + [new] + b[t + 1:])) for t in range(len(b))
                   for new in range(b[t] + 1, units + 1)]
        if not options:
            raise ConfigError(f"energy target {target} is below full sharing's ratio {ratio:.5f}: no tree meets it")
        meeting = [o for o in options if o[2] <= limit]
        if meeting:
            t, new, _ = min(meeting, key=lambda o: (c[o[0], o[1]] - c[o[0], b[o[0]]], o[2], o[0]))
            move(t, new, "repair: the cheapest move that meets the target")
        else:
            t, new, _ = min(options, key=lambda o: ((c[o[0], o[1]] - c[o[0], b[o[0]]]) / max(ratio - o[2], 1e-12),
                                                    o[2], o[0]))
            move(t, new, "repair: the least cost per energy saved")
    while True:
        best = None
        for t in range(len(b)):
            for new in range(units + 1):
                gain = c[t, b[t]] - c[t, new]
                if new != b[t] and gain > 1e-12 and (best is None or gain > best[0]):
                    if ratio_of(b[:t] + [new] + b[t + 1:]) <= limit:
                        best = (gain, t, new)
        if best is None:
            return b, moves
        move(best[1], best[2], "improve: lower estimated cost within the target")


def update_estimate(estimate_tb: jax.Array, count_t: jax.Array, task: jax.Array, costs_b: jax.Array,
                    memory: float) -> tuple[jax.Array, jax.Array]:
    """Task ``task``'s running estimate of its cost at every branch point (its loss on each step's batch at every b),
    an exponential moving average with factor ``memory`` per step of that task: (estimate [T, U + 1], count [T])."""
    new = memory * estimate_tb[task] + (1.0 - memory) * costs_b
    return estimate_tb.at[task].set(new), count_t.at[task].add(1)


def read_estimate(estimate_tb: jax.Array, count_t: jax.Array, memory: float) -> jax.Array:
    """The estimates [T, U + 1, ...] without the moving average's start-up bias (divided by 1 - memory^n; 0 for a
    task not yet seen)."""
    correction = 1.0 - jnp.power(jnp.float32(memory), count_t.astype(jnp.float32))
    per_task = (-1,) + (1,) * (estimate_tb.ndim - 1)
    return jnp.where(count_t.reshape(per_task) > 0, estimate_tb / jnp.maximum(correction, 1e-12).reshape(per_task),
                     0.0)


def lagrangian(q_tb: jax.Array, loss_tb: jax.Array, weights_t: jax.Array, mu: jax.Array,
               ratio_fn: Callable[[jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The Lagrangian as a function of the distributions q [T, U + 1]: sum_t w_t <q_t, loss_t> + mu x ratio(q), with
    every task's estimated loss at every branch point ``loss_tb``. Returns (value, ratio); its gradient in q is the
    cost of every branch point that ``natural_step`` takes."""
    ratio = ratio_fn(q_tb)
    return jnp.sum(weights_t[:, None] * q_tb * loss_tb) + mu * ratio, ratio


def natural_step(logits_tb: jax.Array, cost_tb: jax.Array, step_size, tau) -> jax.Array:
    """One mirror-descent (natural-gradient) step on  <c, q> - tau H(q),  q = softmax(z) per task, c = dL/dq the
    cost of every branch point:  z <- z - step_size (c + tau log q), re-centred per task. Its fixed point is the
    Gibbs distribution q = softmax(-E[c] / tau): as tau anneals to small, q ends one-hot on the branch point of least
    Lagrangian cost. Unlike the plain gradient q (c - <q, c>), the step does not vanish where q is numerically zero,
    so a branch point suppressed early can still win later; with tau > 0 the problem is strongly convex in q, so q
    and mu converge (at tau = 0 it is the multiplicative-weights update, whose iterates can cycle). With
    step_size = rho / tau, q moves a share rho of the way (in log space) to softmax(-c / tau) at every step.
    Needs step_size x tau <= 1."""
    z = logits_tb - step_size * (cost_tb + tau * jax.nn.log_softmax(logits_tb, axis=-1))
    return z - jnp.max(z, axis=-1, keepdims=True)
