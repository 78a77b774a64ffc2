"""What ``mgen simulate``, ``cost`` and ``schedule`` evaluate: a ``Scenario`` (hardware, model, tasks, branch points,
workload) read from the command line and checked once, before any work."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mgen_jax.cli.flags import (DEFAULT_MAX_LENGTH, DEFAULT_MODEL, DEFAULT_REQUESTS, GLUE5, MAX_REQUESTS, MAX_TASKS,
                                or_default)
from mgen_jax.errors import ConfigError
from mgen_jax.io import describe_value

if TYPE_CHECKING:  # the hardware and workload modules are imported when a scenario is built, not with the CLI
    from mgen_jax.hw import BertArch, HardwareSpec, SharingTree
    from mgen_jax.hw.delta import DeltaPlan
    from mgen_jax.hw.density import InputDensities
    from mgen_jax.workload import Trace


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A discrete multi-task model on a chip and the workload it serves.

    ``branch_points`` has one entry per task (0..U); ``subsets`` is the task-set distribution {task-index tuple:
    probability} of --task-subsets (None: every request runs every task); ``densities`` the measured input bit
    densities, ``plan`` the DeltaPlan of --compressed (None when not given)."""

    spec: HardwareSpec
    arch: BertArch
    tasks: tuple[str, ...]
    num_labels: tuple[int, ...]
    branch_points: tuple[int, ...]
    trace: Trace
    subsets: dict[tuple[int, ...], float] | None = None
    subsets_text: str | None = None
    densities: InputDensities | None = None
    plan: DeltaPlan | None = None

    @property
    def workload(self) -> str:
        """The workload in words (lengths, request count, task sets): the trace's description."""
        return self.trace.description

    def tree(self) -> SharingTree:
        """The sharing tree of the branch points."""
        from mgen_jax.hw import SharingTree

        return SharingTree.from_branch_points(list(self.branch_points), self.arch.num_units)

    def header(self) -> dict[str, Any]:
        """What every command's result says of the scenario beside the simulator's summary: the branch points (those
        of --compressed when given) and the workload in words."""
        return {"branch_points": list(self.branch_points), "workload": self.workload}


def build_scenario(args: argparse.Namespace, *, expected: bool = False) -> Scenario:
    """The scenario of the command line; ConfigError (exit 2) for a flag that is wrong or would change nothing.
    ``expected``: the command reads the task-set distribution itself (mgen cost), never a trace's draws."""
    from mgen_jax import hw

    spec = hw.load_spec(args.hw)
    arch = hw.load_arch(or_default(args.model, DEFAULT_MODEL))
    check_flags_used(args, spec, expected=expected)
    densities = hw.load_input_densities(args.input_densities, spec) if args.input_densities else None
    if densities is not None:
        check_density_model(args.input_densities, densities, spec, arch)
    names, labels, glue = parse_tasks(args.tasks)
    b = parse_branch_points(args.branch_points, len(names), arch.num_units)
    plan = compressed_plan(args, b, names, glue, arch, spec) if args.compressed else None
    if plan is not None:
        b = list(plan.branch_points)
    length = args.max_length if args.max_length is not None or args.tokens is not None else DEFAULT_MAX_LENGTH
    for flag, value in (("--tokens", args.tokens), ("--max-length", length)):
        if value is not None and value > arch.max_position:
            default = " (its default)" if args.max_length is None and flag == "--max-length" else ""
            raise ConfigError(f"{flag} {value:,}{default} exceeds the {arch.max_position:,} positions of model "
                              f"{arch.name!r}")
    trace, subsets = build_trace(args, names, glue)
    return Scenario(spec=spec, arch=arch, tasks=names, num_labels=labels, branch_points=tuple(b), trace=trace,
                    subsets=subsets, subsets_text=args.task_subsets, densities=densities, plan=plan)


