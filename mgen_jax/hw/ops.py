"""The operations of each part of a BERT encoder, and their action counts as a polynomial in the token count n.

A part is a sharing unit (attention or FFN block), the embedding (always shared) or a task head (never shared).
Each part is a tuple of operations:

- ``MatrixOp``: a K x N weight matrix mapped on crossbars, applied to every token (``per_sequence=False``) or once
  per sequence (the head, on the [CLS] token);
- ``DigitalOp``: CMOS work beside the crossbars (attention products, softmax, LayerNorm, GELU, residuals) or buffer
  reads (embedding lookup), with counts c0 + c1 * n + c2 * n^2.

``part_coefficients`` gives the [3, A] count coefficients (powers 0, 1, 2 of n) of a part; the cost model uses them
with E[n] and E[n^2]. The simulator instead executes the operations for each request's own n (``op_counts``).

A matrix's input bit density (measured, hw/density.py) is an attribute of its ``MatrixOp``, set by ``model_parts``
from an ``InputDensities``: the cost model and the simulator see the same counts.

A private unit copy stored as base + compressed delta (hw/delta.py) runs its unit's operations (the base pass) plus
one ``DeltaOp`` per matrix (the delta pass over the kept blocks and the digital merge): ``delta_ops`` builds them.
"""

from __future__ import annotations

import dataclasses
import math
import numpy as np

from mgen_jax.errors import ConfigError

from mgen_jax.hw.arch import ATTENTION, BertArch
from mgen_jax.hw.delta import DeltaPlan, DeltaUnit, check_kept_blocks, delta_counts, delta_grid, delta_storage
from mgen_jax.hw.density import HEAD_PART, InputDensities, matrix_key
from mgen_jax.hw.energy import ACTION_INDEX, NUM_ACTIONS
from mgen_jax.hw.mapping import map_matrix, matrix_events
from mgen_jax.hw.spec import HardwareSpec


@dataclasses.dataclass(frozen=True, slots=True)
class MatrixOp:
    name: str
    k: int
    n: int
    stage: int  # matrices of the same stage run in parallel; stages run one after another
    per_sequence: bool = False
    input_bit_density: float | None = None  # None: the spec's default (used only with data-dependent inputs)

    def events(self, spec: HardwareSpec):
        return matrix_events(spec, self.k, self.n, self.input_bit_density)


@dataclasses.dataclass(frozen=True, slots=True)
class DigitalOp:
    """Counts of one action: per_sequence + per_token * n + per_token_pair * n^2."""

    name: str
    action: str
    per_sequence: float = 0.0
    per_token: float = 0.0
    per_token_pair: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class DeltaOp:
    """The delta pass of a base + delta matrix (hw/delta.py): the kept crossbar blocks of a K x N delta at
    ``delta_bits``, applied to every token on its base matrix's input, and the digital merge of the two outputs."""

    name: str
    k: int
    n: int
    delta_bits: int
    kept_blocks: tuple[int, ...]
    stage: int
    input_bit_density: float | None = None

    def counts(self, spec: HardwareSpec) -> np.ndarray:
        """[A] action counts per token."""
        return delta_counts(spec, self.k, self.n, self.delta_bits, self.kept_blocks, self.input_bit_density)

    def storage(self, spec: HardwareSpec) -> tuple[int, int]:
        """(crossbars, weight cells) of the kept blocks."""
        return delta_storage(spec, self.k, self.n, self.delta_bits, self.kept_blocks)


Op = MatrixOp | DigitalOp | DeltaOp


def unit_ops(spec: HardwareSpec, arch: BertArch, kind: str) -> tuple[Op, ...]:
    """Operations of one attention or FFN block (per sequence of n tokens)."""
    h, f = arch.hidden, arch.ffn
    norm = (
        DigitalOp("residual", "digital_op", per_token=h * spec.residual_ops_per_element),
        DigitalOp("layernorm", "digital_op", per_token=h * spec.layernorm_ops_per_element),
    )
    if kind == ATTENTION:
        return (
            MatrixOp("query", h, h, stage=0),
            MatrixOp("key", h, h, stage=0),
            MatrixOp("value", h, h, stage=0),
            DigitalOp("scores_qk", "digital_mac", per_token_pair=h),
            DigitalOp("softmax", "digital_op", per_token_pair=arch.num_heads * spec.softmax_ops_per_element),
            DigitalOp("weighted_sum_av", "digital_mac", per_token_pair=h),
            MatrixOp("output", h, h, stage=1),
        ) + norm
    return (
        MatrixOp("ffn_in", h, f, stage=0),
        DigitalOp("gelu", "digital_op", per_token=f * spec.gelu_ops_per_element),
        MatrixOp("ffn_out", f, h, stage=1),
    ) + norm


