"""Trained models out of mgen: ``mgen export`` (Hugging Face BERT directories + the task head) and ``mgen compress``
(task models as a shared base + compressed deltas)."""

from __future__ import annotations

import argparse

from mgen_jax.cli.flags import (DEFAULT_MODEL, csv, nonnegative_float, nonnegative_int, or_default, pick,
                                positive_int, required, task_list)
from mgen_jax.cli.output import fmt_j, log, print_json, print_table, wrote

EXPORT_FLAGS = ("--out", "--json")
COMPRESS_FLAGS = ("--out", "--tasks", "--hw", "--model", "--glue-dir", "--json")


def add_commands(sub, flags) -> None:
    p = sub.add_parser("export", parents=pick(flags, EXPORT_FLAGS),
                       help="a fine-tuned or multi-task model as Hugging Face BERT directories + head")
    p.add_argument("--run", required=True,
                   help="a fine-tuning run folder (final_params.msgpack) or a sweep's models/b_<...> folder")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("compress", parents=pick(flags, COMPRESS_FLAGS),
                       help="task models as a shared base + compressed deltas, chosen on held-out")
    p.add_argument("--source", required=True, help="a fine-tuning run folder, a folder of them (<TASK>/), or a "
                   "searched model folder (<sweep>/models/b_<...>)")
    p.add_argument("--tolerance", type=nonnegative_float, help="largest held-out score drop per task, points [0.5]")
    p.add_argument("--budgets", type=csv(float), help="crossbar budget fractions tried, largest first "
                   "[0.5,0.35,0.25,0.18,0.13,0.09,0.065,0.045,0.03,0.02,0.01,0]")
    p.add_argument("--confidence", type=float, help="q in [0.5, 1): a budget passes when the q-quantile of its "
                   "held-out drop over a paired bootstrap of the rows is within the tolerance [off: the drop itself]")
    p.add_argument("--refine-steps", type=nonnegative_int, help="bisection steps after the first failing budget [3]")
    p.add_argument("--calibration-rows", type=positive_int, help="held-out rows for the block ranking [256]")
    p.add_argument("--bit-levels", type=csv(int), help="delta bits tried, e.g. 8 for stage one alone [2,4,6,8]")
    p.add_argument("--base", type=csv(str), help="base kinds tried: pretrained, trunk [every kind the source has]")
    p.add_argument("--no-bias-correction", action="store_true", help="do not fold the mean error into the biases")
    p.add_argument("--dev", action="store_true", help="also report dev scores (evaluated once, never chosen on)")
    p.set_defaults(func=cmd_compress)


def cmd_export(args: argparse.Namespace) -> None:
    from mgen_jax.export import export_run

    written = export_run(args.run, required(args.out, "--out"))
    if args.json:
        print_json([str(p) for p in written])
    else:
        print_table(f"mgen export: {args.out} (load one with mgen_jax.export.load_exported(<directory>))",
                    [(path.name, str(path)) for path in written])
    wrote(*written)


def cmd_compress(args: argparse.Namespace) -> None:
    from mgen_jax import hw
    from mgen_jax.compress import ProfileSettings, compress_folder

    out = required(args.out, "--out")
    fields = {k: v for k, v in {
        "tolerance_points": args.tolerance, "budgets": args.budgets, "refine_steps": args.refine_steps,
        "calibration_rows": args.calibration_rows, "bit_levels": args.bit_levels, "base_kinds": args.base,
        "heldout_confidence": args.confidence,
    }.items() if v is not None}
    settings = ProfileSettings(**fields, bias_correction=not args.no_bias_correction)
    report = compress_folder(args.source, out, hw.load_spec(args.hw), hw.load_arch(or_default(args.model,
                                                                                               DEFAULT_MODEL)),
                             settings, tasks=task_list(args.tasks, None), glue_dir=args.glue_dir,
                             evaluate_dev=args.dev, log=log)
    if args.json:
        print_json({k: v for k, v in report.items() if k != "tasks_profiled"})
        return
    h = report["hardware"]
    rows = [(name, f"held-out {report['heldout']['uncompressed'][name]:.2f} -> "
                   f"{report['heldout']['compressed'][name]:.2f}, base {report['base_choice']['per_task'][name]}")
            for name in report["tasks"]]
    rows += [("crossbars", f"{h['uncompressed']['crossbars']:,} -> {h['compressed']['crossbars']:,} "
                           f"({h['area_ratio']:.3f}x; bases {h['compressed']['base_crossbars']:,}, deltas "
                           f"{h['compressed']['delta_crossbars']:,})"),
             ("energy per request", f"{fmt_j(h['uncompressed']['energy_per_request_j'])} -> "
                                    f"{fmt_j(h['compressed']['energy_per_request_j'])} ({h['energy_ratio']:.3f}x)")]
    print_table(f"mgen compress: {out}", rows)
