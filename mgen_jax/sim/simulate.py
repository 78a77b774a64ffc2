"""The exact simulator (DESIGN.md section 5): execute a discrete multi-task model on a trace and count every event.

For each request, with its own token count n and task set S, the simulator runs the embedding once, every
(unit, group) node of the sharing tree that serves a task of S exactly once, and the head of every task in S; each
operation contributes the events of its crossbar mapping (per token, or once per sequence for the heads) or of its
digital work (n, n^2 terms). Requests with the same task set are executed together as numpy arrays over their token
counts; counts are exact (integers held in float64, exact below 2^53).

Energy = counts x energy per action (mgen_jax.hw.energy). Attribution: a node's energy goes to its unit; the part
of a shared node used by k tasks of the request is split equally among them for the per-task numbers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.delta import DeltaPlan
from mgen_jax.hw.density import InputDensities
from mgen_jax.hw.energy import ACTION_INDEX, ACTIONS, by_action, by_component, energy_per_action_pj
from mgen_jax.hw.ops import (
    ModelParts,
    Op,
    model_parts,
    op_counts,
    part_cells,
    part_crossbars,
    part_latency_coefficients,
    plan_delta_ops,
)
from mgen_jax.hw.schedule import Schedule
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.hw.tree import SharingTree
from mgen_jax.sim.execute import ScheduleExecution, execute_schedule
from mgen_jax.workload.trace import Trace


@dataclasses.dataclass(frozen=True, slots=True)
class Footprint:
    """Crossbars and area of a mapped multi-task model (every node of the tree plus every head)."""

    crossbars: int
    crossbars_by_unit: tuple[int, ...]  # over all copies of each unit
    head_crossbars: int
    tiles: int
    area_mm2: float  # tiles x tile area (IMAs, eDRAM, router share, digital units)
    array_area_mm2: float  # crossbars + their ADCs only
    chip_crossbars: int
    weight_cells: int
    programming_energy_j: float  # writing every weight cell once (one-time, not per request)
    delta_crossbars: int = 0  # kept delta blocks of the compressed own nodes (included in crossbars)
    base_crossbars: int = 0  # bases stored for the deltas beyond the tree's own nodes (included in crossbars)

    @property
    def fits_on_chip(self) -> bool:
        return self.crossbars <= self.chip_crossbars


def footprint(spec: HardwareSpec, parts: ModelParts, tree: SharingTree, compression: DeltaPlan | None = None,
              deltas: dict[tuple[int, int], tuple[Op, ...]] | None = None) -> Footprint:
    """Crossbars of every stored node plus every head; with ``compression`` (and its ``deltas``, hw/ops.py
    ``plan_delta_ops``), a compressed own node stores its kept delta blocks and each base it needs is stored once."""
    unit_xbars = [part_crossbars(spec, ops) for ops in parts.units]
    unit_cells = [part_cells(spec, ops) for ops in parts.units]
    by_unit = [len(tree.groups[u]) * unit_xbars[u] for u in range(tree.num_units)]
    cells = sum(len(tree.groups[u]) * unit_cells[u] for u in range(tree.num_units))
    delta_xbars, base_xbars = 0, 0
    if compression is not None:
        for (t, u) in compression.active():
            xbars, delta_cells = part_crossbars(spec, deltas[(t, u)]), part_cells(spec, deltas[(t, u)])
            by_unit[u] += xbars - unit_xbars[u]
            cells += delta_cells - unit_cells[u]
            delta_xbars += xbars
        for u, _ in compression.stored_bases(tree.num_units):
            by_unit[u] += unit_xbars[u]
            cells += unit_cells[u]
            base_xbars += unit_xbars[u]
    heads = sum(part_crossbars(spec, ops) for ops in parts.heads)
    crossbars = sum(by_unit) + heads
    cells += sum(part_cells(spec, ops) for ops in parts.heads)
    adcs = crossbars * spec.adcs_per_ima / spec.crossbars_per_ima
    tiles = math.ceil(crossbars / spec.crossbars_per_tile)
    return Footprint(
        crossbars=crossbars,
        crossbars_by_unit=tuple(by_unit),
        head_crossbars=heads,
        tiles=tiles,
        area_mm2=tiles * spec.tile_area_mm2,
        array_area_mm2=crossbars * spec.crossbar_area_mm2 + adcs * spec.adc_area_mm2,
        chip_crossbars=spec.chip_crossbars,
        weight_cells=cells,
        programming_energy_j=cells * spec.cell_write_energy_pj * 1e-12,
        delta_crossbars=delta_xbars,
        base_crossbars=base_xbars,
    )


@dataclasses.dataclass(frozen=True)
class SimResult:
    """Everything the simulator counted. Energies in J, counts in actions, latency in s."""

    spec_name: str
    arch_name: str
    task_names: tuple[str, ...]
    unit_names: tuple[str, ...]
    branch_points: tuple[int, ...] | None
    num_requests: int
    mean_tokens: float
    counts_by_action: np.ndarray  # [A] over the whole trace
    energy_by_action_j: np.ndarray  # [A] over the whole trace
    energy_per_request_j: np.ndarray  # [R]
    energy_by_part_j: dict[str, float]  # embedding, each unit, heads; over the whole trace
    energy_by_task_j: dict[str, float]  # shared nodes split equally among the request's tasks using them
    latency_per_request_s: np.ndarray  # [R] estimate
    footprint: Footprint
    schedule: ScheduleExecution | None = None  # what executing the schedule cost (writes, buffer, DRAM)
    compressed_nodes: int | None = None  # own nodes stored as base + delta (None: no compression given)

    @property
    def total_energy_j(self) -> float:
        return float(self.energy_by_action_j.sum())

    @property
    def energy_by_component_j(self) -> dict[str, float]:
        return by_component(self.energy_by_action_j)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary; per-request figures are means over the trace."""
        r = self.num_requests
        fp = self.footprint
        return {
            "hw": self.spec_name,
            "model": self.arch_name,
            "tasks": list(self.task_names),
            "branch_points": None if self.branch_points is None else list(self.branch_points),
            "requests": r,
            "energy_per_request_j": self.total_energy_j / r,
            "breakdown_per_request_j": {k: v / r for k, v in self.energy_by_component_j.items()},
            "energy_by_part_per_request_j": {k: v / r for k, v in self.energy_by_part_j.items()},
            "energy_by_task_per_request_j": {k: v / r for k, v in self.energy_by_task_j.items()},
            "counts_per_request": {k: v / r for k, v in by_action(self.counts_by_action).items()},
            "total_energy_j": self.total_energy_j,
            "crossbars": fp.crossbars,
            "crossbars_by_unit": dict(zip(self.unit_names, fp.crossbars_by_unit)),
            "head_crossbars": fp.head_crossbars,
            "tiles": fp.tiles,
            "area_mm2": fp.area_mm2,
            "array_area_mm2": fp.array_area_mm2,
            "chip_crossbars": fp.chip_crossbars,
            "fits_on_chip": fp.fits_on_chip,
            "programming_energy_j": fp.programming_energy_j,
            "latency_per_request_s": float(self.latency_per_request_s.mean()),
            "latency_is_estimate": True,
            "mean_tokens": self.mean_tokens,
        } | ({} if self.schedule is None else {"schedule": self._schedule_summary()}) | (
            {} if self.compressed_nodes is None else {
                "compressed_nodes": self.compressed_nodes, "delta_crossbars": fp.delta_crossbars,
                "base_crossbars": fp.base_crossbars})

    def _schedule_summary(self) -> dict[str, Any]:
        ex = self.schedule
        per_request = ex.loads / self.num_requests
        return {
            "loads": ex.loads, "cells_written": ex.cells_written, "initial_programming_cells": ex.initial_cells,
            "worst_cell_writes": ex.worst_cell_writes, "peak_buffer_bytes": ex.peak_buffer_bytes,
            "dram_bits": ex.dram_bits, "steps": ex.steps,
            "lifetime_requests_at_1e6_writes": None if ex.loads == 0 else 1e6 / per_request,
            "lifetime_requests_at_1e12_writes": None if ex.loads == 0 else 1e12 / per_request,
        }


