"""The math of a compressed delta (numpy; pure functions): quantisation, the output effect of each crossbar block,
the choice of (kept blocks, delta bits) per matrix, and the reconstruction of the weights.

Notation: a crossbar matrix W (K inputs x N outputs, the Flax kernel layout) of a task's private unit, its base B (the
pretrained or the trunk's unit), the delta D = W - B. On the accelerator D is cut into the blocks of
``mgen_jax.hw.delta.delta_grid`` (R rows x floor(C / s) weights, s = ceil(bits / cell_bits)).

- **Quantisation** (``quantize_delta``): at ``full_bits`` (the spec's weight_bits, the precision every weight of
  this project is stored and evaluated at) the delta is kept as it is, so that every block kept at full bits
  reproduces W exactly. At b < full_bits bits: symmetric, one scale per output column,
  q = clip(round(D / s_j), -(2^(b-1) - 1), 2^(b-1) - 1), with s_j = c x max_i |D_ij| / (2^(b-1) - 1) and the clip
  ratio c in ``CLIP_RATIOS`` that minimises the column's squared error (2 bits is a ternary delta {-s_j, 0, s_j}).
- **Output effect** (``block_effects``): an error E in a block (rows r, columns j) changes the matrix output of a
  token x by x_r E; its expected weighted square is sum_j F_j E_{r,j}^T S_rr E_{r,j}, with S = E[x x^T] the input's
  second moment and F_j = E[(dloss/dy_j)^2] the output column's gradient Fisher (``mgen_jax.compress.stats``). The
  effect of dropping a block is that of E = D on it, of keeping it at b bits that of E = D - Q_b(D) on it. Blocks are
  ranked by the effect of dropping them; errors of different row blocks are added (cross terms ignored).
- **Allocation** (``allocate``): for a multiplier mu, every matrix takes the (bits, number of kept blocks) that
  minimises crossbars + mu x predicted error, the kept blocks being its top-ranked ones at those bits (stage one
  drops, stage two lowers the bits of what is kept).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import DeltaGrid

CLIP_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


@dataclasses.dataclass(frozen=True)
class QuantizedDelta:
    """A delta at ``bits``: ``values`` [K, N] what the crossbars hold (dequantised, float64); ``codes`` (int8) and
    ``scale`` [N] unless ``exact`` (full bits: values is the delta itself)."""

    bits: int
    exact: bool
    values: np.ndarray
    codes: np.ndarray | None = None
    scale: np.ndarray | None = None


def quantize_delta(delta: np.ndarray, bits: int, full_bits: int) -> QuantizedDelta:
    """The delta stored at ``bits`` (module docstring); exact at ``bits >= full_bits``."""
    d = np.asarray(delta, dtype=np.float64)
    if bits >= full_bits:
        return QuantizedDelta(int(bits), True, d)
    if bits < 2:
        raise ConfigError(f"delta bits must be >= 2 (a ternary delta), got {bits}")
    qmax = 2 ** (bits - 1) - 1
    peak = np.abs(d).max(axis=0)  # [N]
    best_err = np.full(d.shape[1], np.inf)
    best_scale = np.zeros(d.shape[1])
    for ratio in CLIP_RATIOS:
        scale = np.maximum(ratio * peak / qmax, 1e-30)
        q = np.clip(np.round(d / scale), -qmax, qmax) * scale
        err = np.square(d - q).sum(axis=0)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
    codes = np.clip(np.round(d / best_scale), -qmax, qmax).astype(np.int8)
    return QuantizedDelta(int(bits), False, codes * best_scale, codes, best_scale)


def column_effects(second_moment: np.ndarray, error: np.ndarray, rows_per_block: int) -> np.ndarray:
    """[row blocks, N]: E_{r,j}^T S_rr E_{r,j} for every row block r and column j (S: [K, K], error: [K, N])."""
    k = error.shape[0]
    out = []
    for start in range(0, k, rows_per_block):
        rows = slice(start, min(k, start + rows_per_block))
        e = error[rows]
        out.append(np.sum((second_moment[rows, rows] @ e) * e, axis=0))
    return np.stack(out)


def block_effects(col_effects: np.ndarray, fisher: np.ndarray, grid: DeltaGrid) -> np.ndarray:
    """[blocks] (row-major, as ``grid`` numbers them): sum over a block's columns of F_j x its column effect."""
    weighted = col_effects * np.asarray(fisher, dtype=np.float64)[None, :]
    starts = np.arange(grid.col_blocks) * grid.weights_per_block
    return np.add.reduceat(weighted, starts, axis=1).reshape(-1)


