"""The ``mgen`` command line: thin parsing around the library.

    mgen simulate  exact simulator on a trace (fixed length or real GLUE dev lengths)
    mgen cost      differentiable cost model on the same workload statistics
    mgen schedule  task scheduler (residency, batch size, order) and its simulated cost
    mgen report    energy breakdown of independent vs fully shared models, JSON + stacked bar PNG
    mgen finetune  fine-tune a pretrained BERT on one GLUE task
    mgen search    model generator for one lambda;  mgen sweep: lambda sweep + baselines, Pareto plot
    mgen analyze   redundancy analysis of fine-tuned task models (weight change, CKA per unit)
    mgen export    fine-tuned or multi-task models as Hugging Face BERT directories (+ the task head)
    mgen compress  task models as a shared base + compressed deltas (area), chosen on held-out; simulate, cost and
                   schedule take the result with --compressed
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence


from mgen_jax.errors import ConfigError, MgenError, TrainingError

GLUE5 = "SST-2,CoLA,MRPC,STS-B,RTE"


# ------------------------------------------------------------------------------------------------------------------
# shared argument handling
# ------------------------------------------------------------------------------------------------------------------
def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hw", default="isaac", help="hardware preset name (configs/hw/) or YAML path [isaac]")
    p.add_argument("--model", default="minilm-l6", help="minilm-l6 | bert-base | bert-large | HF config.json/dir")
    p.add_argument(
        "--tasks", default=GLUE5,
        help=f"number of tasks T, or comma-separated GLUE task names [{GLUE5}]",
    )
    p.add_argument(
        "--branch-points", default="0",
        help="b1,...,bT (task t shares units 1..b_t), or one value for every task; 0 = independent, U = full sharing",
    )
    p.add_argument("--tokens", type=_positive_int, help="fixed token count per request, at most the model's "
                   "positions (default: real GLUE dev lengths)")
    p.add_argument("--length-tasks", help="GLUE tasks whose dev sets give the lengths [the --tasks names]")
    p.add_argument("--max-length", type=_positive_int, help="truncation of real lengths, tokens, at most the "
                   f"model's positions [{DEFAULT_MAX_LENGTH}]")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--task-subsets", help='task-set distribution, e.g. "SST-2+CoLA:0.5,MRPC:0.5" [every task]')
    p.add_argument("--seed", type=_nonnegative_int,
                   help="with real lengths and --task-subsets: seed for drawing each request's task set [0]")
    p.add_argument("--requests", type=_positive_int,
                   help=f"with --tokens and --task-subsets: requests (at most {MAX_REQUESTS:,}), task sets in exact "
                   f"proportion [{DEFAULT_REQUESTS:,}]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--input-densities", help="measured input bit densities (JSON, experiments/fidelity.py) for a "
                   "preset with data_dependent_inputs [the preset's input_bit_density_default]")
    p.add_argument("--compressed", help="own unit copies as base + compressed delta: a folder of mgen compress (or "
                   "its report.json, or a plan JSON); its branch points are the model's")


def _typed(kind: type, test, words: str):
    """An argparse type: ``kind(text)`` that must pass ``test``; a bad value exits 2 naming the flag (and the value,
    cut to a few dozen characters)."""
    from mgen_jax.io import describe_value

    def parse(text: str):
        if len(text) > 40:  # no number needs more; int() of a million digits is slow and refused anyway
            raise argparse.ArgumentTypeError(f"{describe_value(text, 40)} is not {words}")
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}")
        return value
    return parse


_INT_LIMIT = 2**53  # integer flags: far beyond any count or seed, and exact as a float
_positive_int = _typed(int, lambda v: 1 <= v <= _INT_LIMIT, "an integer in 1..2**53")
_nonnegative_int = _typed(int, lambda v: 0 <= v <= _INT_LIMIT, "an integer in 0..2**53")
_positive_float = _typed(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_nonnegative_float = _typed(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")


def _overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set field=value`` pairs (the value read as YAML: 3, 1e-4, [0.5, 0.25], null, text) -> {field: value}."""
    from mgen_jax.errors import ConfigError
    from mgen_jax.io import MAX_TEXT_BYTES, describe_value, parse_yaml

    out: dict[str, Any] = {}
    for item in items or []:
        field, sep, text = item.partition("=")
        if not sep or not field.strip():
            raise ConfigError(f"--set {describe_value(item)}: expected field=value")
        if len(text) > MAX_TEXT_BYTES:
            raise ConfigError(f"--set {describe_value(field.strip(), 60)}: the value has {len(text):,} characters, "
                              f"more than the {MAX_TEXT_BYTES:,} a config file may hold")
        out[field.strip()] = parse_yaml(text, f"--set {describe_value(field.strip(), 60)}: the value")
    return out