def embedding_ops(spec: HardwareSpec, arch: BertArch) -> tuple[Op, ...]:
    """Word + position + token-type lookups (buffer reads), their sum and the embedding LayerNorm."""
    words_per_row = math.ceil(arch.hidden * spec.input_bits / spec.buffer_access_bits)
    return (
        DigitalOp("lookup", "buffer_access", per_token=3 * words_per_row),
        DigitalOp("sum", "digital_op", per_token=2 * arch.hidden),
        DigitalOp("layernorm", "digital_op", per_token=arch.hidden * spec.layernorm_ops_per_element),
    )


def head_ops(spec: HardwareSpec, arch: BertArch, num_labels: int) -> tuple[Op, ...]:
    """A task head: mean pooling over the tokens (n x H adds), then pooler (H x H, tanh) and classifier
    (H x num_labels) once per sequence (mgen_jax.model's ClassificationHead)."""
    h = arch.hidden
    return (
        DigitalOp("mean_pool", "digital_op", per_token=h, per_sequence=h),
        MatrixOp("pooler", h, h, stage=0, per_sequence=True),
        DigitalOp("tanh", "digital_op", per_sequence=h * spec.tanh_ops_per_element),
        MatrixOp("classifier", h, num_labels, stage=1, per_sequence=True),
    )


def op_counts(spec: HardwareSpec, op: Op, tokens: np.ndarray) -> np.ndarray:
    """Action counts [R, A] of one operation for R sequences of ``tokens[r]`` tokens."""
    n = np.asarray(tokens, dtype=np.float64)
    out = np.zeros(n.shape + (NUM_ACTIONS,))
    if isinstance(op, MatrixOp):
        per_vector = op.events(spec).as_counts()
        vectors = np.ones_like(n) if op.per_sequence else n
        out += vectors[..., None] * per_vector
    elif isinstance(op, DeltaOp):
        out += n[..., None] * op.counts(spec)
    else:
        out[..., ACTION_INDEX[op.action]] = op.per_sequence + op.per_token * n + op.per_token_pair * n * n
    return out


def part_coefficients(spec: HardwareSpec, ops: tuple[Op, ...]) -> np.ndarray:
    """[3, A] coefficients c such that counts(n) = c[0] + c[1] * n + c[2] * n^2."""
    coef = np.zeros((3, NUM_ACTIONS))
    for op in ops:
        if isinstance(op, MatrixOp):
            coef[0 if op.per_sequence else 1] += op.events(spec).as_counts()
        elif isinstance(op, DeltaOp):
            coef[1] += op.counts(spec)
        else:
            a = ACTION_INDEX[op.action]
            coef[0, a] += op.per_sequence
            coef[1, a] += op.per_token
            coef[2, a] += op.per_token_pair
    return coef


def part_crossbars(spec: HardwareSpec, ops: tuple[Op, ...]) -> int:
    """Crossbars a part stores (a DeltaOp: its kept blocks)."""
    return sum(map_matrix(spec, op.k, op.n).crossbars for op in ops if isinstance(op, MatrixOp)) + sum(
        op.storage(spec)[0] for op in ops if isinstance(op, DeltaOp))


def part_cells(spec: HardwareSpec, ops: tuple[Op, ...]) -> int:
    """Weight-holding cells of a part (what a reprogramming writes)."""
    return sum(map_matrix(spec, op.k, op.n).cells for op in ops if isinstance(op, MatrixOp)) + sum(
        op.storage(spec)[1] for op in ops if isinstance(op, DeltaOp))


