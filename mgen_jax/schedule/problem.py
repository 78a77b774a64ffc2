"""The scheduling problem and the scheduler's own (vectorised) account of a schedule's cost.

Input: a sharing tree, a batch of requests (token counts and task sets), the spec (crossbar capacity, buffer bytes,
write and DRAM energies). A schedule (mgen_jax.hw.schedule.Schedule) = pinned nodes, batch size, child order.
Cost = crossbar programming (cells written by loads x cell write energy) + DRAM traffic of activations that do not
fit the buffer (bits x DRAM energy per bit). Compute energy is fixed by the tree and reported beside it.

``evaluate`` computes loads, cells written, worst-cell writes, peak buffer bytes and DRAM bits for every group at
once with numpy; ``mgen_jax.sim.execute_schedule`` counts the same by executing the schedule step by step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.delta import DeltaPlan
from mgen_jax.hw.schedule import Node, Schedule, children_of, root, tree_nodes
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.hw.tree import SharingTree
from mgen_jax.sim.execute import check_residency, node_footprints
from mgen_jax.workload.trace import Trace


@dataclasses.dataclass(frozen=True)
class ScheduleCost:
    loads: int
    cells_written: int
    write_energy_j: float
    dram_bits: float
    dram_energy_j: float
    peak_buffer_bytes: float
    worst_cell_writes: int
    requests: int

    @property
    def energy_j(self) -> float:
        """Cost of the schedule beyond compute, for the whole batch."""
        return self.write_energy_j + self.dram_energy_j

    def lifetime_requests(self, endurance_writes: float) -> float | None:
        """Requests served before the most-written cell reaches ``endurance_writes`` (None: no cell is rewritten)."""
        if self.loads == 0:
            return None
        return endurance_writes / self.loads * self.requests

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["energy_j"] = self.energy_j
        d["energy_per_request_j"] = self.energy_j / self.requests
        d["lifetime_requests_at_1e6_writes"] = self.lifetime_requests(1e6)
        d["lifetime_requests_at_1e12_writes"] = self.lifetime_requests(1e12)
        return d


class SchedulingProblem:
    """A tree, a batch of requests and a chip. Raises ConfigError for infeasible inputs."""

    def __init__(self, spec: HardwareSpec, arch: BertArch, tree: SharingTree, trace: Trace, *,
                 num_labels: Sequence[int] | None = None, buffer_bytes: float | None = None,
                 compression: DeltaPlan | None = None):
        if tree.num_units != arch.num_units:
            raise ConfigError(f"sharing tree has {tree.num_units} units, {arch.name} has {arch.num_units}")
        if trace.num_tasks != tree.num_tasks:
            raise ConfigError(f"trace has {trace.num_tasks} tasks, the sharing tree {tree.num_tasks}")
        self.spec, self.arch, self.tree, self.trace = spec, arch, tree, trace
        self.num_labels = tuple(num_labels) if num_labels is not None else (2,) * tree.num_tasks
        self.buffer_bytes = float(spec.chip_buffer_bytes if buffer_bytes is None else buffer_bytes)
        if self.buffer_bytes <= 0:
            raise ConfigError(f"on-chip buffer must be > 0 bytes, got {self.buffer_bytes:g}: activations need a buffer")
        self.compression = compression  # base + delta nodes (hw/delta.py): bases are resident beside the heads
        self.crossbars, self.cells, self.head_crossbars, self.head_cells = node_footprints(
            spec, arch, tree, self.num_labels, compression)
        self.capacity = spec.chip_crossbars
        largest = max(self.crossbars.values())
        if largest + self.head_crossbars > self.capacity:
            raise ConfigError(
                f"a single unit needs {largest} crossbars (+ {self.head_crossbars} for the heads and any stored bases) but the chip "
                f"{spec.name} has {self.capacity}: no schedule can run it"
            )
        self.nodes: list[Node] = tree_nodes(tree)
        self.root = root(tree)
        self.kids = children_of(tree)
        self.parent = {c: n for n, cs in self.kids.items() for c in cs}
        # uses[r, i]: request r needs node i (index 0 = root)
        all_nodes = [self.root] + self.nodes
        self.index = {n: i for i, n in enumerate(all_nodes)}
        self.uses = np.stack([trace.task_mask[:, sorted(n[1])].any(axis=1) for n in all_nodes], axis=1)
        self.bytes_per_token = arch.hidden * spec.output_bits / 8

    @property
    def num_requests(self) -> int:
        return self.trace.num_requests

    def fits(self, pinned: frozenset) -> bool:
        unpinned = [x for n, x in self.crossbars.items() if n not in pinned]
        used = self.head_crossbars + sum(self.crossbars[n] for n in pinned) + max(unpinned, default=0)
        return used <= self.capacity

    def template_order(self, schedule: Schedule) -> list[Node]:
        """Depth-first order of every node (the order of any group, before skipping unneeded nodes)."""
        out: list[Node] = []

        def visit(node: Node) -> None:
            out.append(node)
            for child in schedule.ordered_children(node, self.kids[node]):
                visit(child)

        visit(self.root)
        return out

    def group_tokens(self, batch_size: int) -> np.ndarray:
        """[groups, 1 + nodes] tokens each group's requests bring to each node (0 = the group skips the node)."""
        starts = np.arange(0, self.num_requests, batch_size)
        weighted = self.uses * self.trace.tokens[:, None]
        return np.add.reduceat(weighted, starts, axis=0)