def _parse_tasks(text: str) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
    """(names, num_labels, are_glue_tasks)."""
    from mgen_jax.data.glue import get_task
    from mgen_jax.errors import ConfigError

    from mgen_jax.io import describe_value

    text = text.strip()
    if text.isdigit():
        if len(text) > 6 or not 1 <= int(text) <= MAX_TASKS:
            raise ConfigError(f"--tasks must be a number in 1..{MAX_TASKS:,} or task names, got {describe_value(text)}")
        t = int(text)
        return tuple(f"task{i}" for i in range(t)), (2,) * t, False
    tasks = [get_task(name.strip()) for name in text.split(",") if name.strip()]
    if not tasks:
        raise ConfigError("--tasks is empty")
    names = [t.name for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--tasks names {repeated} more than once ({describe_value(text)}): a model has one branch "
                          "per task")
    return tuple(names), tuple(t.num_labels for t in tasks), True


def _parse_branch_points(text: str, num_tasks: int, num_units: int) -> list[int]:
    from mgen_jax.errors import ConfigError

    from mgen_jax.io import describe_value

    try:
        values = [int(v) for v in text.split(",") if v.strip() and len(v.strip()) <= 40]
        if any(len(v.strip()) > 40 for v in text.split(",")):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--branch-points must be integers, got {describe_value(text)}") from None
    if len(values) == 1:
        values = values * num_tasks
    if len(values) != num_tasks:
        raise ConfigError(f"--branch-points has {len(values)} values for {num_tasks} tasks")
    bad = [v for v in values if not 0 <= v <= num_units]
    if bad:
        raise ConfigError(f"--branch-points {describe_value(bad)} out of range 0..{num_units} (U = 2 x layers)")
    return values


def _build(args: argparse.Namespace) -> dict[str, Any]:
    from mgen_jax import hw
    from mgen_jax.errors import ConfigError
    from mgen_jax.workload import assign_subsets, fixed_trace, parse_subsets
    from mgen_jax.workload.trace import proportional_subsets

    spec = hw.load_spec(args.hw)
    arch = hw.load_arch(args.model)
    _check_flags_used(args, spec)
    densities = hw.load_input_densities(args.input_densities, spec) if args.input_densities else None
    if densities is not None:
        _check_density_model(args.input_densities, densities, spec, arch)
    names, labels, glue = _parse_tasks(args.tasks)
    b = _parse_branch_points(args.branch_points, len(names), arch.num_units)
    plan = _compressed_plan(args, b, names, glue, arch, spec) if getattr(args, "compressed", None) else None
    if plan is not None:
        b = list(plan.branch_points)
    for flag, value in (("--tokens", args.tokens), ("--max-length", args.max_length)):
        if value is not None and value > arch.max_position:
            raise ConfigError(f"{flag} {value:,} exceeds the {arch.max_position:,} positions of model {arch.name!r}")
    if args.max_length is not None and args.max_length < 4:
        raise ConfigError(f"--max-length must be >= 4 ([CLS], [SEP] and some text), got {args.max_length}")
    if args.tokens is not None:
        trace = fixed_trace(len(names), args.tokens, task_names=names)
    else:
        length_tasks = [s.strip() for s in args.length_tasks.split(",")] if args.length_tasks else None
        if not glue and not length_tasks:
            raise ConfigError("real lengths need GLUE task names (--tasks or --length-tasks), or give --tokens N")
        from mgen_jax.workload.glue import glue_trace

        trace = glue_trace(length_tasks or names, task_names=names, glue_dir=args.glue_dir,
                           max_length=args.max_length or DEFAULT_MAX_LENGTH)
    subsets = None
    if args.task_subsets:
        subsets = parse_subsets(args.task_subsets, names)
        if args.tokens is not None:  # one length: the expectation itself, over requests in exact proportion
            requests = args.requests or DEFAULT_REQUESTS
            _check_exact_proportion(subsets, requests)
            trace = proportional_subsets(fixed_trace(len(names), args.tokens, task_names=names,
                                                     num_requests=requests), subsets)
        else:
            trace = assign_subsets(trace, subsets, seed=args.seed or 0)
    return {"spec": spec, "arch": arch, "names": names, "labels": labels, "b": b, "trace": trace, "subsets": subsets,
            "densities": densities, "plan": plan}


DEFAULT_MAX_LENGTH = 128
DEFAULT_REQUESTS = 10_000
MAX_REQUESTS = 1_000_000  # --requests: a trace of this many requests takes ~1 GB and ~30 s to simulate here
MAX_SCHEDULE_REQUESTS = 100_000  # mgen schedule: its solvers take ~2 min for this many here
MAX_TASKS = 1024  # --tasks N


def _check_flags_used(args: argparse.Namespace, spec) -> None:
    """ConfigError for a flag given where it changes nothing (it would be silently ignored)."""
    from mgen_jax.errors import ConfigError

    fixed, subsets = args.tokens is not None, bool(args.task_subsets)
    expected = args.func is cmd_cost  # the cost model reads the task-subset distribution itself, never a trace's draws
    unused = [
        ("--seed", args.seed is not None and (fixed or not subsets or expected),
         "it draws task sets over real lengths (--task-subsets without --tokens) for the simulator; mgen cost uses "
         "the distribution itself"),
        ("--requests", args.requests is not None and (not (fixed and subsets) or expected),
         "it sets the request count of --tokens with --task-subsets for the simulator; mgen cost uses the "
         "distribution itself"),
        ("--max-length", args.max_length is not None and fixed, "it truncates real lengths; --tokens fixes them"),
        ("--length-tasks", bool(args.length_tasks) and fixed, "it picks real lengths; --tokens fixes them"),
        ("--input-densities", bool(args.input_densities) and not spec.data_dependent_inputs,
         f"hardware spec {spec.name!r} has data_dependent_inputs false (every row is driven, whatever the density)"),
    ]
    for flag, given, why in unused:
        if given:
            raise ConfigError(f"{flag} has no effect here: {why}; leave it out")
    if args.requests is not None and args.requests > MAX_REQUESTS:
        raise ConfigError(f"--requests {args.requests:,} is more than the {MAX_REQUESTS:,} a trace may hold")


