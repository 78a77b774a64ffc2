"""Base + compressed delta nodes (DESIGN.md section 12): what they store and what one execution counts.

A task's private copy of unit u may be stored as a **base** (a weight set stored once on crossbars: the pretrained
unit, or the shared trunk's unit) plus the task's **delta**, compressed at crossbar granularity:

- the delta of a K x N matrix is cut into crossbar **blocks** (``DeltaGrid``): R rows x floor(C / s) weights, where
  s is the delta's columns per weight, ceil(delta_bits / cell_bits) (doubled for a differential encoding); a block
  is exactly what one crossbar holds (128 x 32 weights at 8 bits on ISAAC, 128 x 64 at 4 bits, 128 x 128 at 2 bits);
- only the **kept blocks** are stored, each on one crossbar, at ``delta_bits`` per weight;
- an execution runs the base matrix (every crossbar of it, as an uncompressed copy would), the delta pass (the kept
  blocks, on the same input) and a digital merge of the two outputs (``delta_merge_ops_per_element`` digital ops per
  output element that a kept block covers: the delta's column scale, then the add).

Which copies are compressed is a separate structure from the sharing tree: a ``DeltaPlan`` holds the one-trunk model
it applies to (its branch points) and, per (task, unit), a ``DeltaUnit`` (base kind, one ``DeltaMatrix`` per crossbar
matrix of the unit: delta bits and kept blocks). An entry applies to the task's own copy of the unit, so an entry at a
unit the task runs on the trunk (u < b_t) is inert in the simulator (the cost model weighs it by 1 - p[t, u]).

Storage: a pretrained base at unit u is stored once if any active entry at u uses it; a trunk base is the trunk's node
at u when the tree has one (some b_t > u), else the trunk's unit is stored once for the deltas. Every base is
time-shared by the passes that use it: a request whose k tasks run the same base at a unit streams k x n tokens
through it (latency; the energy is counted per pass).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.io import describe_value
from mgen_jax.hw.energy import ACTION_INDEX
from mgen_jax.hw.mapping import MatrixEvents, effective_input_density
from mgen_jax.hw.spec import HardwareSpec

FORMAT = "mgen_jax compressed deltas, v1"
BASE_KINDS = ("pretrained", "trunk")
# the spec fields the block grid depends on: a plan is only valid on specs that agree on them
GRID_FIELDS = ("crossbar_rows", "crossbar_cols", "cell_bits", "weight_bits", "signed_encoding")
# the encoder dims a plan's blocks were cut for: a plan is only valid on a model that agrees on them
MODEL_FIELDS = ("num_layers", "hidden", "num_heads", "ffn")


def model_fields(arch: Any) -> dict[str, int]:
    """The ``MODEL_FIELDS`` of a BertArch (what a plan records of the model it was made for)."""
    return {k: int(getattr(arch, k)) for k in MODEL_FIELDS}


@dataclasses.dataclass(frozen=True, slots=True)
class DeltaGrid:
    """The crossbar blocks of a K x N delta stored at ``delta_bits``: block (i, j) holds rows
    [i R, min(K, (i + 1) R)) and weight columns [j w, min(N, (j + 1) w)), w = ``weights_per_block``; blocks are
    numbered row-major, i * col_blocks + j."""

    k: int
    n: int
    delta_bits: int
    rows_per_block: int
    weights_per_block: int
    columns_per_weight: int

    @property
    def row_blocks(self) -> int:
        return math.ceil(self.k / self.rows_per_block)

    @property
    def col_blocks(self) -> int:
        return math.ceil(self.n / self.weights_per_block)

    @property
    def num_blocks(self) -> int:
        return self.row_blocks * self.col_blocks

    def block_rows(self) -> np.ndarray:
        """[row_blocks] rows in each row block."""
        starts = np.arange(self.row_blocks) * self.rows_per_block
        return np.minimum(self.k - starts, self.rows_per_block)

    def block_weights(self) -> np.ndarray:
        """[col_blocks] weight columns in each column block."""
        starts = np.arange(self.col_blocks) * self.weights_per_block
        return np.minimum(self.n - starts, self.weights_per_block)

    def block_slices(self, index: int) -> tuple[slice, slice]:
        """(rows, weight columns) of block ``index`` in the K x N matrix."""
        i, j = divmod(int(index), self.col_blocks)
        r, w = self.rows_per_block, self.weights_per_block
        return slice(i * r, min(self.k, (i + 1) * r)), slice(j * w, min(self.n, (j + 1) * w))

    def block_mask(self, kept: Sequence[int]) -> np.ndarray:
        """[K, N] bool: True where a kept block holds the weight."""
        mask = np.zeros((self.k, self.n), dtype=bool)
        for b in kept:
            rows, cols = self.block_slices(b)
            mask[rows, cols] = True
        return mask


def delta_columns_per_weight(spec: HardwareSpec, delta_bits: int) -> int:
    """Crossbar columns one delta weight of ``delta_bits`` takes: ceil(bits / cell_bits), x 2 if differential."""
    return math.ceil(delta_bits / spec.cell_bits) * (2 if spec.signed_encoding == "differential" else 1)


def check_delta_bits(spec: HardwareSpec, delta_bits: Any, where: str = "") -> int:
    if isinstance(delta_bits, bool) or not isinstance(delta_bits, (int, np.integer)) or not (
            2 <= delta_bits <= spec.weight_bits):
        raise ConfigError(f"delta_bits{where} must be an integer in 2..{spec.weight_bits} (the spec's weight_bits; "
                          f"2 bits is a ternary delta), got {delta_bits!r}")
    if delta_columns_per_weight(spec, int(delta_bits)) > spec.crossbar_cols:
        raise ConfigError(f"delta_bits{where} {delta_bits}: one weight would take more columns than a crossbar has")
    return int(delta_bits)


def delta_grid(spec: HardwareSpec, k: int, n: int, delta_bits: int) -> DeltaGrid:
    """The block grid of a K x N delta at ``delta_bits`` on ``spec`` (a block never splits a weight's slices)."""
    bits = check_delta_bits(spec, delta_bits)
    s = delta_columns_per_weight(spec, bits)
    return DeltaGrid(int(k), int(n), bits, spec.crossbar_rows, spec.crossbar_cols // s, s)


def check_kept_blocks(grid: DeltaGrid, kept: Sequence[int], where: str = "") -> tuple[int, ...]:
    """Sorted, unique block indices inside the grid; ConfigError naming ``where`` otherwise."""
    values = tuple(int(b) for b in kept)
    if any(isinstance(b, bool) for b in kept) or sorted(set(values)) != list(values):
        raise ConfigError(f"kept_blocks{where} must be sorted, unique block indices, got {list(kept)[:8]}...")
    if values and not 0 <= values[0] <= values[-1] < grid.num_blocks:
        raise ConfigError(f"kept_blocks{where} must lie in 0..{grid.num_blocks - 1} ({grid.row_blocks} x "
                          f"{grid.col_blocks} blocks at {grid.delta_bits} bits), got {values[0]}..{values[-1]}")
    return values


def delta_events(spec: HardwareSpec, k: int, n: int, delta_bits: int, kept: Sequence[int],
                 input_bit_density: float | None = None) -> tuple[MatrixEvents, int]:
    """Per-token events of a delta pass over the kept blocks, and the output elements it covers (merged digitally).

    With a = input cycles, d the input density, and per kept block b its rows r_b and used columns c_b (its weights x
    s): activations a x |kept|; conducting cells d a sum r_b c_b; ADC conversions a sum c_b (a |kept| C when every
    column is converted); DAC drives d a sum r_b; input latches a sum r_b; shift-and-add a sum c_b; partial-sum
    additions sum over column blocks of (kept blocks in it - 1) x its weights; buffer accesses for the covered input
    rows (row blocks with a kept block) and covered outputs (column blocks with a kept block); router hops for the
    covered outputs. No kept block: no pass at all.
    """
    grid = delta_grid(spec, k, n, delta_bits)
    blocks = np.asarray(check_kept_blocks(grid, kept), dtype=np.int64)
    if blocks.size == 0:
        return MatrixEvents(0, 0, 0.0, 0, 0, 0, 0.0, 0, 0.0), 0
    a = spec.input_cycles
    d = effective_input_density(spec, input_bit_density)
    i, j = np.divmod(blocks, grid.col_blocks)
    rows = grid.block_rows()[i]
    cols = grid.block_weights()[j] * grid.columns_per_weight
    per_col_block = np.bincount(j, minlength=grid.col_blocks)
    covered_rows = int(grid.block_rows()[np.unique(i)].sum())
    covered_outputs = int(grid.block_weights()[np.unique(j)].sum())
    converted = len(blocks) * spec.crossbar_cols if spec.adc_convert_all_columns else int(cols.sum())
    buffer_words = math.ceil(covered_rows * spec.input_bits / spec.buffer_access_bits) + math.ceil(
        covered_outputs * spec.output_bits / spec.buffer_access_bits)
    flits = math.ceil(covered_outputs * spec.output_bits / spec.router_flit_bits)
    events = MatrixEvents(
        crossbar_activations=a * len(blocks),
        adc_conversions=a * converted,
        dac_drives=d * (a * int(rows.sum())),
        shift_add_ops=a * int(cols.sum()),
        partial_sum_adds=int((np.maximum(per_col_block - 1, 0) * grid.block_weights()).sum()),
        buffer_accesses=buffer_words,
        router_hops=flits * spec.router_hops_per_transfer,
        input_latches=a * int(rows.sum()),
        cell_reads=d * (a * int((rows * cols).sum())),
    )
    return events, covered_outputs


def delta_counts(spec: HardwareSpec, k: int, n: int, delta_bits: int, kept: Sequence[int],
                 input_bit_density: float | None = None) -> np.ndarray:
    """[A] action counts of one token through a delta pass, its digital merge included."""
    events, outputs = delta_events(spec, k, n, delta_bits, kept, input_bit_density)
    counts = events.as_counts()
    counts[ACTION_INDEX["digital_op"]] += spec.delta_merge_ops_per_element * outputs
    return counts


def delta_storage(spec: HardwareSpec, k: int, n: int, delta_bits: int, kept: Sequence[int]) -> tuple[int, int]:
    """(crossbars, weight cells) of the kept blocks: one crossbar each; cells = rows x used columns."""
    grid = delta_grid(spec, k, n, delta_bits)
    blocks = np.asarray(check_kept_blocks(grid, kept), dtype=np.int64)
    if blocks.size == 0:
        return 0, 0
    i, j = np.divmod(blocks, grid.col_blocks)
    cells = grid.block_rows()[i] * grid.block_weights()[j] * grid.columns_per_weight
    return int(blocks.size), int(cells.sum())


# ----- the plan --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class DeltaMatrix:
    """One crossbar matrix's delta: its op name (hw/ops.py: query, key, value, output, ffn_in, ffn_out), bits per
    delta weight and the kept blocks of its grid (``delta_grid``)."""

    name: str
    delta_bits: int
    kept_blocks: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class DeltaUnit:
    """A private unit copy stored as base + delta: the base kind and one DeltaMatrix per crossbar matrix."""

    base: str
    matrices: tuple[DeltaMatrix, ...]

    def __post_init__(self) -> None:
        if self.base not in BASE_KINDS:
            raise ConfigError(f"delta unit field 'base' must be one of {BASE_KINDS}, got {self.base!r}")
        names = [m.name for m in self.matrices]
        if len(set(names)) != len(names):
            raise ConfigError(f"delta unit lists a matrix twice: {names}")

    def matrix(self, name: str) -> DeltaMatrix:
        for m in self.matrices:
            if m.name == name:
                return m
        raise ConfigError(f"delta unit has no matrix {name!r} (it has {[m.name for m in self.matrices]})")


@dataclasses.dataclass(frozen=True)
class DeltaPlan:
    """Which private unit copies of a one-trunk model are stored as base + delta.

    ``branch_points`` is the model (task t runs the trunk for units 0..b_t-1); ``units`` maps (task, unit) to its
    DeltaUnit; ``grid`` holds the spec fields the block indices were made for (``GRID_FIELDS``; empty: not checked);
    ``model`` the dims of the encoder whose matrices the blocks cut (``MODEL_FIELDS``) and ``tasks`` the task names in
    order (both empty in a plan written before they were recorded: ``check_model`` then refuses it).
    """

    branch_points: tuple[int, ...]
    units: Mapping[tuple[int, int], DeltaUnit]
    grid: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, int] = dataclasses.field(default_factory=dict)
    tasks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        b = tuple(self.branch_points)
        if not b or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0 for x in b):
            raise ConfigError(f"delta plan field 'branch_points' must be integers >= 0, one per task, got {list(b)}")
        for key in self.units:
            t, u = key
            if not 0 <= t < len(b) or u < 0:
                raise ConfigError(f"delta plan entry (task {t}, unit {u}) is outside the {len(b)}-task model")
        object.__setattr__(self, "branch_points", tuple(int(x) for x in b))
        unknown = sorted(set(self.grid) - set(GRID_FIELDS))
        if unknown:
            raise ConfigError(f"delta plan field 'grid' has unknown fields {unknown}; known: {list(GRID_FIELDS)}")
        unknown = sorted(str(k) for k in set(self.model) - set(MODEL_FIELDS))
        if unknown:
            raise ConfigError(f"delta plan field 'model' has unknown fields {unknown}; known: {list(MODEL_FIELDS)}")
        if self.tasks and (len(self.tasks) != len(b) or not all(isinstance(t, str) for t in self.tasks)):
            raise ConfigError(f"delta plan field 'tasks' must name one task per branch point ({len(b)}), got "
                              f"{len(self.tasks)} entries")
        object.__setattr__(self, "tasks", tuple(self.tasks))

    @property
    def num_tasks(self) -> int:
        return len(self.branch_points)

    def active(self) -> dict[tuple[int, int], DeltaUnit]:
        """The entries the discrete model stores: (t, u) with u >= b_t (its own copies)."""
        return {(t, u): e for (t, u), e in self.units.items() if u >= self.branch_points[t]}

    def trunk_present(self, unit: int) -> bool:
        """Whether the tree has a trunk node at ``unit`` (some task runs it)."""
        return any(b > unit for b in self.branch_points)

    def check(self, spec: HardwareSpec, num_tasks: int, num_units: int) -> None:
        """ConfigError unless the plan fits ``num_tasks`` tasks, ``num_units`` units and ``spec``'s block grid."""
        if self.num_tasks != num_tasks:
            raise ConfigError(f"delta plan has {self.num_tasks} tasks (branch_points), the model {num_tasks}")
        bad = [b for b in self.branch_points if b > num_units]
        if bad or any(u >= num_units for _, u in self.units):
            raise ConfigError(f"delta plan does not fit a model of {num_units} units (branch points "
                              f"{list(self.branch_points)}, units up to {max((u for _, u in self.units), default=0)})")
        for field, value in self.grid.items():
            if getattr(spec, field) != value:
                raise ConfigError(f"delta plan blocks were cut for {field} {value!r}, but hardware spec "
                                  f"{spec.name!r} has {field} {getattr(spec, field)!r}")

    def check_model(self, arch: Any, task_names: Sequence[str] | None, *, where: str = "delta plan") -> None:
        """ConfigError unless the plan was made for ``arch``'s dims and (when given) these task names in this order;
        a plan that does not record them (written before they were) is refused, since nothing else ties it to a
        model: its blocks would be applied to any encoder with enough units."""
        if not self.model:
            raise ConfigError(f"{where}: the plan does not record the model and tasks it was made for (written by an "
                              "older version); run mgen compress again")
        ours = model_fields(arch)
        differ = [f"{k} {self.model.get(k)} in the plan, {ours[k]} in --model" for k in MODEL_FIELDS
                  if self.model.get(k) != ours[k]]
        if differ:
            raise ConfigError(f"{where} was made for another model: {'; '.join(differ)}")
        if task_names is not None and self.tasks and tuple(task_names) != self.tasks:
            raise ConfigError(f"{where} was made for tasks {list(self.tasks)}, --tasks names {list(task_names)}")

    def base_users(self, unit: int, kind: str, task_set: Sequence[int] | None = None) -> list[int]:
        """Tasks (of ``task_set``, default all) whose active entry at ``unit`` uses base ``kind``."""
        tasks = range(self.num_tasks) if task_set is None else task_set
        active = self.active()
        return [t for t in tasks if (t, unit) in active and active[(t, unit)].base == kind]

    def stored_bases(self, num_units: int) -> list[tuple[int, str]]:
        """(unit, kind) of the base weight sets stored for the deltas beyond the tree's own nodes: a pretrained base
        used at u, and a trunk base used at u where the tree has no trunk node."""
        out = []
        for u in range(num_units):
            if self.base_users(u, "pretrained"):
                out.append((u, "pretrained"))
            if self.base_users(u, "trunk") and not self.trunk_present(u):
                out.append((u, "trunk"))
        return out

    def trunk_base_units(self, num_units: int) -> list[int]:
        """Units whose trunk node is also a base of some delta (it must stay resident when scheduled)."""
        return [u for u in range(num_units) if self.trunk_present(u) and self.base_users(u, "trunk")]

    def base_passes(self, unit: int, task_set: Sequence[int]) -> int:
        """The most passes any one stored weight set at ``unit`` makes for a request needing ``task_set``: a base
        serves each of its delta tasks (and the trunk node its sharing tasks once); 1 when nothing is shared."""
        tasks = list(task_set)
        trunk_runs = int(any(self.branch_points[t] > unit for t in tasks))
        pre = len(self.base_users(unit, "pretrained", tasks))
        trunk = trunk_runs + len(self.base_users(unit, "trunk", tasks))
        return max(1, pre, trunk)

    # ----- files -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        identity = ({"model": dict(self.model)} if self.model else {}) | ({"tasks": list(self.tasks)} if self.tasks
                                                                          else {})
        return {
            "format": FORMAT, "branch_points": list(self.branch_points), "grid": dict(self.grid), **identity,
            "deltas": [
                {"task": t, "unit": u, "base": e.base,
                 "matrices": {m.name: {"delta_bits": m.delta_bits, "kept_blocks": list(m.kept_blocks)}
                              for m in e.matrices}}
                for (t, u), e in sorted(self.units.items())
            ],
        }


