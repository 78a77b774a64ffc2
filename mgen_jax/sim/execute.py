"""Execute a schedule step by step (mgen_jax.hw.schedule defines its meaning) and count what it costs beyond compute:
crossbar programming (cells written, per-crossbar write counts), buffer occupancy and DRAM traffic.

This is the simulator's own account, one step at a time; the scheduler's solvers compute the same quantities with a
vectorised evaluator, and the tests check that the two agree.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.delta import DeltaPlan
from mgen_jax.hw.ops import model_parts, part_cells, part_crossbars, plan_delta_ops
from mgen_jax.hw.schedule import Schedule, children_of, dfs_steps, groups_of, node_name, root, tree_nodes
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.hw.tree import SharingTree
from mgen_jax.workload.trace import Trace


@dataclasses.dataclass(frozen=True)
class ScheduleExecution:
    """What running one batch (the trace) under a schedule cost beyond compute."""

    loads: int  # programmings of unpinned nodes into the swap region
    cells_written: int  # weight cells written by those loads
    initial_cells: int  # programming the pinned nodes and heads once (before the batch; one-time)
    crossbar_writes: np.ndarray  # [chip crossbars] writes per crossbar, initial programming included
    peak_buffer_bytes: float
    dram_bits: float
    steps: int
    loads_by_node: dict[str, int]

    @property
    def worst_cell_writes(self) -> int:
        return int(self.crossbar_writes.max())


def node_footprints(spec: HardwareSpec, arch: BertArch, tree: SharingTree, num_labels: Sequence[int],
                    compression: DeltaPlan | None = None):
    """Crossbars and weight cells of every tree node, and of the always-resident storage (all heads together).

    With ``compression`` (hw/delta.py), a compressed own node holds its kept delta blocks, and every base is resident
    storage beside the heads (programmed once, never swapped: the deltas of several tasks use it): a stored base,
    and a trunk node that is also a base, whose node then holds nothing of its own (size 0, never loaded)."""
    parts = model_parts(spec, arch, tuple(num_labels))
    crossbars = {n: part_crossbars(spec, parts.units[n[0]]) for n in tree_nodes(tree)}
    cells = {n: part_cells(spec, parts.units[n[0]]) for n in tree_nodes(tree)}
    head_crossbars = sum(part_crossbars(spec, ops) for ops in parts.heads)
    head_cells = sum(part_cells(spec, ops) for ops in parts.heads)
    if compression is not None:
        deltas = plan_delta_ops(spec, parts, compression)
        for (t, u) in compression.active():
            node = (u, frozenset([t]))
            if node not in crossbars:
                raise ConfigError(f"the compressed model's branch points {list(compression.branch_points)} do not "
                                  f"give the sharing tree being scheduled (task {t} has no own node at unit {u})")
            crossbars[node], cells[node] = part_crossbars(spec, deltas[(t, u)]), part_cells(spec, deltas[(t, u)])
        resident = [u for u, _ in compression.stored_bases(tree.num_units)]
        for u in compression.trunk_base_units(tree.num_units):
            trunk = frozenset(t for t, b in enumerate(compression.branch_points) if b > u)  # the trunk's node
            crossbars[(u, trunk)], cells[(u, trunk)] = 0, 0
            resident.append(u)
        head_crossbars += sum(part_crossbars(spec, parts.units[u]) for u in resident)
        head_cells += sum(part_cells(spec, parts.units[u]) for u in resident)
    return crossbars, cells, head_crossbars, head_cells


def check_residency(schedule: Schedule, crossbars: dict, head_crossbars: int, capacity: int) -> int:
    """Raise ConfigError if the pinned nodes + heads + the swap region do not fit; return the swap region size."""
    unpinned = [x for n, x in crossbars.items() if n not in schedule.pinned]
    swap = max(unpinned, default=0)
    need = head_crossbars + sum(x for n, x in crossbars.items() if n in schedule.pinned) + swap
    if need > capacity:
        raise ConfigError(
            f"schedule {schedule.name or ''}: pinned nodes + heads + swap region need {need} crossbars, "
            f"the chip has {capacity}"
        )
    return swap


def execute_schedule(
    spec: HardwareSpec, arch: BertArch, tree: SharingTree, trace: Trace, schedule: Schedule, *,
    num_labels: Sequence[int], buffer_bytes: float | None = None, compression: DeltaPlan | None = None,
) -> ScheduleExecution:
    buffer = spec.chip_buffer_bytes if buffer_bytes is None else buffer_bytes
    if buffer <= 0:
        raise ConfigError(f"on-chip buffer must be > 0 bytes, got {buffer}")
    crossbars, cells, head_xb, head_cells = node_footprints(spec, arch, tree, num_labels, compression)
    unknown = [node_name(n) for n in schedule.pinned if n not in crossbars]
    if unknown:
        raise ConfigError(f"schedule pins nodes {unknown} that the sharing tree does not have")
    check_residency(schedule, crossbars, head_xb, spec.chip_crossbars)

    # Physical placement: heads, then pinned nodes, then the swap region.
    writes = np.zeros(spec.chip_crossbars, dtype=np.int64)
    writes[:head_xb] += 1
    base = head_xb
    for node in tree_nodes(tree):
        if node in schedule.pinned:
            writes[base: base + crossbars[node]] += 1
            base += crossbars[node]
    swap_base = base
    initial_cells = head_cells + sum(cells[n] for n in schedule.pinned)

    kids = children_of(tree)
    bytes_per_token = arch.hidden * spec.output_bits / 8
    slot = None
    loads, cells_written, dram_bits, peak, steps = 0, 0, 0.0, 0.0, 0
    loads_by_node: dict[str, int] = {}
    top = root(tree)
    for group in groups_of(trace.num_requests, schedule.batch_size):
        requests = list(group)
        tokens_at: dict = {}
        for node in [top] + tree_nodes(tree):
            users = [r for r in requests if trace.task_mask[r, sorted(node[1])].any()]
            tokens_at[node] = int(trace.tokens[users].sum()) if users else 0
        needed = {n: t > 0 for n, t in tokens_at.items()}
        order = dfs_steps(tree, schedule, kids, needed)
        parent = {c: n for n in order for c in kids[n]}
        live: dict = {}  # node -> [on-chip bytes, spilled bytes, consumers left]
        used = 0.0
        for node in order:
            steps += 1
            if node != top and node not in schedule.pinned and cells[node] > 0 and slot != node:
                writes[swap_base: swap_base + crossbars[node]] += 1
                loads += 1
                cells_written += cells[node]
                loads_by_node[node_name(node)] = loads_by_node.get(node_name(node), 0) + 1
                slot = node
            size = tokens_at[node] * bytes_per_token
            on_chip = min(size, buffer - used)
            spilled = size - on_chip
            used += on_chip
            peak = max(peak, used)
            dram_bits += 8 * spilled  # written out
            consumers = sum(needed[c] for c in kids[node]) or 1  # a leaf's output goes to its heads
            live[node] = [on_chip, spilled, consumers]
            if node != top:
                dram_bits += _consume(live, parent[node])
            if not any(needed[c] for c in kids[node]):  # the heads read the leaf output at once
                dram_bits += _consume(live, node)
            used = sum(v[0] for v in live.values())
    return ScheduleExecution(loads, cells_written, initial_cells, writes, peak, dram_bits, steps, loads_by_node)


def _consume(live: dict, node) -> float:
    """One consumer reads ``node``'s output; returns DRAM bits read; frees the tensor after its last consumer."""
    entry = live[node]
    read = 8 * entry[1]
    entry[2] -= 1
    if entry[2] == 0:
        del live[node]
    return read