def _check_density_model(path: str, densities, spec, arch) -> None:
    """ConfigError unless the density file was measured on a model with ``arch``'s matrices (every one, no other)
    and, when its header names a preset, with ``arch``'s dims."""
    from mgen_jax import hw
    from mgen_jax.errors import ConfigError
    from mgen_jax.hw.delta import model_fields
    from mgen_jax.hw.density import read_density_file
    from mgen_jax.hw.ops import matrix_keys

    ours, theirs = set(matrix_keys(spec, arch)), set(densities.values)
    if ours != theirs:
        raise ConfigError(f"--input-densities {path} were measured on another model: {len(theirs)} matrices there, "
                          f"{len(ours)} in model {arch.name!r} ({len(ours - theirs)} missing, {len(theirs - ours)} "
                          "extra)")
    measured = read_density_file(path).get("model")
    if isinstance(measured, str) and measured in hw.arch.PRESETS and \
            model_fields(hw.arch.PRESETS[measured]) != model_fields(arch):
        raise ConfigError(f"--input-densities {path} were measured on {measured} {model_fields(hw.arch.PRESETS[measured])}"
                          f", not on model {arch.name!r} {model_fields(arch)}")


def _check_exact_proportion(subsets: dict, requests: int) -> None:
    """ConfigError unless every task subset's probability x ``requests`` is a whole number (what the workload's
    description, 'in exact proportion', promises)."""
    from mgen_jax.errors import ConfigError

    for key, prob in subsets.items():
        count = prob * requests
        if abs(count - round(count)) > 1e-6 * max(1.0, count):
            raise ConfigError(f"--requests {requests:,}: a task subset of probability {prob:g} would need "
                              f"{count:g} requests; give a count that makes every probability x requests whole (e.g. "
                              f"{DEFAULT_REQUESTS:,} for probabilities of up to 4 decimals)")


def _compressed_plan(args: argparse.Namespace, b: list[int], names: tuple[str, ...], glue: bool, arch, spec):
    """The DeltaPlan of --compressed; ConfigError if it disagrees with --tasks, --model, --hw or an explicit
    --branch-points."""
    from mgen_jax.errors import ConfigError
    from mgen_jax.hw.delta import load_delta_plan

    path = Path(args.compressed)
    source = path / "report.json" if path.is_dir() else path
    plan = load_delta_plan(source)
    num_tasks = len(names)
    if plan.num_tasks != num_tasks:
        raise ConfigError(f"--compressed {path} holds {plan.num_tasks} tasks, --tasks names {num_tasks}")
    plan.check_model(arch, names if glue else None, where=f"--compressed {path}")
    plan.check(spec, num_tasks, arch.num_units)
    if args.branch_points.strip() != "0" and list(plan.branch_points) != b:
        raise ConfigError(f"--branch-points {b} differ from the compressed model's {list(plan.branch_points)} "
                          "(leave --branch-points out to use them)")
    return plan


