"""Budgeted discretisation: the tree with the least estimated score loss within an energy budget.

The lambda search minimises sum_t w_t E_q[loss_t(b_t)] + lambda * E(q) / E0, a linear trade-off: whatever lambda, its
argmax lands on the lower convex hull of the (energy ratio, estimated loss) points of all (U + 1)^T trees, and trees
inside the hull are never chosen. Given the loss profile (every task's train loss at every branch point under the
same weights, ``make_loss_profile``) the constrained problem

    minimise  sum_t w_t (loss_t(b_t) - loss_t(0))   subject to   E(b) / E0 <= budget

is small enough to solve exactly by enumeration for a handful of tasks ((U + 1)^T = 371,293 trees for T = 5, U = 12),
with E from the cost model (one-hot p). With w_t in score points per unit of loss (``calibrate_task_weights``) the
objective is an estimate of the mean score drop.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax import cost
from mgen_jax.errors import ConfigError

MAX_TREES = 5_000_000  # (U + 1)^T above this: the enumeration would take minutes and GBs
BUDGET_RTOL = 1e-6  # the cost model runs in float32; a tree whose energy equals the budget's in float64 is feasible


def all_branch_points(num_tasks: int, num_units: int) -> np.ndarray:
    """Every branch-point vector b in {0..U}^T, [(U + 1)^T, T] int32 (lexicographic order)."""
    count = (num_units + 1) ** num_tasks
    if count > MAX_TREES:
        raise ConfigError(f"budget selection enumerates (U + 1)^T = {num_units + 1}^{num_tasks} = {count:,} trees, "
                          f"more than {MAX_TREES:,}: use fewer tasks, or lambdas instead of energy budgets")
    return np.array(list(itertools.product(range(num_units + 1), repeat=num_tasks)), dtype=np.int32)


def tree_energy_ratios(trees: np.ndarray, tables: cost.CostTables, workload: cost.Workload, independent_j: float,
                       *, chunk: int = 65536) -> np.ndarray:
    """E(b) / E0 from the cost model for every row b of ``trees`` [N, T] -> [N] (float32, chunks of ``chunk``)."""
    num_units = tables.unit_coef.shape[0]

    @jax.jit
    def ratios(b):
        p = (jnp.arange(num_units)[None, None, :] < b[:, :, None]).astype(jnp.float32)
        return jax.vmap(lambda q: cost.expected_energy(q, tables, workload).total_j)(p) / independent_j

    out = []
    for start in range(0, len(trees), chunk):
        part = trees[start:start + chunk]
        padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)]) if len(part) < chunk \
            else part  # one compiled shape
        out.append(np.asarray(ratios(jnp.asarray(padded)))[:len(part)])
    return np.concatenate(out)


def estimated_loss(profile: np.ndarray, weights: Sequence[float], trees: np.ndarray) -> np.ndarray:
    """sum_t w_t (loss_t(b_t) - loss_t(0)) for every row of ``trees`` [N, T]; ``profile`` [U + 1, T]."""
    profile = np.asarray(profile, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if profile.ndim != 2 or profile.shape[1] != trees.shape[1] or w.shape != (trees.shape[1],):
        raise ConfigError(f"loss profile {profile.shape} and weights {w.shape} do not match {trees.shape[1]} tasks")
    rise = (profile - profile[0][None, :]) * w[None, :]
    return rise[trees, np.arange(trees.shape[1])[None, :]].sum(axis=1)


def select_within_budget(trees: np.ndarray, ratios: np.ndarray, loss: np.ndarray, budget: float) -> dict[str, Any]:
    """The tree of least ``loss`` with ratio <= budget (ties: the lower energy, then the first in order)."""
    if not 0 < budget <= 1 + BUDGET_RTOL:
        raise ConfigError(f"energy budget must be in (0, 1] (a ratio to the independent models), got {budget}")
    feasible = ratios <= budget * (1 + BUDGET_RTOL)
    if not feasible.any():
        raise ConfigError(f"no tree has an energy ratio <= {budget:.6f}; the least is {ratios.min():.6f} "
                          "(full sharing)")
    order = np.lexsort((ratios, np.where(feasible, loss, np.inf)))  # by loss, then ratio; stable
    i = int(order[0])
    return {"branch_points": trees[i].tolist(), "estimated_loss": float(loss[i]),
            "cost_model_energy_ratio": float(ratios[i]), "budget": float(budget),
            "feasible_trees": int(feasible.sum())}


def calibrate_task_weights(scores_b0: dict[str, float], scores_bU: dict[str, float], losses: Sequence[Sequence[float]],
                           tasks: Sequence[str], min_drop: float) -> dict[str, Any]:
    """Task weights in score points per unit of loss: w_t = max(score_t(b = 0) - score_t(b = U), min_drop) /
    (loss_t(U) - loss_t(0)) / T, from the scores of the two endpoint models (x 100) and a loss profile [U + 1][T].
    Then sum_t w_t (loss_t(b_t) - loss_t(0)) is a linear estimate of the mean score drop. The sweep calibrates on
    the held-out split (scores and profile), never on dev."""
    weights, rows = [], []
    for t, name in enumerate(tasks):
        drop = scores_b0[name] - scores_bU[name]
        rise = losses[-1][t] - losses[0][t]
        if rise <= 0:
            raise ConfigError(f"task {name}: the profile's loss does not rise from b = 0 ({losses[0][t]:.4f}) to "
                              f"b = U ({losses[-1][t]:.4f}); use a profile of weights trained for every b "
                              "(warmup_sampling: hard)")
        w = max(drop, min_drop) / rise / len(tasks)
        weights.append(w)
        rows.append({"task": name, "score_b0": scores_b0[name], "score_bU": scores_bU[name], "score_drop": drop,
                     "loss_b0": losses[0][t], "loss_bU": losses[-1][t], "loss_rise": rise, "weight": w})
    return {"weights": weights, "tasks": rows}


def score_drop_profile(scores: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """[U + 1, T] scores (x 100) of every task at every branch point -> (drops, flat tasks): each task's scores made
    non-increasing in b by isotonic regression (noise of a few hundred held-out rows can make sharing look helpful),
    as the drop from b = 0; a task whose smoothed score does not drop at all gets the ramp 0, 1, ..., U instead, so
    that a calibration on it spreads the task's measured drop evenly over the units."""
    from scipy.optimize import isotonic_regression

    scores = np.asarray(scores, dtype=np.float64)
    drops, flat = np.zeros_like(scores), []
    for t in range(scores.shape[1]):
        smooth = isotonic_regression(scores[:, t], increasing=False).x
        drop = smooth[0] - smooth
        if drop[-1] <= 1e-9:
            drop = np.arange(len(drop), dtype=np.float64)
            flat.append(t)
        drops[:, t] = drop
    return drops, flat
