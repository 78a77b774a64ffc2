"""``mgen schedule``: the task scheduler (residency, batch size, order) of a scenario and its simulated cost."""

from __future__ import annotations

import argparse
from typing import Any

from mgen_jax.cli.flags import SCENARIO, nonnegative_float, pick
from mgen_jax.cli.output import print_energy, print_json
from mgen_jax.cli.scenario import Scenario, build_scenario
from mgen_jax.errors import ConfigError

MAX_SCHEDULE_REQUESTS = 100_000  # its solvers take ~2 min for this many here
SOLVERS = ("fast", "exact", "request-major", "task-major")
ALL = ("request-major", "task-major", "fast", "exact")  # --solver all, in the order printed


def add_commands(sub, flags) -> None:
    p = sub.add_parser("schedule", parents=pick(flags, SCENARIO),
                       help="task scheduler: residency, batch size and order under chip limits")
    p.add_argument("--solver", default="fast", choices=[*SOLVERS, "all"],
                   help="scheduler: fast (default), exact (small instances), the two naive orders, or all of them "
                        "(exact where the instance is small enough; otherwise the output says why not)")
    p.add_argument("--buffer-bytes", type=nonnegative_float, help="on-chip activation buffer [the chip's eDRAM]")
    p.set_defaults(func=cmd_schedule)


def cmd_schedule(args: argparse.Namespace) -> None:
    from mgen_jax.io import check_finite
    from mgen_jax.schedule import SchedulingProblem, exact_refusal

    s = build_scenario(args)
    problem = SchedulingProblem(s.spec, s.arch, s.tree(), s.trace, num_labels=s.num_labels,
                                buffer_bytes=args.buffer_bytes, compression=s.plan)
    if s.trace.num_requests > MAX_SCHEDULE_REQUESTS:
        raise ConfigError(f"mgen schedule: {s.trace.num_requests:,} requests, more than the "
                          f"{MAX_SCHEDULE_REQUESTS:,} its solvers take (use --requests, or fewer length tasks)")
    results: dict[str, Any] = {}
    for method in ALL if args.solver == "all" else [args.solver]:
        refusal = exact_refusal(problem) if method == "exact" and args.solver == "all" else None
        results[method] = {"skipped": refusal} if refusal else _solve(s, problem, method, args.buffer_bytes)
    check_finite(results, "result")
    if args.json:
        print_json(results if len(results) > 1 else results[args.solver])
        return
    for method, r in results.items():
        if "skipped" in r:
            print(f"mgen schedule: {method}: not run ({r['skipped']})")
        else:
            _print_schedule(method, r)


def _solve(s: Scenario, problem, method: str, buffer_bytes: float | None) -> dict[str, Any]:
    """One solver's schedule, simulated exactly: the simulator's summary, the plan and the solver's own cost."""
    from mgen_jax.schedule import solve
    from mgen_jax.sim import simulate

    solution = solve(problem, method)
    result = simulate(s.spec, s.arch, s.tree(), s.trace, num_labels=s.num_labels, schedule=solution.schedule,
                      buffer_bytes=buffer_bytes, input_densities=s.densities, compression=s.plan).summary()
    return result | s.header() | {"schedule_plan": solution.schedule.describe(), "solver_cost": solution.cost.to_dict(),
                                  "candidates_evaluated": solution.candidates}


def _print_schedule(method: str, r: dict[str, Any]) -> None:
    sched, plan = r["schedule"], r["schedule_plan"]
    print_energy(r, f"mgen schedule: {method} (batch size {plan['batch_size']}, {len(plan['pinned'])} pinned nodes)")
    life = sched["lifetime_requests_at_1e6_writes"]
    print(f"  loads {sched['loads']:,}, worst cell {sched['worst_cell_writes']:,} writes, peak buffer "
          f"{sched['peak_buffer_bytes'] / 2**20:.2f} MiB, DRAM {sched['dram_bits'] / 8 / 2**20:.2f} MiB, "
          f"lifetime at 1e6 writes: {'unlimited' if life is None else f'{life:,.0f} requests'}")