def _print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _fmt_j(x: float) -> str:
    for unit, scale in (("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12)):
        if abs(x) >= scale:
            return f"{x / scale:10.4f} {unit}"
    return f"{x:10.4g} J"


def _emit(result: dict[str, Any], as_json: bool, title: str) -> None:
    from mgen_jax.io import check_finite

    check_finite(result, "result")
    if as_json:
        print(json.dumps(result, indent=2))
        return
    total = result["energy_per_request_j"]
    rows = [
        ("hardware / model", f"{result['hw']} / {result['model']}"),
        ("tasks", ", ".join(result["tasks"])),
        ("branch points", ",".join(map(str, result["branch_points"]))),
        ("workload", result["workload"]),
        ("energy per request", _fmt_j(total)),
    ]
    rows += [(f"  {k}", f"{_fmt_j(v)}  {100 * v / total:5.1f} %") for k, v in result["breakdown_per_request_j"].items() if v]
    rows += [
        ("crossbars", f"{result['crossbars']:,} of {result['chip_crossbars']:,} on one chip"),
        ("area", f"{result['area_mm2']:.2f} mm^2 ({result['tiles']} tiles)"),
        ("latency per request", f"{result['latency_per_request_s'] * 1e6:.1f} us (estimate)"),
    ]
    _print_table(title, rows)


# ------------------------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> None:
    from mgen_jax.hw import SharingTree
    from mgen_jax.sim import simulate

    m = _build(args)
    tree = SharingTree.from_branch_points(m["b"], m["arch"].num_units)
    result = simulate(m["spec"], m["arch"], tree, m["trace"], num_labels=m["labels"], input_densities=m["densities"],
                      compression=m["plan"])
    summary = result.summary()
    summary["branch_points"] = m["b"]
    summary["workload"] = m["trace"].description
    _emit(summary, args.json, "mgen simulate (exact, event counting)")


def cmd_cost(args: argparse.Namespace) -> None:
    import jax.numpy as jnp

    from mgen_jax import cost

    m = _build(args)
    spec, arch, trace = m["spec"], m["arch"], m["trace"]
    tables = cost.build_tables(spec, arch, m["labels"], input_densities=m["densities"], dtype=jnp.float32,
                               compression=m["plan"])
    if m["subsets"] is not None:  # the distribution itself, not the draws of the simulator's trace
        workload = cost.workload_from_lengths(trace.tokens, m["subsets"], len(m["names"]))
    else:
        workload = cost.workload_from_trace(trace)
    p = cost.onehot_probs(m["b"], arch.num_units)
    estimate = cost.expected_energy(p, tables, workload)
    crossbars = int(round(float(cost.expected_crossbars(p, tables))))
    tiles = math.ceil(crossbars / spec.crossbars_per_tile)
    summary = {
        "hw": spec.name,
        "model": arch.name,
        "tasks": list(m["names"]),
        "branch_points": m["b"],
        "workload": trace.description + ("" if m["subsets"] is None else f"; task subsets {args.task_subsets}"),
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
    _emit(summary, args.json, "mgen cost (differentiable cost model, expected values)")


def cmd_schedule(args: argparse.Namespace) -> None:
    from mgen_jax.errors import ConfigError
    from mgen_jax.hw import SharingTree
    from mgen_jax.schedule import SchedulingProblem, solve
    from mgen_jax.sim import simulate

    m = _build(args)
    spec, arch, trace = m["spec"], m["arch"], m["trace"]
    tree = SharingTree.from_branch_points(m["b"], arch.num_units)
    problem = SchedulingProblem(spec, arch, tree, trace, num_labels=m["labels"], buffer_bytes=args.buffer_bytes,
                                compression=m["plan"])
    if trace.num_requests > MAX_SCHEDULE_REQUESTS:
        raise ConfigError(f"mgen schedule: {trace.num_requests:,} requests, more than the {MAX_SCHEDULE_REQUESTS:,} "
                          "its solvers take (use --requests, or fewer length tasks)")
    methods = ["request-major", "task-major", "fast"] if args.solver == "all" else [args.solver]
    results = {}
    for method in methods:
        solution = solve(problem, method)
        sim = simulate(spec, arch, tree, trace, num_labels=m["labels"], schedule=solution.schedule,
                       buffer_bytes=args.buffer_bytes, input_densities=m["densities"],
                       compression=m["plan"]).summary()
        sim.update({"branch_points": m["b"], "workload": trace.description, "schedule_plan": solution.schedule.describe(),
                    "solver_cost": solution.cost.to_dict(), "candidates_evaluated": solution.candidates})
        results[method] = sim
    from mgen_jax.io import check_finite

    check_finite(results, "result")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[methods[0]], indent=2))
        return
    for method, r in results.items():
        sched = r["schedule"]
        _emit(r, False, f"mgen schedule: {method} (batch size {r['schedule_plan']['batch_size']}, "
                        f"{len(r['schedule_plan']['pinned'])} pinned nodes)")
        life = sched["lifetime_requests_at_1e6_writes"]
        print(f"  loads {sched['loads']:,}, worst cell {sched['worst_cell_writes']:,} writes, peak buffer "
              f"{sched['peak_buffer_bytes'] / 2**20:.2f} MiB, DRAM {sched['dram_bits'] / 8 / 2**20:.2f} MiB, "
              f"lifetime at 1e6 writes: {'unlimited' if life is None else f'{life:,.0f} requests'}")


def cmd_report(args: argparse.Namespace) -> None:
    from mgen_jax.report import breakdown_report

    out = breakdown_report(
        tasks=[t.strip() for t in args.tasks.split(",")], hw_name=args.hw, model=args.model, out_dir=Path(args.out),
        glue_dir=args.glue_dir, max_length=args.max_length,
    )
    print(out["table"])
    print(f"wrote {out['json']} and {out['png']}")


def cmd_finetune(args: argparse.Namespace) -> None:
    from mgen_jax.train import load_config, train_and_evaluate

    overrides = _overrides(args.set) | {k: v for k, v in {
        "task": args.task, "model": args.model, "max_train_examples": args.max_train_examples, "epochs": args.epochs,
        "seed": args.seed, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
    }.items() if v is not None}
    cfg = load_config(args.config, **overrides)
    workdir = Path(args.workdir or f"runs/finetune/{cfg.task}")
    summary = train_and_evaluate(cfg, workdir, glue_dir=args.glue_dir, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    held = "-" if summary["heldout_score"] is None else f"{summary['heldout_score']:.2f}"
    _print_table(f"mgen finetune {summary['task']}: {workdir}", [
        ("dev " + ", ".join(summary["metrics"]), ", ".join(f"{v:.4f}" for v in summary["metrics"].values())),
        ("held-out score", held),
        ("train rows / examples seen", f"{summary['train_examples']:,} / {summary['train_examples_seen']:,}"),
        ("steps, wall-clock", f"{summary['steps']:,}, {summary['wall_clock_s'] / 60:.1f} min"),
    ])


def cmd_analyze(args: argparse.Namespace) -> None:
    from mgen_jax.analysis import run_analysis

    tasks = [t.strip() for t in args.tasks.split(",")]
    record = run_analysis(Path(args.runs), tasks, Path(args.out), glue_dir=args.glue_dir, per_task=args.per_task,
                          stem=args.stem)
    print(f"{'unit':<8}" + "".join(f"{t:>9}" for t in record["tasks"]) + "  mean pairwise CKA")
    for u, name in enumerate(record["units"]):
        row = "".join(f"{record['relative_weight_change'][t][u]:9.3f}" for t in record["tasks"])
        print(f"{name:<8}{row}  {record['mean_pairwise_cka'][u]:.3f}")
    print(f"(relative weight change per task; wrote {args.out}/{args.stem}.json and .png)", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from mgen_jax.export import export_run

    written = export_run(args.run, args.out)
    if args.json:
        print(json.dumps([str(p) for p in written], indent=2))
        return
    for path in written:
        print(path)


def cmd_compress(args: argparse.Namespace) -> None:
    from mgen_jax import hw
    from mgen_jax.compress import ProfileSettings, compress_folder

    fields = {k: v for k, v in {
        "tolerance_points": args.tolerance, "budgets": args.budgets, "refine_steps": args.refine_steps,
        "calibration_rows": args.calibration_rows, "bit_levels": args.bit_levels, "base_kinds": args.base,
        "heldout_confidence": args.confidence,
    }.items() if v is not None}
    settings = ProfileSettings(**fields, bias_correction=not args.no_bias_correction)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    report = compress_folder(args.source, args.out, hw.load_spec(args.hw), hw.load_arch(args.model), settings,
                             tasks=tasks, glue_dir=args.glue_dir, evaluate_dev=args.dev, log=log)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "tasks_profiled"}, indent=2))
        return
    h = report["hardware"]
    rows = [(name, f"held-out {report['heldout']['uncompressed'][name]:.2f} -> "
                   f"{report['heldout']['compressed'][name]:.2f}, base {report['base_choice']['per_task'][name]}")
            for name in report["tasks"]]
    rows += [("crossbars", f"{h['uncompressed']['crossbars']:,} -> {h['compressed']['crossbars']:,} "
                           f"({h['area_ratio']:.3f}x; bases {h['compressed']['base_crossbars']:,}, deltas "
                           f"{h['compressed']['delta_crossbars']:,})"),
             ("energy per request", f"{_fmt_j(h['uncompressed']['energy_per_request_j'])} -> "
                                    f"{_fmt_j(h['compressed']['energy_per_request_j'])} ({h['energy_ratio']:.3f}x)")]
    _print_table(f"mgen compress: {args.out}", rows)