def evaluate(problem: SchedulingProblem, schedule: Schedule) -> ScheduleCost:
    """The scheduler's account of ``schedule`` on ``problem`` (all groups at once)."""
    check_residency(schedule, problem.crossbars, problem.head_crossbars, problem.capacity)
    order = problem.template_order(schedule)
    tokens = problem.group_tokens(schedule.batch_size)  # [G, 1 + N]
    idx = problem.index
    needed = tokens > 0
    num_groups = tokens.shape[0]

    # Loads: runs of the same unpinned node in the concatenated step sequence.
    unpinned = [n for n in order if n != problem.root and n not in schedule.pinned and problem.cells[n] > 0]
    loads = 0
    cells_written = 0
    if unpinned:
        cols = [idx[n] for n in unpinned]
        sub = needed[:, cols]  # [G, K] in execution order
        counts = sub.sum(axis=1)
        first = np.where(counts > 0, np.argmax(sub, axis=1), -1)
        last = np.where(counts > 0, sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1), -1)
        per_node = sub.sum(axis=0).astype(np.int64)
        previous_last = -1
        for g in range(num_groups):  # the swap region keeps its node across groups
            if counts[g] == 0:
                continue
            if first[g] == previous_last:
                per_node[first[g]] -= 1
            previous_last = last[g]
        loads = int(per_node.sum())
        cells_written = int(sum(c * problem.cells[n] for c, n in zip(per_node, unpinned)))

    # Activations: first come, first served in the buffer; the rest goes to DRAM and is read by each consumer.
    buffer = problem.buffer_bytes
    used = np.zeros(num_groups)
    peak = np.zeros(num_groups)
    dram = np.zeros(num_groups)
    on_chip: dict = {}
    spilled: dict = {}
    left: dict = {}
    for node in order:
        active = needed[:, idx[node]]
        size = tokens[:, idx[node]] * problem.bytes_per_token
        on = np.where(active, np.minimum(size, buffer - used), 0.0)
        spill = np.where(active, size - on, 0.0)
        used = used + on
        peak = np.maximum(peak, used)
        dram += 8 * spill
        kids = problem.kids[node]
        consumers = sum(needed[:, idx[c]].astype(np.int64) for c in kids) if kids else np.zeros(num_groups, np.int64)
        on_chip[node], spilled[node], left[node] = on, spill, np.maximum(consumers, 1)
        if node != problem.root:
            used = _consume(problem.parent[node], active, on_chip, spilled, left, used, dram)
        leaf = active & (consumers == 0)
        used = _consume(node, leaf, on_chip, spilled, left, used, dram)
    bits = float(dram.sum())
    return ScheduleCost(
        loads=loads, cells_written=cells_written,
        write_energy_j=cells_written * problem.spec.cell_write_energy_pj * 1e-12,
        dram_bits=bits, dram_energy_j=bits * problem.spec.dram_energy_pj_per_bit * 1e-12,
        peak_buffer_bytes=float(peak.max()), worst_cell_writes=max(1, loads), requests=problem.num_requests,
    )


def _consume(node, active, on_chip, spilled, left, used, dram):
    """Where ``active``, one consumer reads ``node``'s output (DRAM part from DRAM); free it after the last one."""
    dram += np.where(active, 8 * spilled[node], 0.0)
    left[node] = left[node] - active
    freed = active & (left[node] == 0)
    return used - np.where(freed, on_chip[node], 0.0)