def build_trace(args: argparse.Namespace, names: tuple[str, ...], glue: bool):
    """(trace, task-set distribution or None): fixed lengths (--tokens) or real GLUE dev lengths, every request
    running every task unless --task-subsets says otherwise."""
    from mgen_jax.workload import assign_subsets, fixed_trace, parse_subsets
    from mgen_jax.workload.trace import proportional_subsets

    if args.tokens is not None:
        trace = fixed_trace(len(names), args.tokens, task_names=names)
    else:
        length_tasks = [s.strip() for s in args.length_tasks.split(",")] if args.length_tasks else None
        if not glue and not length_tasks:
            raise ConfigError("real lengths need GLUE task names (--tasks or --length-tasks), or give --tokens N")
        from mgen_jax.workload.glue import glue_trace

        trace = glue_trace(length_tasks or names, task_names=names, glue_dir=args.glue_dir,
                           max_length=or_default(args.max_length, DEFAULT_MAX_LENGTH))
    if not args.task_subsets:
        return trace, None
    subsets = parse_subsets(args.task_subsets, names)
    if args.tokens is None:
        return assign_subsets(trace, subsets, seed=or_default(args.seed, 0)), subsets
    requests = or_default(args.requests, DEFAULT_REQUESTS)  # one length: the expectation itself, in exact proportion
    check_exact_proportion(subsets, requests)
    fixed = fixed_trace(len(names), args.tokens, task_names=names, num_requests=requests)
    return proportional_subsets(fixed, subsets), subsets


def parse_tasks(text: str | None) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
    """--tasks -> (names, num_labels, are_glue_tasks)."""
    from mgen_jax.data.glue import get_task

    text = or_default(text, GLUE5).strip()
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


def parse_branch_points(text: str, num_tasks: int, num_units: int) -> list[int]:
    """--branch-points -> one value per task, each in 0..num_units."""
    try:
        if any(len(v.strip()) > 40 for v in text.split(",")):
            raise ValueError
        values = [int(v) for v in text.split(",") if v.strip()]
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


def check_flags_used(args: argparse.Namespace, spec, *, expected: bool) -> None:
    """ConfigError for a flag given where it changes nothing (it would be silently ignored)."""
    fixed, subsets = args.tokens is not None, bool(args.task_subsets)
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


def check_density_model(path: str, densities, spec, arch) -> None:
    """ConfigError unless the density file was measured on a model with ``arch``'s matrices (every one, no other)
    and, when its header names a preset, with ``arch``'s dims."""
    from mgen_jax import hw
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
        raise ConfigError(f"--input-densities {path} were measured on {measured} "
                          f"{model_fields(hw.arch.PRESETS[measured])}, not on model {arch.name!r} {model_fields(arch)}")


def check_exact_proportion(subsets: dict, requests: int) -> None:
    """ConfigError unless every task subset's probability x ``requests`` is a whole number (what the workload's
    description, 'in exact proportion', promises)."""
    for prob in subsets.values():
        count = prob * requests
        if abs(count - round(count)) > 1e-6 * max(1.0, count):
            raise ConfigError(f"--requests {requests:,}: a task subset of probability {prob:g} would need "
                              f"{count:g} requests; give a count that makes every probability x requests whole (e.g. "
                              f"{DEFAULT_REQUESTS:,} for probabilities of up to 4 decimals)")


def compressed_plan(args: argparse.Namespace, b: list[int], names: tuple[str, ...], glue: bool, arch, spec):
    """The DeltaPlan of --compressed; ConfigError if it disagrees with --tasks, --model, --hw or an explicit
    --branch-points."""
    from mgen_jax.hw.delta import load_delta_plan

    path = Path(args.compressed)
    plan = load_delta_plan(path / "report.json" if path.is_dir() else path)
    if plan.num_tasks != len(names):
        raise ConfigError(f"--compressed {path} holds {plan.num_tasks} tasks, --tasks names {len(names)}")
    plan.check_model(arch, names if glue else None, where=f"--compressed {path}")
    plan.check(spec, len(names), arch.num_units)
    if args.branch_points.strip() != "0" and list(plan.branch_points) != b:
        raise ConfigError(f"--branch-points {b} differ from the compressed model's {list(plan.branch_points)} "
                          "(leave --branch-points out to use them)")
    return plan