def _csv(kind: type):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    return parse


def _generator(args: argparse.Namespace):
    from mgen_jax.search import ModelGenerator, load_search_config

    cfg = load_search_config(args.config, **_overrides(args.set))
    workdir = Path(args.workdir or f"runs/search/{cfg.name}")
    return ModelGenerator(cfg, workdir, glue_dir=args.glue_dir, progress=not args.no_progress)


def cmd_search(args: argparse.Namespace) -> None:
    if (args.energy_target is None) == (args.lam is None):
        raise ConfigError("mgen search needs exactly one of --energy-target (the gradient search in one run inside "
                          "the training budget) and --lambda (a fixed energy weight after a warm-up)")
    gen = _generator(args)
    if args.energy_target is not None:
        _search_target(gen, args)
        return
    warm = gen.warmup()
    found = gen.search(args.lam, warm)
    record = gen.finetune_and_evaluate(found["branch_points"], warm)
    if args.json:
        print(json.dumps({"lambda": args.lam, "search": found, "discrete_model": record}, indent=2))
        return
    _print_table(f"mgen search lambda={args.lam:g}", [
        ("branch points", ",".join(map(str, record["branch_points"]))),
        ("dev mean score", f"{record['mean_score']:.2f}"),
        ("energy ratio", f"{record['energy_ratio']:.3f} ({record['efficiency']:.2f}x)"),
        ("crossbars", f"{record['crossbars']:,}"),
    ])


