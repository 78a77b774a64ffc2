"""Scheduler: exact == brute force (costs from the simulator's step-by-step execution), fast <= naive orders,
simulator-executed cost == solver-reported cost, clear errors for infeasible inputs."""

import dataclasses
import itertools

import numpy as np
import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.schedule import Schedule, child_orders
from mgen_jax.schedule import SchedulingProblem, evaluate, request_major, solve_exact, solve_fast, task_major
from mgen_jax.schedule.instances import random_small_instance
from mgen_jax.schedule.solvers import maximal_pinnings
from mgen_jax.sim import execute_schedule, simulate
from mgen_jax.workload import Trace

FAST_GAP = 0.05  # stated bound: the fast solver spends at most 5 % more than the exact optimum on small instances


def _energy(spec, ex):
    return ex.cells_written * spec.cell_write_energy_pj * 1e-12 + ex.dram_bits * spec.dram_energy_pj_per_bit * 1e-12


def _brute_force(spec, arch, tree, trace, problem):
    """Every batch size, child order and feasible pinned set, each costed by the simulator's execution."""
    best = None
    nodes = problem.nodes
    for m in range(1, trace.num_requests + 1):
        for order in child_orders(tree):
            for k in range(len(nodes) + 1):
                for pinned in itertools.combinations(nodes, k):
                    if not problem.fits(frozenset(pinned)):
                        continue
                    schedule = Schedule(frozenset(pinned), m, order)
                    ex = execute_schedule(spec, arch, tree, trace, schedule, num_labels=problem.num_labels,
                                          buffer_bytes=problem.buffer_bytes, compression=problem.compression)
                    energy = _energy(spec, ex)
                    if best is None or energy < best - 1e-18:
                        best = energy
    return best


def test_exact_equals_brute_force_on_random_small_instances(isaac):
    rng = np.random.default_rng(7)
    gaps = []
    for _ in range(12):
        spec, arch, tree, trace = random_small_instance(rng, isaac)
        problem = SchedulingProblem(spec, arch, tree, trace)
        exact = solve_exact(problem)
        brute = _brute_force(spec, arch, tree, trace, problem)
        assert exact.cost.energy_j == pytest.approx(brute, rel=1e-12, abs=1e-21)
        fast = solve_fast(problem)
        assert fast.cost.energy_j >= exact.cost.energy_j - 1e-21
        gaps.append(fast.cost.energy_j / exact.cost.energy_j - 1 if exact.cost.energy_j else 0.0)
    assert max(gaps) <= FAST_GAP


def test_executed_cost_equals_solver_cost(isaac, minilm):
    rng = np.random.default_rng(3)
    trace = Trace(rng.integers(5, 128, 150), rng.random((150, 6)) < 0.7, tuple("abcdef"))
    trace = Trace(trace.tokens, trace.task_mask | (~trace.task_mask.any(1))[:, None], trace.task_names)
    half = hw.load_spec("isaac-half")
    for spec in (isaac, half):
        for b in ([0] * 6, [12] * 6, [2, 4, 6, 8, 10, 12]):
            tree = hw.SharingTree.from_branch_points(b, 12)
            problem = SchedulingProblem(spec, minilm, tree, trace)
            for schedule in (request_major(problem), task_major(problem), solve_fast(problem).schedule,
                             dataclasses.replace(solve_fast(problem).schedule, batch_size=7)):
                cost = evaluate(problem, schedule)
                ex = execute_schedule(spec, minilm, tree, trace, schedule, num_labels=problem.num_labels)
                assert (ex.loads, ex.cells_written, ex.worst_cell_writes) == (cost.loads, cost.cells_written,
                                                                             cost.worst_cell_writes)
                assert ex.dram_bits == pytest.approx(cost.dram_bits, rel=1e-12, abs=1e-6)
                assert ex.peak_buffer_bytes == pytest.approx(cost.peak_buffer_bytes, rel=1e-12)


def test_fast_never_worse_than_naive_orders(isaac, minilm):
    rng = np.random.default_rng(5)
    for spec in (isaac, hw.load_spec("isaac-half")):
        for b in ([0] * 8, [12] * 8, [int(x) for x in rng.integers(0, 13, 8)]):
            tree = hw.SharingTree.from_branch_points(b, 12)
            trace = Trace(rng.integers(4, 128, 1000), np.ones((1000, 8), bool), tuple("abcdefgh"))
            problem = SchedulingProblem(spec, minilm, tree, trace)
            fast = solve_fast(problem).cost
            for naive in (request_major(problem), task_major(problem)):
                assert fast.energy_j <= evaluate(problem, naive).energy_j


