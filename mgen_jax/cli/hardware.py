"""The hardware commands: ``mgen simulate`` (exact simulator), ``mgen cost`` (differentiable cost model) and
``mgen report`` (energy breakdown of independent vs fully shared models)."""

from __future__ import annotations

import argparse
import math

from mgen_jax.cli.flags import (DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_OUT, SCENARIO, or_default, pick,
                                task_list)
from mgen_jax.cli.output import emit_energy, print_json, wrote
from mgen_jax.cli.scenario import build_scenario

REPORT_FLAGS = ("--tasks", "--hw", "--model", "--glue-dir", "--max-length", "--out", "--json")


def add_commands(sub, flags) -> None:
    p = sub.add_parser("simulate", parents=pick(flags, SCENARIO),
                       help="exact event-counting simulation of a discrete multi-task model")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("cost", parents=pick(flags, SCENARIO), help="differentiable cost model (expected energy per "
                                                                   "request)")
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("report", parents=pick(flags, REPORT_FLAGS),
                       help="energy breakdown: independent vs fully shared, on real GLUE dev lengths")
    p.set_defaults(func=cmd_report)


def cmd_simulate(args: argparse.Namespace) -> None:
    from mgen_jax.sim import simulate

    s = build_scenario(args)
    result = simulate(s.spec, s.arch, s.tree(), s.trace, num_labels=s.num_labels, input_densities=s.densities,
                      compression=s.plan)
    emit_energy(result.summary() | s.header(), args.json, "mgen simulate (exact, event counting)")


def cmd_cost(args: argparse.Namespace) -> None:
    import jax.numpy as jnp

    from mgen_jax import cost

    s = build_scenario(args, expected=True)
    spec, arch = s.spec, s.arch
    tables = cost.build_tables(spec, arch, s.num_labels, input_densities=s.densities, dtype=jnp.float32,
                               compression=s.plan)
    if s.subsets is not None:  # the distribution itself, not the draws of the simulator's trace
        workload = cost.workload_from_lengths(s.trace.tokens, s.subsets, len(s.tasks))
    else:
        workload = cost.workload_from_trace(s.trace)
    p = cost.onehot_probs(list(s.branch_points), arch.num_units)
    estimate = cost.expected_energy(p, tables, workload)
    crossbars = int(round(float(cost.expected_crossbars(p, tables))))
    tiles = math.ceil(crossbars / spec.crossbars_per_tile)
    summary = {
        "hw": spec.name,
        "model": arch.name,
        "tasks": list(s.tasks),
        "branch_points": list(s.branch_points),
        "workload": s.workload + ("" if s.subsets is None else f"; task subsets {s.subsets_text}"),
        "energy_per_request_j": float(estimate.total_j),
        "breakdown_per_request_j": cost.component_dict(estimate.by_component_j),
        "counts_per_request": cost.action_dict(cost.expected_counts(p, tables, workload)),
        "crossbars": crossbars,
        "tiles": tiles,
        "area_mm2": tiles * spec.tile_area_mm2,
        "chip_crossbars": spec.chip_crossbars,
        "fits_on_chip": crossbars <= spec.chip_crossbars,
        "latency_per_request_s": float(cost.expected_latency_s(tables, workload, p)),
        "latency_is_estimate": True,
    }
    emit_energy(summary, args.json, "mgen cost (differentiable cost model, expected values)")


def cmd_report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from mgen_jax.report import breakdown_report

    out = breakdown_report(
        tasks=task_list(args.tasks), hw_name=args.hw, model=or_default(args.model, DEFAULT_MODEL),
        out_dir=Path(or_default(args.out, DEFAULT_OUT)), glue_dir=args.glue_dir,
        max_length=or_default(args.max_length, DEFAULT_MAX_LENGTH),
    )
    if args.json:
        print_json(out["record"])
    else:
        print(out["table"])
    wrote(out["json"], out["png"])
