"""Every flag of ``mgen``, each declared once.

A flag that several commands take is one parent parser (``shared_flags``); a command lists the names of the shared
flags it takes and declares only its own. A shared flag has one default for every command: where commands differ
(the model of ``mgen finetune`` is its config's, ``mgen export`` and ``mgen compress`` need ``--out``), the default
is None and the command fills it in (``or_default``, ``required``).
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, Sequence

from mgen_jax.errors import ConfigError

GLUE5 = "SST-2,CoLA,MRPC,STS-B,RTE"
DEFAULT_HW = "isaac"
DEFAULT_MODEL = "minilm-l6"
DEFAULT_OUT = "runs/results"  # user runs write here; the committed records under experiments/results are
# rewritten only by the experiment scripts that own them (they pass --out experiments/results)
DEFAULT_MAX_LENGTH = 128
DEFAULT_REQUESTS = 10_000
MAX_REQUESTS = 1_000_000  # --requests: a trace of this many requests takes ~1 GB and ~30 s to simulate here
MAX_TASKS = 1024  # --tasks N


def typed(kind: type, test: Callable[[Any], bool], words: str) -> Callable[[str], Any]:
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


def csv(kind: type) -> Callable[[str], tuple]:
    """An argparse type: a comma-separated list of ``kind``."""
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    return parse


INT_LIMIT = 2**53  # integer flags: far beyond any count or seed, and exact as a float
positive_int = typed(int, lambda v: 1 <= v <= INT_LIMIT, "an integer in 1..2**53")
nonnegative_int = typed(int, lambda v: 0 <= v <= INT_LIMIT, "an integer in 0..2**53")
positive_float = typed(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonnegative_float = typed(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
length = typed(int, lambda v: 4 <= v <= INT_LIMIT, "an integer >= 4 ([CLS], [SEP] and some text)")

# name -> (add_argument keywords): the flags that more than one command takes
SHARED: dict[str, dict[str, Any]] = {
    "--hw": dict(default=DEFAULT_HW, help=f"hardware preset name (configs/hw/) or YAML path [{DEFAULT_HW}]"),
    "--model": dict(help=f"BERT: minilm-l6 | bert-base | bert-large, or a Hugging Face config.json / directory "
                         f"(finetune: a directory with weights or a hub name) [{DEFAULT_MODEL}; finetune: the "
                         "config's]"),
    "--tasks": dict(help=f"GLUE task names, comma-separated (simulate, cost, schedule: or a number of tasks T) "
                         f"[{GLUE5}; compress: every finished run of --source]"),
    "--seed": dict(type=nonnegative_int, help="finetune, search: the training seed [the config's]; simulate, "
                                              "schedule: with real lengths and --task-subsets, the seed that draws "
                                              "each request's task set [0]"),
    "--max-length": dict(type=length, help=f"truncation of real lengths, tokens, at most the model's positions "
                                           f"[{DEFAULT_MAX_LENGTH}]"),
    "--branch-points": dict(default="0", help="b1,...,bT (task t shares units 1..b_t), or one value for every task; "
                                              "0 = independent, U = full sharing"),
    "--tokens": dict(type=positive_int, help="fixed token count per request, at most the model's positions (default: "
                                             "real GLUE dev lengths)"),
    "--length-tasks": dict(help="GLUE tasks whose dev sets give the lengths [the --tasks names]"),
    "--task-subsets": dict(help='task-set distribution, e.g. "SST-2+CoLA:0.5,MRPC:0.5" [every task]'),
    "--requests": dict(type=positive_int, help=f"with --tokens and --task-subsets: requests (at most "
                                               f"{MAX_REQUESTS:,}), task sets in exact proportion "
                                               f"[{DEFAULT_REQUESTS:,}]"),
    "--input-densities": dict(help="measured input bit densities (JSON, experiments/hardware/fidelity.py) for a "
                                   "preset with data_dependent_inputs [the preset's input_bit_density_default]"),
    "--compressed": dict(help="own unit copies as base + compressed delta: a folder of mgen compress (or its "
                              "report.json, or a plan JSON); its branch points are the model's"),
    "--glue-dir": dict(help="GLUE TSV folder [$MGEN_GLUE_DIR or ../shared/data/glue]"),
    "--json": dict(action="store_true", help="print the result as one JSON object on stdout (logs and 'wrote' "
                                             "lines go to stderr)"),
    "--out": dict(help=f"output folder [{DEFAULT_OUT}; export, compress: required]"),
    "--config": dict(required=True, help="YAML config: configs/finetune/, configs/search/ or configs/front/ "
                                         "for the command"),
    "--workdir": dict(help="run folder, resumable [finetune: runs/finetune/<TASK>; search, sweep: "
                           "runs/search/<config name>]"),
    "--set": dict(action="append", metavar="FIELD=VALUE",
                  help="override any config field (repeatable; the value is read as YAML; a flag of the same "
                       "field must agree); search configs: section.FIELD too, and gradient.FIELD=VALUE or "
                       "gradient={...} merge into the gradient section"),
    "--no-progress": dict(action="store_true", help="no progress bars (logs still go to stderr)"),
    "--report-only": dict(action="store_true", help="train nothing: write the record (and plot) of the models "
                                                    "finished so far, the others listed as pending"),
}


# the flags of a scenario (a model on a chip and its workload: simulate, cost, schedule), in the order of their help
SCENARIO = ("--hw", "--model", "--tasks", "--branch-points", "--tokens", "--length-tasks", "--max-length", "--glue-dir",
            "--task-subsets", "--seed", "--requests", "--json", "--input-densities", "--compressed")


def shared_flags() -> dict[str, argparse.ArgumentParser]:
    """One parent parser per shared flag: a command built with ``parents=[flags[name], ...]`` holds the same
    argparse action as every other command that takes the flag."""
    parents = {}
    for name, options in SHARED.items():
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(name, **options)
        parents[name] = parent
    return parents


def pick(flags: dict[str, argparse.ArgumentParser], names: Sequence[str]) -> list[argparse.ArgumentParser]:
    """The parent parsers of ``names`` (shared flags, in the order the command's help lists them)."""
    return [flags[name] for name in names]


def or_default(value: Any, default: Any) -> Any:
    """A shared flag's value, or the command's own default when the flag was not given."""
    return default if value is None else value


def required(value: Any, flag: str) -> Any:
    """A shared flag that the command cannot do without (exit 2 naming it, as argparse does)."""
    if value is None:
        raise ConfigError(f"the following argument is required: {flag}")
    return value


def task_list(text: str | None, default: str | None = GLUE5) -> list[str] | None:
    """--tasks as a list of names (None when neither the flag nor ``default`` gives any)."""
    text = or_default(text, default)
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set field=value`` pairs (the value read as YAML: 3, 1e-4, [0.5, 0.25], null, text) -> {field: value}."""
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


def with_flags(set_values: dict[str, Any], flags: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """A command's config overrides: its ``--set`` values (``overrides``) and its flags, ``{field: (flag, value)}``
    (value None: the flag was not given). A flag and a ``--set`` of the same field must agree: a contradiction exits 2
    naming both (neither silently wins)."""
    from mgen_jax.io import describe_value

    out = dict(set_values)
    for field, (flag, value) in flags.items():
        if value is None:
            continue
        if field in out and not _same_value(out[field], value):
            raise ConfigError(f"{flag} {describe_value(value, 40)} and --set {field}={describe_value(out[field], 40)} "
                              "contradict each other: give the field once")
        out[field] = value
    return out


def _same_value(a: Any, b: Any) -> bool:
    """Whether a ``--set`` value and a flag's say the same (a number may come as YAML text, e.g. 1e-4)."""
    if a == b:
        return True
    try:
        return not isinstance(a, bool) and not isinstance(b, bool) and float(a) == float(b)
    except (TypeError, ValueError, OverflowError):
        return False