def _search_target(gen, args: argparse.Namespace) -> None:
    from mgen_jax.search.constrained import check_target
    from mgen_jax.search.gradient import gradient_run, target_range
    from mgen_jax.search.judge import format_efficiency

    seed = gen.cfg.seed if args.seed is None else args.seed
    low, high = target_range(gen)
    target = check_target(args.energy_target, low, high)
    record = gradient_run(gen, target, seed, gen.cfg.gradient)
    if args.json:
        print(json.dumps(record, indent=2))
        return
    found = record["search"]
    _print_table(f"mgen search --energy-target {target:g} (seed {seed})", [
        ("branch points", ",".join(map(str, record["branch_points"])) + (
            f" (argmax {','.join(map(str, found['argmax_branch_points']))}, repaired)" if found["repaired"] else "")),
        ("energy ratio", f"{record['energy_ratio']:.5f} = {format_efficiency(record['energy_ratio'])} "
                         f"(target {target:g}; exact simulator, real dev lengths)"),
        ("held-out mean score", f"{record['heldout_mean_score']:.2f}" if "heldout_mean_score" in record else "-"),
        ("dev mean score", f"{record['mean_score']:.2f} (evaluated once, reported only)"),
        ("crossbars", f"{record['crossbars']:,}"),
        ("mu (final, converged)", f"{found['mu']:.4g}, {found['mu_converged']}"),
        ("wall clock", f"{record['search_wall_clock_s']:.0f} s search + {record['train_wall_clock_s']:.0f} s training"),
    ])


def cmd_sweep(args: argparse.Namespace) -> None:
    from mgen_jax.search.sweep import run_sweep, summary_table

    record = run_sweep(_generator(args), args.out, report_only=args.report_only)
    if args.json:
        print(json.dumps(record, indent=2))
        return
    print(summary_table(record))
    if record["pending"]:
        print(f"partial: {len(record['pending'])} model(s) still to train: " + "; ".join(record["pending"]))
    line = headline_line(record)
    if line:
        print(line)
    print(f"wrote {args.out}/search_{record['name']}.json and .png", file=sys.stderr)


