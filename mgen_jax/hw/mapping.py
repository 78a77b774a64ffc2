"""Crossbar mapping of a K x N weight matrix and its per-token event counts (DESIGN.md section 3)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.energy import ACTION_INDEX, NUM_ACTIONS, by_component, counts_to_energy_j
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
    """Events for one input vector (one token) through one matrix. ``dac_drives`` and ``cell_reads`` are expected
    counts (input density x slots) when the spec's inputs are data-dependent."""

    crossbar_activations: int
    adc_conversions: int
    dac_drives: float  # rows driven with a non-zero input, over every crossbar and input cycle
    shift_add_ops: int
    partial_sum_adds: int
    buffer_accesses: int  # input reads + output writes, in buffer_access_bits words
    router_hops: float
    input_latches: int = 0  # row slots (row x column block x input cycle), driven or not
    cell_reads: float = 0.0  # conducting cells: driven rows x used columns

    def as_counts(self) -> np.ndarray:
        """[A] action counts in the order of mgen_jax.hw.energy.ACTIONS."""
        counts = np.zeros(NUM_ACTIONS)
        counts[ACTION_INDEX["crossbar_activation"]] = self.crossbar_activations
        counts[ACTION_INDEX["cell_read"]] = self.cell_reads
        counts[ACTION_INDEX["adc_conversion"]] = self.adc_conversions
        counts[ACTION_INDEX["dac_drive"]] = self.dac_drives
        counts[ACTION_INDEX["input_latch"]] = self.input_latches
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


def effective_input_density(spec: HardwareSpec, input_bit_density: float | None = None) -> float:
    """The fraction of row slots driven: 1 when the spec's inputs are not data-dependent (every row in every cycle,
    whatever density is given), else ``input_bit_density`` (default: the spec's ``input_bit_density_default``)."""
    if not spec.data_dependent_inputs:
        return 1.0
    d = spec.input_bit_density_default if input_bit_density is None else input_bit_density
    if isinstance(d, bool) or not isinstance(d, (int, float, np.floating)) or not 0.0 <= float(d) <= 1.0:
        raise ConfigError(f"input bit density must be a number in [0, 1], got {d!r}")
    return float(d)


def matrix_events(spec: HardwareSpec, k: int, n: int, input_bit_density: float | None = None) -> MatrixEvents:
    """Per-token event counts of a K x N matrix on ``spec``.

    With a = input cycles (driven input bits / dac_bits), rb, cb the row/column blocks, s the columns per weight and
    d the input density (``effective_input_density``: 1 unless the spec's inputs are data-dependent):
    activations a * rb * cb; conducting cells d * a * K * N * s; ADC conversions a * rb * N * s (or a * rb * cb * C
    when every column is converted); DAC drives d * a * cb * K; input latches a * cb * K; shift-and-add
    a * rb * N * s; partial-sum additions (rb - 1) * N; buffer accesses ceil(K * input_bits / W) +
    ceil(N * output_bits / W) for a W-bit buffer word; router hops ceil(N * output_bits / flit_bits) *
    hops_per_transfer.
    """
    m = map_matrix(spec, k, n)
    a = spec.input_cycles
    d = effective_input_density(spec, input_bit_density)
    converted = m.col_blocks * spec.crossbar_cols if spec.adc_convert_all_columns else m.used_columns
    buffer_words = math.ceil(k * spec.input_bits / spec.buffer_access_bits) + math.ceil(
        n * spec.output_bits / spec.buffer_access_bits
    )
    flits = math.ceil(n * spec.output_bits / spec.router_flit_bits)
    return MatrixEvents(
        crossbar_activations=a * m.crossbars,
        adc_conversions=a * m.row_blocks * converted,
        dac_drives=d * (a * m.col_blocks * m.k),
        shift_add_ops=a * m.row_blocks * m.used_columns,
        partial_sum_adds=(m.row_blocks - 1) * m.n,
        buffer_accesses=buffer_words,
        router_hops=flits * spec.router_hops_per_transfer,
        input_latches=a * m.col_blocks * m.k,
        cell_reads=d * (a * m.k * m.used_columns),
    )


def matrix_energy_j(spec: HardwareSpec, k: int, n: int, *, input_bit_density: float | None = None
                    ) -> dict[str, float]:
    """Energy of one input vector (one token) through a K x N matrix, in J per component (the components of the
    breakdown JSON, mgen_jax.hw.energy.COMPONENTS). ``input_bit_density`` counts only when the spec's inputs are
    data-dependent (``data_dependent_inputs``); default: the spec's ``input_bit_density_default``.

    >>> from mgen_jax import hw
    >>> e = hw.matrix_energy_j(hw.load_spec("isaac"), 768, 768)
    >>> round(e["adc"] * 1e9, 2), round(sum(e.values()) * 1e9, 2)          # nJ per token
    (230.4, 331.6)
    """
    return by_component(counts_to_energy_j(matrix_events(spec, k, n, input_bit_density).as_counts(), spec))