def _sum_ops(spec: HardwareSpec, ops: Sequence[Op], tokens: np.ndarray) -> np.ndarray:
    total = np.zeros(tokens.shape + (len(ACTIONS),))
    for op in ops:
        total += op_counts(spec, op, tokens)
    return total


def _latency_ns(spec: HardwareSpec, ops: Sequence[Op], tokens: np.ndarray) -> np.ndarray:
    l0, l1 = part_latency_coefficients(spec, ops)
    return l0 + l1 * tokens.astype(np.float64)


def simulate(
    spec: HardwareSpec,
    arch: BertArch,
    tree: SharingTree,
    trace: Trace,
    *,
    num_labels: Sequence[int] | None = None,
    schedule: Schedule | None = None,
    buffer_bytes: float | None = None,
    input_densities: InputDensities | None = None,
    compression: DeltaPlan | None = None,
) -> SimResult:
    """Run ``trace`` on the multi-task model ``tree`` (over ``arch``) mapped on ``spec``; count every event.

    Args:
        spec: the accelerator.
        arch: the encoder dims; the tree must have arch.num_units units.
        tree: the sharing tree (e.g. ``SharingTree.from_branch_points(b, arch.num_units)``).
        trace: requests (token counts, task sets) over the tree's tasks.
        num_labels: outputs of each task's head (default 2 each).
        schedule: residency, batch size and order (mgen_jax.hw.schedule). With it, the trace is one batch executed
            step by step; crossbar programming (cell writes) and activation spills (DRAM bits) join the counts,
            spread evenly over the requests. Without it, every node is assumed resident (programmed once, not
            counted per request) and no activation leaves the chip.
        buffer_bytes: on-chip activation buffer for the schedule (default: the chip's eDRAM).
        input_densities: each matrix's input bit density (hw/density.py), used when the spec's inputs are
            data-dependent (default: the spec's ``input_bit_density_default`` for every matrix).
        compression: own unit copies stored as base + compressed delta (hw/delta.py); its branch points must give
            ``tree``. A compressed own node runs its unit's operations (the base pass) plus its delta passes; each
            base is stored once and time-shared (a request streams k x n tokens through a base that k passes use).
    """
    if tree.num_units != arch.num_units:
        raise ConfigError(f"sharing tree has {tree.num_units} units but {arch.name} has {arch.num_units} (2 x layers)")
    if trace.num_tasks != tree.num_tasks:
        raise ConfigError(f"trace has {trace.num_tasks} tasks but the sharing tree has {tree.num_tasks}")
    labels = tuple(num_labels) if num_labels is not None else (2,) * tree.num_tasks
    if len(labels) != tree.num_tasks:
        raise ConfigError(f"num_labels has {len(labels)} entries for {tree.num_tasks} tasks")
    parts = model_parts(spec, arch, labels, input_densities)
    deltas: dict[tuple[int, int], tuple[Op, ...]] = {}
    active: dict = {}
    if compression is not None:
        deltas = plan_delta_ops(spec, parts, compression)
        if SharingTree.from_branch_points(compression.branch_points, arch.num_units).groups != tree.groups:
            raise ConfigError(f"the compressed model's branch points {list(compression.branch_points)} do not give "
                              "the sharing tree being simulated")
        active = compression.active()
    unit_names = tuple(arch.unit_names())
    num_actions = len(ACTIONS)
    energy_pj = energy_per_action_pj(spec)

    r = trace.num_requests
    per_request = np.zeros((r, num_actions))
    latency_ns = np.zeros(r)
    part_totals = {name: np.zeros(num_actions) for name in ("embedding",) + unit_names + ("heads",)}
    task_totals = np.zeros((tree.num_tasks, num_actions))

    # The embedding runs once per request, for every request.
    emb = _sum_ops(spec, parts.embedding, trace.tokens)
    per_request += emb
    part_totals["embedding"] += emb.sum(axis=0)

    subsets, inverse = np.unique(trace.task_mask, axis=0, return_inverse=True)
    for s, subset in enumerate(subsets):
        idx = np.flatnonzero(inverse.reshape(-1) == s)
        tokens = trace.tokens[idx]
        tasks = [int(t) for t in np.flatnonzero(subset)]
        # Embedding energy is attributed equally to the request's tasks.
        task_totals[tasks] += emb[idx].sum(axis=0) / len(tasks)
        unit_counts: dict[int, np.ndarray] = {}
        for u, group in tree.executed_nodes(tasks):
            if u not in unit_counts:
                unit_counts[u] = _sum_ops(spec, parts.units[u], tokens)
            counts = unit_counts[u]
            own = next(iter(group)) if len(group) == 1 else None
            if (own, u) in active:  # base pass + delta pass
                counts = counts + _sum_ops(spec, deltas[(own, u)], tokens)
            per_request[idx] += counts
            total = counts.sum(axis=0)
            part_totals[unit_names[u]] += total
            users = sorted(group.intersection(tasks))
            task_totals[users] += total / len(users)
        path_ns = []
        for t in tasks:
            head = _sum_ops(spec, parts.heads[t], tokens)
            per_request[idx] += head
            part_totals["heads"] += head.sum(axis=0)
            task_totals[t] += head.sum(axis=0)
            path = _latency_ns(spec, parts.heads[t], tokens)
            if compression is None:
                for u in range(tree.num_units):
                    path = path + _latency_ns(spec, parts.units[u], tokens)
            path_ns.append(path)
        latency_ns[idx] = np.max(path_ns, axis=0)
        if compression is not None:  # units one after another; a time-shared base streams its passes in series
            for u in range(tree.num_units):
                l0, l1 = part_latency_coefficients(spec, parts.units[u])
                latency_ns[idx] += l0 + l1 * compression.base_passes(u, tasks) * tokens.astype(np.float64)

    execution = None
    if schedule is not None:
        execution = execute_schedule(spec, arch, tree, trace, schedule, num_labels=labels, buffer_bytes=buffer_bytes,
                                     compression=compression)
        per_request[:, ACTION_INDEX["cell_write"]] += execution.cells_written / r
        per_request[:, ACTION_INDEX["dram_bit"]] += execution.dram_bits / r
        part_totals["schedule"] = np.zeros(num_actions)
        part_totals["schedule"][ACTION_INDEX["cell_write"]] = execution.cells_written
        part_totals["schedule"][ACTION_INDEX["dram_bit"]] = execution.dram_bits
        task_totals += part_totals["schedule"] / tree.num_tasks
    counts_total = per_request.sum(axis=0)
    try:
        branch_points = tree.branch_points()
    except ConfigError:
        branch_points = None
    return SimResult(
        spec_name=spec.name,
        arch_name=arch.name,
        task_names=trace.task_names,
        unit_names=unit_names,
        branch_points=branch_points,
        num_requests=r,
        mean_tokens=float(trace.tokens.mean()),
        counts_by_action=counts_total,
        energy_by_action_j=counts_total * energy_pj * 1e-12,
        energy_per_request_j=per_request @ energy_pj * 1e-12,
        energy_by_part_j={k: float(v @ energy_pj * 1e-12) for k, v in part_totals.items()},
        energy_by_task_j={name: float(task_totals[t] @ energy_pj * 1e-12) for t, name in enumerate(trace.task_names)},
        latency_per_request_s=latency_ns * 1e-9,
        footprint=footprint(spec, parts, tree, compression, deltas),
        schedule=execution,
        compressed_nodes=None if compression is None else len(active),
    )
