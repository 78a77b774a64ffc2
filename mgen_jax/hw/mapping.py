"""Crossbar mapping of a K x N weight matrix and its per-token event counts (DESIGN.md section 3)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.energy import ACTION_INDEX, NUM_ACTIONS
from mgen_jax.hw.spec import HardwareSpec


@dataclasses.dataclass(frozen=True, slots=True)
class MatrixMapping:
    """How a K x N matrix (K inputs, N outputs) occupies crossbars."""

    k: int
    n: int
    row_blocks: int
    col_blocks: int
    used_columns: int  # columns holding weight slices, over all column blocks
    last_block_columns: int  # used columns in the last column block

    @property
    def crossbars(self) -> int:
        return self.row_blocks * self.col_blocks

    @property
    def cells(self) -> int:
        """Cells that hold weight bits (rows used x columns used)."""
        return self.k * self.used_columns


@dataclasses.dataclass(frozen=True, slots=True)
class MatrixEvents:
    """Events for one input vector (one token) through one matrix."""

    crossbar_activations: int
    adc_conversions: int
    dac_drives: int
    shift_add_ops: int
    partial_sum_adds: int
    buffer_accesses: int  # input reads + output writes, in buffer_access_bits words
    router_hops: float

    def as_counts(self) -> np.ndarray:
        """[A] action counts in the order of mgen_jax.hw.energy.ACTIONS."""
        counts = np.zeros(NUM_ACTIONS)
        counts[ACTION_INDEX["crossbar_activation"]] = self.crossbar_activations
        counts[ACTION_INDEX["adc_conversion"]] = self.adc_conversions
        counts[ACTION_INDEX["dac_drive"]] = self.dac_drives
        counts[ACTION_INDEX["shift_add"]] = self.shift_add_ops
        counts[ACTION_INDEX["partial_sum_add"]] = self.partial_sum_adds
        counts[ACTION_INDEX["buffer_access"]] = self.buffer_accesses
        counts[ACTION_INDEX["router_hop"]] = self.router_hops
        return counts


def _check_dims(k: int, n: int) -> None:
    for label, value in (("k (inputs)", k), ("n (outputs)", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ConfigError(f"matrix dimension {label} must be a positive integer, got {value!r}")


def map_matrix(spec: HardwareSpec, k: int, n: int) -> MatrixMapping:
    """Map a K x N weight matrix: rb = ceil(K / R) row blocks, cb = ceil(N * s / C) column blocks."""
    _check_dims(k, n)
    used_columns = int(n) * spec.columns_per_weight
    row_blocks = math.ceil(k / spec.crossbar_rows)
    col_blocks = math.ceil(used_columns / spec.crossbar_cols)
    last = used_columns - (col_blocks - 1) * spec.crossbar_cols
    return MatrixMapping(int(k), int(n), row_blocks, col_blocks, used_columns, last)


def matrix_events(spec: HardwareSpec, k: int, n: int) -> MatrixEvents:
    """Per-token event counts of a K x N matrix on ``spec``.

    With a = input cycles (input_bits / dac_bits), rb, cb the row/column blocks and s the columns per weight:
    activations a * rb * cb; ADC conversions a * rb * N * s (or a * rb * cb * C when every column is converted);
    DAC drives a * cb * K; shift-and-add a * rb * N * s; partial-sum additions (rb - 1) * N; buffer accesses
    ceil(K * input_bits / W) + ceil(N * output_bits / W) for a W-bit buffer word; router hops
    ceil(N * output_bits / flit_bits) * hops_per_transfer.
    """
    m = map_matrix(spec, k, n)
    a = spec.input_cycles
    converted = m.col_blocks * spec.crossbar_cols if spec.adc_convert_all_columns else m.used_columns
    buffer_words = math.ceil(k * spec.input_bits / spec.buffer_access_bits) + math.ceil(
        n * spec.output_bits / spec.buffer_access_bits
    )
    flits = math.ceil(n * spec.output_bits / spec.router_flit_bits)
    return MatrixEvents(
        crossbar_activations=a * m.crossbars,
        adc_conversions=a * m.row_blocks * converted,
        dac_drives=a * m.col_blocks * m.k,
        shift_add_ops=a * m.row_blocks * m.used_columns,
        partial_sum_adds=(m.row_blocks - 1) * m.n,
        buffer_accesses=buffer_words,
        router_hops=flits * spec.router_hops_per_transfer,
    )
