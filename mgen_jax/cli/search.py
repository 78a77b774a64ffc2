"""The model generator: ``mgen search`` (one energy target or lambda), ``mgen sweep`` (lambda sweep + baselines,
Pareto plot) and ``mgen front`` (the accuracy/energy front at pre-registered budgets). The sentences that read a
record against its goal come from ``mgen_jax.search.judge``; this module prints them."""

from __future__ import annotations

import argparse
from pathlib import Path

from mgen_jax.cli.flags import DEFAULT_OUT, nonnegative_float, or_default, overrides, pick, with_flags
from mgen_jax.cli.output import log, print_json, print_table, wrote
from mgen_jax.errors import ConfigError

RUN_FLAGS = ("--config", "--workdir", "--set", "--glue-dir", "--no-progress", "--json")


def add_commands(sub, flags) -> None:
    p = sub.add_parser("search", parents=pick(flags, RUN_FLAGS + ("--seed",)),
                       help="one energy target: search and train in one run, evaluate")
    p.add_argument("--energy-target", help="energy per request / the independent models' (in [full sharing's "
                   "ratio, 1]): the gradient search in one run inside the training budget [the config's "
                   "gradient.energy_targets when it holds one]")
    p.add_argument("--lambda", dest="lam", type=nonnegative_float,
                   help="instead of a target: a fixed weight of the energy term after a warm-up")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("sweep", parents=pick(flags, RUN_FLAGS + ("--out", "--report-only")),
                       help="lambda sweep + baselines -> search_<name>.json and Pareto plot")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("front", parents=pick(flags, ("--config", "--out", "--report-only", "--glue-dir",
                                                     "--no-progress", "--json")),
                       help="the accuracy/energy front at pre-registered budgets, 3 seeds each")
    p.set_defaults(func=cmd_front)


def _generator(args: argparse.Namespace):
    from mgen_jax.search import ModelGenerator, load_search_config

    cfg = load_search_config(args.config, set_values=overrides(args.set))
    workdir = Path(args.workdir or f"runs/search/{cfg.name}")
    return ModelGenerator(cfg, workdir, glue_dir=args.glue_dir, progress=not args.no_progress)


def cmd_search(args: argparse.Namespace) -> None:
    from mgen_jax.search.judge import format_efficiency

    with_flags(overrides(args.set), {"seed": ("--seed", args.seed)})  # --seed 2 --set seed=1: exit 2 naming both
    if args.energy_target is None and args.lam is None:  # the config's one target, if it names exactly one
        from mgen_jax.search import load_search_config

        targets = load_search_config(args.config, set_values=overrides(args.set)).gradient.energy_targets
        args.energy_target = targets[0] if len(targets) == 1 else None
    if (args.energy_target is None) == (args.lam is None):
        raise ConfigError("mgen search needs exactly one of --energy-target (the gradient search in one run inside "
                          "the training budget; or a config whose gradient.energy_targets holds one target) and "
                          "--lambda (a fixed energy weight after a warm-up)")
    from mgen_jax.search.config import MAX_LAMBDA

    if args.lam is not None and args.lam > MAX_LAMBDA:
        raise ConfigError(f"--lambda {args.lam:g} is more than {MAX_LAMBDA:g} (lambda x energy ratio must stay a "
                          "finite loss)")
    if args.lam is not None and args.seed is not None:
        raise ConfigError("--seed has no effect with --lambda (the run trains with the config's seed); leave it out "
                          "or give --set seed=N")
    gen = _generator(args)
    if args.energy_target is not None:
        _search_target(gen, args)
        return
    warm = gen.warmup()
    found = gen.search(args.lam, warm)
    record = gen.finetune_and_evaluate(found["branch_points"], warm)
    if args.json:
        print_json({"lambda": args.lam, "search": found, "discrete_model": record})
        return
    print_table(f"mgen search lambda={args.lam:g}", [
        ("branch points", ",".join(map(str, record["branch_points"]))),
        ("dev mean score", f"{record['mean_score']:.2f}"),
        ("energy ratio", f"{record['energy_ratio']:.3f} ({format_efficiency(record['energy_ratio'])})"),
        ("crossbars", f"{record['crossbars']:,}"),
    ])


def _search_target(gen, args: argparse.Namespace) -> None:
    from mgen_jax.search.constrained import check_target
    from mgen_jax.search.gradient import gradient_run, target_range
    from mgen_jax.search.judge import format_efficiency

    seed = or_default(args.seed, gen.cfg.seed)
    low, high = target_range(gen)
    target = check_target(args.energy_target, low, high)
    record = gradient_run(gen, target, seed, gen.cfg.gradient)
    if args.json:
        print_json(record)
        return
    found = record["search"]
    repaired = f" (argmax {','.join(map(str, found['argmax_branch_points']))}, repaired)" if found["repaired"] else ""
    print_table(f"mgen search --energy-target {target:g} (seed {seed})", [
        ("branch points", ",".join(map(str, record["branch_points"])) + repaired),
        ("energy ratio", f"{record['energy_ratio']:.5f} = {format_efficiency(record['energy_ratio'])} "
                         f"(target {target:g}; exact simulator, real dev lengths)"),
        ("held-out mean score", f"{record['heldout_mean_score']:.2f}" if "heldout_mean_score" in record else "-"),
        ("dev mean score", f"{record['mean_score']:.2f} (evaluated once, reported only)"),
        ("crossbars", f"{record['crossbars']:,}"),
        ("mu (final, converged)", f"{found['mu']:.4g}, {found['mu_converged']}"),
        ("wall clock", f"{record['search_wall_clock_s']:.0f} s search + {record['train_wall_clock_s']:.0f} s training"),
    ])