def delta_ops(spec: HardwareSpec, unit_ops: tuple[Op, ...], delta: DeltaUnit, where: str = "") -> tuple[DeltaOp, ...]:
    """The delta passes of a unit stored as base + ``delta``: one DeltaOp per crossbar matrix of ``unit_ops`` (same
    dims, stage and input density as the base matrix). ConfigError naming ``where`` and the matrix if the matrices
    differ, a delta's bits are out of range or a kept block lies outside its grid on ``spec``."""
    matrices = [op for op in unit_ops if isinstance(op, MatrixOp)]
    names = sorted(op.name for op in matrices)
    if sorted(m.name for m in delta.matrices) != names:
        raise ConfigError(f"delta unit{where} lists matrices {sorted(m.name for m in delta.matrices)}, the unit has "
                          f"{names}")
    out = []
    for op in matrices:
        m = delta.matrix(op.name)
        try:
            grid = delta_grid(spec, op.k, op.n, m.delta_bits)
            kept = check_kept_blocks(grid, m.kept_blocks)
        except ConfigError as exc:
            raise ConfigError(f"delta unit{where}, matrix {op.name!r}: {exc}") from None
        out.append(DeltaOp(op.name, op.k, op.n, grid.delta_bits, kept, op.stage, op.input_bit_density))
    return tuple(out)


def part_weight_bits(spec: HardwareSpec, ops: tuple[Op, ...]) -> int:
    return sum(op.k * op.n * spec.weight_bits for op in ops if isinstance(op, MatrixOp))


def part_latency_coefficients(spec: HardwareSpec, ops: tuple[Op, ...]) -> tuple[float, float]:
    """Latency estimate l(n) = l0 + l1 * n in ns.

    Tokens stream through the part's matrix stages as a pipeline, so n tokens through d stages take
    (n + d - 1) stage times (d - 1 + 1 = d for once-per-sequence parts); digital work is assumed hidden.
    """
    stages = {op.stage for op in ops if isinstance(op, MatrixOp)}
    if not stages:
        return 0.0, 0.0
    d = len(stages)
    t = spec.stage_latency_ns
    if all(op.per_sequence for op in ops if isinstance(op, MatrixOp)):
        return d * t, 0.0
    return (d - 1) * t, t


def model_parts(spec: HardwareSpec, arch: BertArch, num_labels: tuple[int, ...],
                densities: InputDensities | None = None) -> "ModelParts":
    """The operations of every part of a T-task model on ``arch``; with ``densities``, every matrix carries its
    measured input bit density (keys ``matrix_key(part, op)``; ConfigError naming any matrix it lacks)."""
    units = tuple(unit_ops(spec, arch, u.kind) for u in arch.units())
    heads = tuple(head_ops(spec, arch, c) for c in num_labels)
    if densities is not None:
        densities.check_spec(spec)
        units = tuple(_with_densities(ops, u.name, densities) for ops, u in zip(units, arch.units()))
        heads = tuple(_with_densities(ops, HEAD_PART, densities) for ops in heads)
    return ModelParts(units=units, embedding=embedding_ops(spec, arch), heads=heads)


def matrix_keys(spec: HardwareSpec, arch: BertArch) -> list[str]:
    """The density key of every crossbar matrix of ``arch``'s units and of a task head, in execution order."""
    parts = model_parts(spec, arch, (1,))
    keys = [matrix_key(u.name, op.name) for u, ops in zip(arch.units(), parts.units) for op in ops
            if isinstance(op, MatrixOp)]
    return keys + [matrix_key(HEAD_PART, op.name) for op in parts.heads[0] if isinstance(op, MatrixOp)]


def _with_densities(ops: tuple[Op, ...], part: str, densities: InputDensities) -> tuple[Op, ...]:
    return tuple(
        dataclasses.replace(op, input_bit_density=densities.density(matrix_key(part, op.name)))
        if isinstance(op, MatrixOp) else op
        for op in ops
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ModelParts:
    units: tuple[tuple[Op, ...], ...]
    embedding: tuple[Op, ...]
    heads: tuple[tuple[Op, ...], ...]


def plan_delta_ops(spec: HardwareSpec, parts: ModelParts, plan: DeltaPlan) -> dict[tuple[int, int], tuple[DeltaOp, ...]]:
    """The delta passes of every entry of ``plan`` (checked against the model's tasks, units and ``spec``)."""
    plan.check(spec, len(parts.heads), len(parts.units))
    return {(t, u): delta_ops(spec, parts.units[u], entry, f" of task {t} at unit {u}")
            for (t, u), entry in sorted(plan.units.items())}