def test_simulate_with_a_schedule_adds_writes_and_dram(isaac, minilm):
    trace = Trace(np.full(40, 64), np.ones((40, 8), bool), tuple("abcdefgh"))
    tree = hw.SharingTree.from_branch_points([0] * 8, 12)  # 8 independent encoders do not fit on one chip
    problem = SchedulingProblem(isaac, minilm, tree, trace)
    schedule = request_major(problem)
    plain = simulate(isaac, minilm, tree, trace)
    scheduled = simulate(isaac, minilm, tree, trace, schedule=schedule)
    cost = evaluate(problem, schedule)
    extra = scheduled.total_energy_j - plain.total_energy_j
    assert extra == pytest.approx(cost.energy_j, rel=1e-9)
    assert scheduled.energy_by_component_j["write"] == pytest.approx(cost.write_energy_j, rel=1e-9)
    summary = scheduled.summary()["schedule"]
    assert summary["worst_cell_writes"] == cost.worst_cell_writes == cost.loads > 40
    assert summary["lifetime_requests_at_1e6_writes"] == pytest.approx(1e6 / (cost.loads / 40))


def test_infeasible_inputs(isaac, minilm):
    trace = Trace(np.full(4, 16), np.ones((4, 2), bool), ("a", "b"))
    tree = hw.SharingTree.from_branch_points([0, 0], 12)
    tiny_chip = dataclasses.replace(isaac, tiles_per_chip=2)  # 192 crossbars < 288 of one FFN unit
    with pytest.raises(ConfigError, match="single unit needs 288 crossbars"):
        SchedulingProblem(tiny_chip, minilm, tree, trace)
    with pytest.raises(ConfigError, match="buffer"):
        SchedulingProblem(isaac, minilm, tree, trace, buffer_bytes=0)
    with pytest.raises(ConfigError, match="batch_size"):
        Schedule(frozenset(), 0)
    eight = Trace(np.full(4, 16), np.ones((4, 8), bool), tuple("abcdefgh"))
    problem = SchedulingProblem(isaac, minilm, hw.SharingTree.from_branch_points([0] * 8, 12), eight)
    with pytest.raises(ConfigError, match="need .* crossbars, the chip has 16128"):
        evaluate(problem, Schedule(frozenset(problem.nodes), 1))


def test_maximal_pinnings_are_every_maximal_feasible_set(isaac, minilm):
    rng = np.random.default_rng(11)
    for _ in range(12):
        spec, arch, tree, trace = random_small_instance(rng, isaac)
        problem = SchedulingProblem(spec, arch, tree, trace)
        nodes = problem.nodes
        subsets = (frozenset(c) for k in range(len(nodes) + 1) for c in itertools.combinations(nodes, k))
        maximal = [s for s in subsets if problem.fits(s) and all(n in s or not problem.fits(s | {n}) for n in nodes)]
        found = list(maximal_pinnings(problem))
        assert len(found) == len(set(found)) and set(found) == set(maximal)
    # two independent MiniLM tasks: 24 nodes that all fit, one maximal set, found without walking 2^24 subsets
    trace = Trace(np.full(1, 8), np.ones((1, 2), bool), ("a", "b"))
    problem = SchedulingProblem(isaac, minilm, hw.SharingTree.from_branch_points([0, 0], 12), trace)
    assert list(maximal_pinnings(problem)) == [frozenset(problem.nodes)]


def test_exact_refuses_large_instances(isaac, minilm):
    trace = Trace(np.full(50, 16), np.ones((50, 8), bool), tuple("abcdefgh"))
    problem = SchedulingProblem(isaac, minilm, hw.SharingTree.from_branch_points([0] * 8, 12), trace)
    with pytest.raises(ConfigError, match="too large"):
        solve_exact(problem)