def cmd_front(args: argparse.Namespace) -> None:
    from mgen_jax.search.front import Models, build_front, load_front_config, write_front

    cfg = load_front_config(args.config)
    models = Models(glue_dir=args.glue_dir, progress=not args.no_progress)
    record = build_front(cfg, models, report_only=args.report_only,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    json_path, png = write_front(record, args.out)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(front_table(record))
        if record["pending"]:
            print(f"partial: {len(record['pending'])} run(s) still to train: " + "; ".join(record["pending"]))
        print(record["headline"]["sentence"])
    print(f"wrote {json_path} and {png}", file=sys.stderr)


def front_table(record: dict) -> str:
    """Markdown: every budget's representative (and all-seed candidates): per-task and mean 3-seed dev scores, std,
    held-out mean, energy ratio, efficiency, crossbars, drop with its interval."""
    tasks = record["tasks"]
    lines = ["| budget | model | branch points | " + " | ".join(tasks) + " | dev mean ± std | held-out | energy "
             "ratio | efficiency | crossbars | drop [interval] | seeds |", "|---" * (len(tasks) + 10) + "|"]
    ind = record["independent"]
    lines.append(f"| - | independent | 0 | " + " | ".join(f"{ind['dev_scores_mean'][t]:.1f}" for t in tasks) +
                 f" | {ind['dev_mean_score']:.2f} ± {ind['dev_mean_score_std'] or 0:.2f} | "
                 f"{ind['heldout_mean_score'] or float('nan'):.2f} | 1.000 | 1.000x | {ind['crossbars']:,} | - | "
                 f"{len(ind['seeds'])} |")
    for point in record["points"]:
        for label, p in point["runs"].items():
            trees = {",".join(map(str, b)) for b in p["branch_points_by_seed"]}
            ci = p.get("drop_interval")
            drop = f"{p['drop_points']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "-"
            mark = " (chosen)" if label == point["chosen"] else ""
            lines.append(
                f"| {point['budget']} | {label}{mark} | {' / '.join(sorted(trees))} | " +
                " | ".join(f"{p['dev_scores_mean'][t]:.1f}" for t in tasks) +
                f" | {p['dev_mean_score']:.2f} ± {p['dev_mean_score_std'] or 0:.2f} | "
                f"{p['heldout_mean_score'] if p['heldout_mean_score'] is None else round(p['heldout_mean_score'], 2)}"
                f" | {p['energy_ratio_max']:.5f} | {p['efficiency_text']} | {max(p['crossbars_by_seed']):,} | {drop} | "
                f"{len(p['seeds'])} |")
    return "\n".join(lines)


def headline_line(record: dict) -> str | None:
    """One line on the sweep's claim (efficiency, dev points above or below the independent models), or None
    while the claim has no dev mean yet."""
    claim = record.get("claim") or {}
    if claim.get("dev_mean_score") is None:
        return None
    goal = record.get("goal_3x_within_1_point") or {}
    drop = claim["drop_points"]
    side = "below" if drop >= 0 else "above"
    return (f"headline ({claim['chosen_on']}-chosen {claim['label']}, {len(claim['seeds'])} seeds): "
            f"{claim['efficiency']:.2f}x at {abs(drop):.2f} points {side} the independent models' dev mean "
            f"({len(claim['independent_seeds'])} seeds); goal met: {goal.get('met')}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mgen_jax")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgen", description="energy-aware multi-task BERT on ReRAM PIM accelerators")
    parser.add_argument("--version", action="version", version=f"mgen {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="exact event-counting simulation of a discrete multi-task model")
    _add_model_args(p)
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("cost", help="differentiable cost model (expected energy per request)")
    _add_model_args(p)
    p.set_defaults(func=cmd_cost)
    p = sub.add_parser("schedule", help="task scheduler: residency, batch size and order under chip limits")
    _add_model_args(p)
    p.add_argument("--solver", default="fast", choices=["fast", "exact", "request-major", "task-major", "all"],
                   help="scheduler: fast (default), exact (small instances), the two naive orders, or all of them")
    p.add_argument("--buffer-bytes", type=_nonnegative_float, help="on-chip activation buffer [the chip's eDRAM]")
    p.set_defaults(func=cmd_schedule)
    p = sub.add_parser("report", help="energy breakdown: independent vs fully shared, on real GLUE dev lengths")
    p.add_argument("--tasks", default=GLUE5, help=f"GLUE task names, comma-separated [{GLUE5}]")
    p.add_argument("--hw", default="isaac", help="hardware preset name or YAML path [isaac]")
    p.add_argument("--model", default="minilm-l6", help="minilm-l6 | bert-base | bert-large | HF config.json/dir")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--max-length", type=_typed(int, lambda v: 4 <= v <= _INT_LIMIT, "an integer >= 4"), default=128,
                   help="truncation of real lengths, tokens [128]")
    p.add_argument("--out", default="experiments/results", help="output folder [experiments/results]")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("finetune", help="fine-tune a pretrained BERT on one GLUE task (resumes from its workdir)")
    p.add_argument("--config", required=True, help="YAML under configs/finetune/")
    p.add_argument("--workdir", help="output folder [runs/finetune/<TASK>]")
    p.add_argument("--task", help="GLUE task (overrides the config's)")
    p.add_argument("--model", help="pretrained BERT: minilm-l6, a local HF directory or a hub name")
    p.add_argument("--max-train-examples", type=_positive_int, help="cap on the training rows (a seeded subset)")
    p.add_argument("--epochs", type=_positive_float, help="passes over the training rows")
    p.add_argument("--learning-rate", type=_positive_float, help="peak AdamW learning rate")
    p.add_argument("--batch-size", type=_positive_int, help="global batch, split across the JAX devices")
    p.add_argument("--seed", type=_nonnegative_int, help="training seed (head init, batch order, dropout)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override any config field (repeatable; the value is read as YAML)")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to stderr)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("analyze", help="redundancy of fine-tuned task models: weight change and CKA per unit")
    p.add_argument("--runs", default="runs/baseline", help="folder with <TASK>/final_params.msgpack [runs/baseline]")
    p.add_argument("--tasks", default=GLUE5, help=f"GLUE task names, comma-separated [{GLUE5}]")
    p.add_argument("--per-task", type=_positive_int, default=64, help="probe examples per task, from the held-out split [64]")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--out", default="experiments/results", help="output folder [experiments/results]")
    p.add_argument("--stem", default="redundancy_glue5", help="output file name stem [redundancy_glue5]")
    p.set_defaults(func=cmd_analyze)
    p = sub.add_parser("export", help="a fine-tuned or multi-task model as Hugging Face BERT directories + head")
    p.add_argument("--run", required=True,
                   help="a fine-tuning run folder (final_params.msgpack) or a sweep's models/b_<...> folder")
    p.add_argument("--out", required=True, help="output folder: one <TASK>/ directory per task")
    p.add_argument("--json", action="store_true", help="print the written directories as JSON")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("compress", help="task models as a shared base + compressed deltas, chosen on held-out")
    p.add_argument("--source", required=True, help="a fine-tuning run folder, a folder of them (<TASK>/), or a "
                   "searched model folder (<sweep>/models/b_<...>)")
    p.add_argument("--out", required=True, help="output folder: report.json + deltas.msgpack")
    p.add_argument("--tasks", help="with a folder of runs: which tasks, comma-separated [every finished run]")
    p.add_argument("--hw", default="isaac", help="hardware preset name (configs/hw/) or YAML path [isaac]")
    p.add_argument("--model", default="minilm-l6", help="architecture for the hardware summary [minilm-l6]")
    p.add_argument("--tolerance", type=_nonnegative_float, help="largest held-out score drop per task, points [0.5]")
    p.add_argument("--budgets", type=_csv(float), help="crossbar budget fractions tried, largest first "
                   "[0.5,0.35,0.25,0.18,0.13,0.09,0.065,0.045,0.03,0.02,0.01,0]")
    p.add_argument("--confidence", type=float, help="q in [0.5, 1): a budget passes when the q-quantile of its "
                   "held-out drop over a paired bootstrap of the rows is within the tolerance [off: the drop itself]")
    p.add_argument("--refine-steps", type=_nonnegative_int, help="bisection steps after the first failing budget [3]")
    p.add_argument("--calibration-rows", type=_positive_int, help="held-out rows for the block ranking [256]")
    p.add_argument("--bit-levels", type=_csv(int), help="delta bits tried, e.g. 8 for stage one alone [2,4,6,8]")
    p.add_argument("--base", type=_csv(str), help="base kinds tried: pretrained, trunk [every kind the source has]")
    p.add_argument("--no-bias-correction", action="store_true", help="do not fold the mean error into the biases")
    p.add_argument("--dev", action="store_true", help="also report dev scores (evaluated once, never chosen on)")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--json", action="store_true", help="print the report (without the walks) as JSON on stdout")
    p.set_defaults(func=cmd_compress)
    for name, func, text in (("search", cmd_search, "one energy target: search and train in one run, evaluate"),
                             ("sweep", cmd_sweep, "lambda sweep + baselines -> search_<name>.json and Pareto plot")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="YAML under configs/search/")
        p.add_argument("--workdir", help="run folder (resumable) [runs/search/<config name>]")
        p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                       help="override any config field (repeatable; the value is read as YAML)")
        p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
        p.add_argument("--no-progress", action="store_true", help="no progress bars (logs still go to stderr)")
        p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        if name == "search":
            p.add_argument("--energy-target", help="energy per request / the independent models' "
                           "(in [full sharing's ratio, 1]): the gradient search in one run inside the training budget")
            p.add_argument("--seed", type=_nonnegative_int, help="training seed of the run [the config's seed]")
            p.add_argument("--lambda", dest="lam", type=_nonnegative_float,
                           help="instead of a target: a fixed weight of the energy term after a warm-up")
        else:
            p.add_argument("--out", default="runs/results", help="results folder [runs/results]; the committed "
                           "records in experiments/results are rewritten by the experiment scripts that own them")
            p.add_argument("--report-only", action="store_true", help="train nothing: write the record and plot of "
                           "the models finished so far, the others listed as pending")
        p.set_defaults(func=func)
    p = sub.add_parser("front", help="the accuracy/energy front at pre-registered budgets, 3 seeds each")
    p.add_argument("--config", required=True, help="YAML under configs/front/")
    p.add_argument("--out", default="runs/results", help="results folder [runs/results]")
    p.add_argument("--report-only", action="store_true", help="train nothing: the record of what has finished")
    p.add_argument("--glue-dir", help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the record as JSON on stdout")
    p.set_defaults(func=cmd_front)
    return parser


EXIT_BAD_INPUT = 2  # a config field, flag, file or data row is wrong: the message names it (argparse uses 2 too)
EXIT_FAILED = 1  # the run itself failed (a NaN loss, a full disk): its last checkpoint is kept
EXIT_INTERRUPTED = 130  # Ctrl-C: the run resumes from its last checkpoint when started again


def _stdout_for_results_only() -> None:
    """In a multi-process run, native libraries write to file descriptor 1 (gloo announces every connection there,
    "[Gloo] Rank 0 is connected to 1 peer ranks"), which would break ``--json`` readers: point descriptor 1 at stderr
    and keep Python's ``sys.stdout`` on the original stream, so stdout carries the results only. A single-process
    run is left as it is."""
    if not (os.environ.get("MGEN_COORDINATOR") or os.environ.get("MGEN_DISTRIBUTED")):
        return  # (without importing JAX)
    from mgen_jax.train.parallel import distributed_settings  # ConfigError (exit 2) for malformed variables

    if distributed_settings() is None:
        return
    sys.stdout.flush()
    results = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(results, "w", encoding=sys.stdout.encoding, errors=sys.stdout.errors)


def _closed_standard_streams() -> list[str]:
    """Standard streams the program was started without (``>&-``): each gets /dev/null on its file descriptor, so
    that no file this run opens takes descriptor 1 or 2 and receives the output meant for the terminal. Returns the
    names of the streams that were closed."""
    closed = []
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            closed.append(name)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
    return closed


def _ignore_further_interrupts() -> None:
    """After a Ctrl-C, the next ones (a user pressing it again while the run winds down) are ignored: a second
    KeyboardInterrupt inside the clean-up would end in a traceback, or in a crash of a native thread at exit."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def main(argv: Sequence[str] | None = None) -> int:
    from mgen_jax.io import cut_message

    closed = _closed_standard_streams() if argv is None else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse's message already printed)
        return int(exc.code or 0)
    if "stdout" in closed:
        print(f"mgen {args.command}: failed: standard output is closed (>&-); redirect it to /dev/null to discard "
              "what mgen prints", file=sys.stderr)
        return EXIT_FAILED
    try:
        _stdout_for_results_only()
        args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        if argv is None:  # the program itself (not a caller of main()): it is ending
            _ignore_further_interrupts()
        print(f"mgen {args.command}: interrupted; run it again to resume from the last checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (mgen simulate | head): end quietly
        try:
            sys.stdout = open(os.devnull, "w")  # nothing more reaches the closed pipe, not even at exit
        except OSError:
            pass
        print(f"mgen {args.command}: output pipe closed", file=sys.stderr)
        return EXIT_FAILED
    except TrainingError as exc:
        print(f"mgen {args.command}: failed: {cut_message(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except MgenError as exc:  # the message is cut: no value of unbounded size reaches the terminal
        print(f"mgen {args.command}: error: {cut_message(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"mgen {args.command}: failed: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
