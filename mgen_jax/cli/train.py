"""Single-task models: ``mgen finetune`` (fine-tune a pretrained BERT on one GLUE task) and ``mgen analyze`` (how
redundant the fine-tuned task models are)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mgen_jax.cli.flags import (DEFAULT_OUT, nonnegative_int, or_default, overrides, pick, positive_float,
                                positive_int, task_list, with_flags)
from mgen_jax.cli.output import print_json, print_table, wrote

FINETUNE_FLAGS = ("--config", "--workdir", "--model", "--seed", "--set", "--glue-dir", "--no-progress", "--json")
ANALYZE_FLAGS = ("--tasks", "--glue-dir", "--out", "--json")


def add_commands(sub, flags) -> None:
    p = sub.add_parser("finetune", parents=pick(flags, FINETUNE_FLAGS),
                       help="fine-tune a pretrained BERT on one GLUE task (resumes from its workdir)")
    p.add_argument("--task", help="GLUE task (overrides the config's)")
    p.add_argument("--max-train-examples", type=positive_int, help="cap on the training rows (a seeded subset)")
    p.add_argument("--epochs", type=positive_float, help="passes over the training rows")
    p.add_argument("--learning-rate", type=positive_float, help="peak AdamW learning rate")
    p.add_argument("--batch-size", type=positive_int, help="global batch, split across the JAX devices")
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("analyze", parents=pick(flags, ANALYZE_FLAGS),
                       help="redundancy of fine-tuned task models: weight change and CKA per unit")
    p.add_argument("--runs", default="runs/baseline", help="folder with <TASK>/final_params.msgpack [runs/baseline]")
    p.add_argument("--per-task", type=positive_int, default=64,
                   help="probe examples per task, from the held-out split [64]")
    p.add_argument("--stem", default="redundancy_glue5", help="output file name stem [redundancy_glue5]")
    p.set_defaults(func=cmd_analyze)


def cmd_finetune(args: argparse.Namespace) -> None:
    from mgen_jax.train import load_config, train_and_evaluate

    given = {field: ("--" + field.replace("_", "-"), getattr(args, field)) for field in (
        "task", "model", "max_train_examples", "epochs", "seed", "learning_rate", "batch_size")}
    cfg = load_config(args.config, set_values=with_flags(overrides(args.set), given))
    workdir = Path(args.workdir or f"runs/finetune/{cfg.task}")
    summary = train_and_evaluate(cfg, workdir, glue_dir=args.glue_dir, progress=not args.no_progress)
    if args.json:
        print_json(summary)
        return
    held = "-" if summary["heldout_score"] is None else f"{summary['heldout_score']:.2f}"
    print_table(f"mgen finetune {summary['task']}: {workdir}", [
        ("dev " + ", ".join(summary["metrics"]), ", ".join(f"{v:.4f}" for v in summary["metrics"].values())),
        ("held-out score", held),
        ("train rows / examples seen", f"{summary['train_examples']:,} / {summary['train_examples_seen']:,}"),
        ("steps, wall-clock", f"{summary['steps']:,}, {summary['wall_clock_s'] / 60:.1f} min"),
    ])


def cmd_analyze(args: argparse.Namespace) -> None:
    from mgen_jax.analysis import run_analysis

    out = Path(or_default(args.out, DEFAULT_OUT))
    record = run_analysis(Path(args.runs), task_list(args.tasks), out, glue_dir=args.glue_dir,
                          per_task=args.per_task, stem=args.stem)
    paths = (out / f"{args.stem}.json", out / f"{args.stem}.png")
    if args.json:
        print_json(record)
        wrote(*paths)
        return
    print(f"{'unit':<8}" + "".join(f"{t:>9}" for t in record["tasks"]) + "  mean pairwise CKA")
    for u, name in enumerate(record["units"]):
        row = "".join(f"{record['relative_weight_change'][t][u]:9.3f}" for t in record["tasks"])
        print(f"{name:<8}{row}  {record['mean_pairwise_cka'][u]:.3f}")
    print("(columns per task: relative weight change of the unit)")
    wrote(*paths)