# ----- base + compressed delta nodes (hw/delta.py) ---------------------------------------------------------------
def test_exact_equals_brute_force_with_compressed_nodes(isaac, random_plan):
    """Compressed own nodes hold their kept blocks, bases are resident, empty nodes are never loaded."""
    rng = np.random.default_rng(11)
    checked = 0
    for i in range(12):
        spec, arch, _, trace = random_small_instance(rng, isaac)
        b = [int(x) for x in rng.integers(0, 3, trace.num_tasks)]
        tree = hw.SharingTree.from_branch_points(b, arch.num_units)
        plan = random_plan(spec, arch, b, seed=i, share=0.6)
        try:
            problem = SchedulingProblem(spec, arch, tree, trace, compression=plan)
        except ConfigError:  # the bases alone leave no room on this small chip
            continue
        checked += 1
        exact = solve_exact(problem)
        assert exact.cost.energy_j == pytest.approx(_brute_force(spec, arch, tree, trace, problem), rel=1e-12,
                                                    abs=1e-21)
        ex = execute_schedule(spec, arch, tree, trace, exact.schedule, num_labels=problem.num_labels,
                              buffer_bytes=problem.buffer_bytes, compression=plan)
        assert (ex.loads, ex.cells_written) == (exact.cost.loads, exact.cost.cells_written)
    assert checked >= 6


def test_compressed_node_footprints_by_hand(isaac, minilm):
    """Two independent tasks, task 1's unit 0 over the pretrained base with blocks 0..3 of each matrix at 2 bits:
    its node holds 4 x 4 crossbars, the base (144) is resident with the heads; a trunk node that is also a base is
    resident too and its node holds nothing."""
    from mgen_jax.hw.delta import DeltaMatrix, DeltaPlan, DeltaUnit

    attn = lambda base: DeltaUnit(base, tuple(DeltaMatrix(m, 2, (0, 1, 2, 3)) for m in ("query", "key", "value",
                                                                                        "output")))
    trace = Trace(np.full(4, 16), np.ones((4, 2), bool), ("a", "b"))
    tree = hw.SharingTree.from_branch_points([0, 0], 12)
    plain = SchedulingProblem(isaac, minilm, tree, trace)
    problem = SchedulingProblem(isaac, minilm, tree, trace, compression=DeltaPlan((0, 0), {(1, 0): attn("pretrained")}))
    node = (0, frozenset([1]))
    assert plain.crossbars[node] == 144 and problem.crossbars[node] == 16
    assert problem.cells[node] == 16 * 128 * 128
    assert problem.head_crossbars == plain.head_crossbars + 144
    tree = hw.SharingTree.from_branch_points([2, 0], 12)
    problem = SchedulingProblem(isaac, minilm, tree, trace, compression=DeltaPlan((2, 0), {(1, 0): attn("trunk")}))
    assert problem.crossbars[(0, frozenset([0]))] == 0 and problem.cells[(0, frozenset([0]))] == 0
    assert problem.head_crossbars == plain.head_crossbars + 144


def test_eight_compressed_tasks_fit_one_chip_without_reprogramming(isaac, minilm):
    """Eight independent MiniLM encoders (20,736 crossbars) do not fit an ISAAC chip; over one pretrained base with
    deltas of 10 % of the blocks at 2 bits they do: the fast solver pins every node, nothing is ever reloaded."""
    from mgen_jax.hw.delta import DeltaMatrix, DeltaPlan, DeltaUnit, delta_grid
    from mgen_jax.hw.ops import MatrixOp, model_parts

    parts = model_parts(isaac, minilm, (2,) * 8)
    units = {}
    for t in range(8):
        for u in range(12):
            mats = [DeltaMatrix(op.name, 2, tuple(range(delta_grid(isaac, op.k, op.n, 2).num_blocks // 10)))
                    for op in parts.units[u] if isinstance(op, MatrixOp)]
            units[(t, u)] = DeltaUnit("pretrained", tuple(mats))
    trace = Trace(np.full(30, 40), np.ones((30, 8), bool), tuple("abcdefgh"))
    tree = hw.SharingTree.from_branch_points([0] * 8, 12)
    plain = solve_fast(SchedulingProblem(isaac, minilm, tree, trace))
    assert plain.cost.loads > 0
    problem = SchedulingProblem(isaac, minilm, tree, trace, compression=DeltaPlan((0,) * 8, units))
    fast = solve_fast(problem)
    assert fast.cost.loads == 0 and fast.cost.cells_written == 0
    assert set(fast.schedule.pinned) == set(problem.nodes)
    sim = simulate(isaac, minilm, tree, trace, schedule=fast.schedule, compression=DeltaPlan((0,) * 8, units))
    assert sim.footprint.fits_on_chip and sim.summary()["schedule"]["loads"] == 0
