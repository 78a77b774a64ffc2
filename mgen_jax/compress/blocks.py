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
- **Storage** (``compress_matrix``): the kept blocks of the chosen allocation, rounded with error feedback over the
  input rows (OPTQ) when the input moment is given: the predicted errors above assume plain rounding, so they bound
  what the stored deltas do (the held-out walk measures the real effect).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import DeltaGrid

CLIP_RATIOS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
FEEDBACK_ROWS = 128  # rows rounded between two lazy updates of the rest (the result does not depend on it)


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


@dataclasses.dataclass(frozen=True)
class CompressedMatrix:
    """What a matrix's delta crossbars hold: ``values`` [K, N] float64 (zero outside the kept blocks); below full
    bits also the integer ``codes`` [K, N] (int8) and the per-column ``scale`` [N] (float32-representable), with
    values = codes x scale exactly."""

    bits: int
    kept: tuple[int, ...]
    values: np.ndarray
    codes: np.ndarray | None = None
    scale: np.ndarray | None = None


def compress_matrix(delta: np.ndarray, grid: DeltaGrid, choice: Choice, full_bits: int,
                    hessian: np.ndarray | None = None, damp: float = 0.01) -> CompressedMatrix:
    """The stored delta of one matrix: its kept blocks at the chosen bits.

    Without ``hessian``: every entry rounded on its own (at full bits, kept as it is). With ``hessian`` H [K, K] (the
    input moment the error is measured with): rounding with error feedback over the input rows (OPTQ/GPTQ, Frantar et
    al., ICLR 2023): row i is rounded (a dropped entry to 0), and its error, divided by the i-th pivot of the upper
    Cholesky factor U of (H + damp x mean(diag H) I)^-1, is pushed onto the rows after it (W[i+1:] -= U[i, i+1:]^T err),
    which minimises the output error sum_j e_j^T H e_j row by row. Nothing is retrained: a closed-form calibration.
    A kept-everything full-bits choice gives the delta back exactly either way. Scales (below full bits): one per
    output column, the clip ratio of ``quantize_delta`` on the kept entries.
    """
    d = np.asarray(delta, dtype=np.float64)
    mask = grid.block_mask(choice.kept)
    exact = choice.bits >= full_bits
    qmax = 2 ** (choice.bits - 1) - 1
    scale = None
    if not exact:
        scale = quantize_delta(np.where(mask, d, 0.0), choice.bits, full_bits).scale.astype(np.float32).astype(np.float64)
    round_row = (lambda w, keep: np.where(keep, w, 0.0)) if exact else (
        lambda w, keep: np.where(keep, np.clip(np.round(w / scale), -qmax, qmax), 0.0))
    if hessian is None:
        rows = round_row(d, mask)
    else:
        h = np.asarray(hessian, dtype=np.float64).copy()
        dead = np.diag(h) <= 0
        h[dead, dead] = 1.0
        h += damp * float(np.mean(np.diag(h))) * np.eye(len(h))
        u = np.linalg.cholesky(np.linalg.inv(h)).T
        w = d.copy()
        rows = np.zeros_like(d)
        for start in range(0, len(d), FEEDBACK_ROWS):  # lazy updates: rows after the batch get one matmul
            stop = min(len(d), start + FEEDBACK_ROWS)
            errors = np.zeros((stop - start, d.shape[1]))
            for i in range(start, stop):
                rows[i] = round_row(w[i], mask[i])
                errors[i - start] = (w[i] - (rows[i] if exact else rows[i] * scale)) / u[i, i]
                w[i + 1:stop] -= np.outer(u[i, i + 1:stop], errors[i - start])
            w[stop:] -= u[start:stop, stop:].T @ errors
    if exact:
        return CompressedMatrix(choice.bits, tuple(choice.kept), rows)
    codes = rows.astype(np.int8)
    return CompressedMatrix(choice.bits, tuple(choice.kept), codes * scale, codes, scale)