def plan_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> DeltaPlan:
    """The inverse of ``DeltaPlan.to_dict``; ConfigError naming ``source`` and the field on malformed input."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ConfigError(f"{source}: not a compressed-delta description (field 'format' must be {FORMAT!r})")
    for field, kind in (("branch_points", list), ("deltas", list), ("grid", dict)):
        if not isinstance(data.get(field), kind):
            raise ConfigError(f"{source}: field '{field}' must be a {kind.__name__}, got "
                              f"{describe_value(data.get(field))}")
    model, tasks = data.get("model", {}), data.get("tasks", [])
    if not isinstance(model, Mapping) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in model.values()):
        raise ConfigError(f"{source}: field 'model' must map {list(MODEL_FIELDS)} to integers, got "
                          f"{describe_value(model)}")
    if not isinstance(tasks, list):
        raise ConfigError(f"{source}: field 'tasks' must be a list of task names, got {describe_value(tasks)}")
    units: dict[tuple[int, int], DeltaUnit] = {}
    for i, entry in enumerate(data["deltas"]):
        where = f"{source}: deltas[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("matrices"), Mapping):
            raise ConfigError(f"{where}: needs fields 'task', 'unit', 'base' and 'matrices' (a mapping)")
        t, u = entry.get("task"), entry.get("unit")
        if any(isinstance(x, bool) or not isinstance(x, int) for x in (t, u)):
            raise ConfigError(f"{where}: fields 'task' and 'unit' must be integers, got {t!r}, {u!r}")
        if (t, u) in units:
            raise ConfigError(f"{where}: (task {t}, unit {u}) is listed twice")
        matrices = []
        for name, m in entry["matrices"].items():
            if not isinstance(m, Mapping) or not isinstance(m.get("kept_blocks"), list):
                raise ConfigError(f"{where}.matrices.{name}: needs 'delta_bits' and 'kept_blocks' (a list)")
            matrices.append(DeltaMatrix(str(name), m.get("delta_bits"), tuple(m["kept_blocks"])))
        try:
            units[(t, u)] = DeltaUnit(entry.get("base"), tuple(matrices))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    try:
        return DeltaPlan(tuple(data["branch_points"]), units, dict(data["grid"]), dict(model), tuple(tasks))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_delta_plan(path) -> DeltaPlan:
    """A plan from a JSON file: a plan itself or a compression report holding one under 'plan'."""
    from mgen_jax.io import read_json_file

    data = read_json_file(path, "compressed-model description")
    if isinstance(data, Mapping) and "plan" in data:
        data = data["plan"]
    return plan_from_dict(data, source=str(path))


def grid_fields(spec: HardwareSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in GRID_FIELDS}