@dataclasses.dataclass(frozen=True)
class BitOption:
    """One matrix at one bit level: the blocks ranked by their effect (``order``) and the predicted error of keeping
    the top k of them, ``error[k]`` for k = 0..blocks (k crossbars)."""

    bits: int
    grid: DeltaGrid
    order: np.ndarray
    error: np.ndarray

    def kept(self, count: int) -> tuple[int, ...]:
        return tuple(sorted(int(b) for b in self.order[:count]))


def bit_option(delta: np.ndarray, grid: DeltaGrid, second_moment: np.ndarray, fisher: np.ndarray,
               full_bits: int) -> BitOption:
    """Rank ``grid``'s blocks of ``delta`` and tabulate the predicted error of every number of kept blocks."""
    drop = block_effects(column_effects(second_moment, delta, grid.rows_per_block), fisher, grid)
    q = quantize_delta(delta, grid.delta_bits, full_bits)
    residual = np.zeros(len(drop)) if q.exact else block_effects(
        column_effects(second_moment, delta - q.values, grid.rows_per_block), fisher, grid)
    order = np.argsort(-drop, kind="stable")
    saved = np.concatenate([[0.0], np.cumsum(drop[order] - residual[order])])
    return BitOption(grid.delta_bits, grid, order, drop.sum() - saved)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A matrix's compression: bits, kept blocks (sorted), crossbars, predicted error."""

    bits: int
    kept: tuple[int, ...]
    crossbars: int
    error: float


def choose(options: Sequence[BitOption], mu: float) -> Choice:
    """The (bits, kept count) minimising crossbars + mu x error (ties: fewer crossbars, then more bits)."""
    best = None
    for opt in options:
        count = np.arange(len(opt.error))
        k = int(np.argmin(count + mu * opt.error))
        key = (k + mu * opt.error[k], k, -opt.bits)
        if best is None or key < best[0]:
            best = (key, opt, k)
    _, opt, k = best
    return Choice(opt.bits, opt.kept(k), k, float(opt.error[k]))


def allocate(options: Mapping[str, Sequence[BitOption]], mu: float) -> dict[str, Choice]:
    """Every matrix's choice at multiplier ``mu``."""
    return {key: choose(opts, mu) for key, opts in options.items()}


def allocate_to_budget(options: Mapping[str, Sequence[BitOption]], budget: float, *, iters: int = 60
                       ) -> tuple[float, dict[str, Choice]]:
    """The largest allocation (bisection on mu, geometric) whose total crossbars are at most ``budget``."""
    total = lambda choices: sum(c.crossbars for c in choices.values())
    lo, hi = 1e-12, 1e18  # mu: few crossbars at lo, the least error at hi
    if total(allocate(options, lo)) > budget:
        return lo, allocate(options, lo)
    for _ in range(iters):
        mid = float(np.sqrt(lo * hi))
        if total(allocate(options, mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return lo, allocate(options, lo)


def reconstruct(base: np.ndarray, delta: np.ndarray, choice: Choice, grid: DeltaGrid, full_bits: int) -> np.ndarray:
    """The weights the crossbars hold: base + the kept blocks of the delta at the chosen bits (float32; with every
    block kept at full bits, exactly the task's weights)."""
    q = quantize_delta(delta, choice.bits, full_bits)
    mask = grid.block_mask(choice.kept)
    return (np.asarray(base, dtype=np.float64) + np.where(mask, q.values, 0.0)).astype(np.float32)