def cmd_sweep(args: argparse.Namespace) -> None:
    from mgen_jax.search.judge import pending_line, sweep_headline
    from mgen_jax.search.sweep import run_sweep
    from mgen_jax.search.sweep_record import summary_table

    out = or_default(args.out, DEFAULT_OUT)
    record = run_sweep(_generator(args), out, report_only=args.report_only)
    if args.json:
        print_json(record)
    else:
        print(summary_table(record))
        for line in (pending_line(record["pending"]), sweep_headline(record)):
            if line:
                print(line)
    wrote(f"{out}/search_{record['name']}.json", f"{out}/search_{record['name']}.png")


def cmd_front(args: argparse.Namespace) -> None:
    from mgen_jax.search.front import Models, build_front, head_to_head_record, load_front_config, write_front
    from mgen_jax.search.judge import pending_line

    cfg = load_front_config(args.config)
    models = Models(glue_dir=args.glue_dir, progress=not args.no_progress)
    record = build_front(cfg, models, report_only=args.report_only, log=log)
    paths = write_front(record, or_default(args.out, DEFAULT_OUT))
    if args.json:
        print_json(record)
    else:
        print(front_table(record))
        if record["pending"]:
            print(pending_line(record["pending"], "run(s)"))
        print(record["headline"]["sentence"])
        h2h = head_to_head_record(record)
        if h2h is not None:
            print()
            print(head_to_head_table(h2h))
            for name, reading in h2h["goals"].items():
                print(f"{name}: {reading['sentence']}")
    wrote(*paths)


def front_table(record: dict) -> str:
    """Markdown: every budget's representative (and all-seed candidates): per-task and mean 3-seed dev scores, std,
    held-out mean, energy ratio, efficiency, crossbars, drop with its interval."""
    tasks = record["tasks"]
    lines = ["| budget | model | branch points | " + " | ".join(tasks) + " | dev mean ± std | held-out | energy "
             "ratio | efficiency | crossbars | drop [interval] | seeds |", "|---" * (len(tasks) + 10) + "|"]
    ind = record["independent"]
    lines.append("| - | independent | 0 | " + " | ".join(f"{ind['dev_scores_mean'][t]:.1f}" for t in tasks) +
                 f" | {_mean_std(ind['dev_mean_score'], ind['dev_mean_score_std'])} | "
                 f"{ind['heldout_mean_score'] or float('nan'):.2f} | 1.000 | 1.000x | {ind['crossbars']:,} | - | "
                 f"{len(ind['seeds'])} |")
    for point in record["points"]:
        for label, p in point["runs"].items():
            trees = {",".join(map(str, b)) for b in p["branch_points_by_seed"]}
            ci = p.get("drop_interval")
            drop = f"{p['drop_points']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}]" if ci else "-"
            mark = " (chosen)" if label == point["chosen"] else ""
            held = "-" if p["heldout_mean_score"] is None else f"{p['heldout_mean_score']:.2f}"
            lines.append(
                f"| {point['budget']} | {label}{mark} | {' / '.join(sorted(trees))} | " +
                " | ".join(f"{p['dev_scores_mean'][t]:.1f}" for t in tasks) +
                f" | {_mean_std(p['dev_mean_score'], p['dev_mean_score_std'])} | "
                f"{held} | {p['energy_ratio_max']:.5f} | {p['efficiency_text']} | "
                f"{max(p['crossbars_by_seed']):,} | {drop} | {len(p['seeds'])} |")
    return "\n".join(lines)


def head_to_head_table(h2h: dict) -> str:
    """Markdown: the gradient search and enumeration at each head-to-head budget: per-task dev means, dev and
    held-out means ± std over the seeds, each seed's tree and efficiency."""
    tasks = h2h["tasks"]
    lines = ["| budget | method | " + " | ".join(tasks) + " | dev mean ± std | held-out mean ± std | trees by seed | "
             "efficiency by seed |", "|---" * (len(tasks) + 6) + "|"]
    for b in h2h["budgets"]:
        for label, m in b["methods"].items():
            held = "-" if m["heldout_mean_score"] is None else _mean_std(m["heldout_mean_score"],
                                                                          m["heldout_mean_score_std"])
            lines.append(f"| {b['budget']} | {label} | " + " | ".join(f"{m['dev_scores_mean'][t]:.1f}" for t in tasks) +
                         f" | {_mean_std(m['dev_mean_score'], m['dev_mean_score_std'])} | {held} | " +
                         " / ".join(",".join(map(str, t)) for t in m["branch_points_by_seed"]) + " | " +
                         " / ".join(m["efficiency_by_seed"]) + " |")
    return "\n".join(lines)


def _mean_std(mean: float, std: float | None) -> str:
    """"69.24 ± 0.33"; a mean of one seed (no std) prints alone."""
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
