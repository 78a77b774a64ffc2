"""The ``mgen`` command line: thin parsing around the library.

    mgen demo      a small live gradient search, then the committed five-task front (the README's first command)
    mgen simulate  exact simulator on a trace (fixed length or real GLUE dev lengths)
    mgen cost      differentiable cost model on the same workload statistics
    mgen schedule  task scheduler (residency, batch size, order) and its simulated cost
    mgen report    energy breakdown of independent vs fully shared models, JSON + stacked bar PNG
    mgen finetune  fine-tune a pretrained BERT on one GLUE task
    mgen analyze   redundancy analysis of fine-tuned task models (weight change, CKA per unit)
    mgen search    model generator for one energy target or lambda;  mgen sweep: lambda sweep + baselines, Pareto plot
    mgen front     the accuracy/energy front at pre-registered budgets
    mgen export    fine-tuned or multi-task models as Hugging Face BERT directories (+ the task head)
    mgen compress  task models as a shared base + compressed deltas (area), chosen on held-out; simulate, cost and
                   schedule take the result with --compressed

Every command prints its result on stdout (a table, or one JSON object with --json) and its logs and "wrote <path>"
lines on stderr. Files go to runs/ unless --out or --workdir say otherwise. One module per command group:
demo, hardware (simulate, cost, report), schedule, train (finetune, analyze), search (search, sweep, front), models
(export, compress); the flags several commands share are declared once, in flags.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mgen_jax.cli import demo, hardware, models, schedule, search, train
from mgen_jax.cli.flags import shared_flags
from mgen_jax.cli.run import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, run_command

GROUPS = (demo, hardware, schedule, train, search, models)  # in the order of ``mgen --help``


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
    flags = shared_flags()
    for group in GROUPS:
        group.add_commands(sub, flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mgen argv`` (the process's arguments when None); returns the exit status: 0, EXIT_BAD_INPUT (2),
    EXIT_FAILED (1) or EXIT_INTERRUPTED (130)."""
    return run_command(build_parser, argv)


__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "build_parser", "main"]
