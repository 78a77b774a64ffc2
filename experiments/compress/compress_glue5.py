"""Area (issue 15): the independent glue5 models as one pretrained base + compressed task deltas, no retraining.

    .venv/bin/python experiments/compress/compress_glue5.py [--runs runs/baseline] [--work runs/compress/glue5]
        [--tolerance 0.5] [--out experiments/results/compress_glue5.json]
    .venv/bin/python experiments/compress/compress_glue5.py --searched <sweep>/models/b_<...> [--work DIR]
    .venv/bin/python experiments/compress/compress_glue5.py --confidence 0.8 [--runs runs/baseline]

Independent mode (default):
1. ``mgen compress`` on the five fine-tuned runs (``--runs``/<TASK>): every task's private units over the pretrained
   base, both stages, each task's compression chosen on its held-out split (carved from train, mgen_jax.data.splits)
   within ``--tolerance`` points; the compressed model goes to ``--work``/both (deltas.msgpack, report.json);
2. stage one alone (kept blocks at full bits, ``bit_levels`` = weight bits), the same walk;
3. a curve for the plot: every task at the same crossbar budget fraction (allocation of profiler.py, no choice on
   any score), dev scores at each point;
4. dev scores of every model above, evaluated once each and only reported (nothing is chosen on dev);
5. eight tasks (configs/search/glue8.yaml): SST-2..RTE as measured; QNLI, MNLI and QQP have no fine-tuned models
   here, so each of them is given the delta structure (kept blocks, bits) of a measured task, the three largest
   measured deltas (labelled as such): area, energy and the scheduler (fast solver, ISAAC chip) on the 8-task dev-length
   trace, without and with the deltas.
Confidence mode (``--confidence q`` without ``--searched``): step 1 again with the walk bounding the q-quantile of each
budget's held-out drop over a paired bootstrap of the held-out rows (mgen_jax/compress/profiler.py), into
``--work``/both_q<q>; the result goes to ``heldout_rule_variants["bootstrap q<q>"]`` in ``--out`` (dev evaluated once,
reported only) and onto the plot.
Searched mode: ``mgen compress`` on a searched multi-task model folder, pretrained and trunk bases both profiled
per task; the result goes to ``searched.models[--label]`` (default: the folder's name) in ``--out``, with its area,
energy and dev score as ratios to the independent models (sharing alone, sharing + deltas), ``base_comparison`` and
the plot updated. Each mode keeps the other's results in ``--out``.

Energy: exact simulator, real dev lengths of the tasks, every request runs every task. Writes ``--out`` (JSON) and a
PNG beside it. Runtime here: about 40 minutes (2 cores shared with other work).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

GLUE5 = ("SST-2", "CoLA", "MRPC", "STS-B", "RTE")
GLUE8 = GLUE5 + ("QNLI", "MNLI", "QQP")
CURVE_FRACTIONS = (0.6, 0.45, 0.3)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def mean(d: dict[str, float]) -> float:
    return float(np.mean(list(d.values())))


def compression_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a compressed-model report, per task and in all."""
    hwr = report["hardware"]
    per_task = {}
    for t, name in enumerate(report["tasks"]):
        entries = [d for d in report["plan"]["deltas"] if d["task"] == t]
        bits = [m["delta_bits"] for d in entries for m in d["matrices"].values()]
        chosen = report["tasks_profiled"][name][report["base_choice"]["per_task"][name]]
        per_task[name] = {
            "base": report["base_choice"]["per_task"][name],
            "uncompressed_crossbars": chosen.get("uncompressed_crossbars"),
            "delta_crossbars": chosen.get("delta_crossbars"),
            "delta_fraction": None if chosen.get("delta_crossbars") is None else
            chosen["delta_crossbars"] / chosen["uncompressed_crossbars"],
            "delta_bits_histogram": {str(b): bits.count(b) for b in sorted(set(bits))},
            "heldout_drop": report["heldout"]["uncompressed"][name] - report["heldout"]["compressed"][name],
        }
        if "dev" in report:
            per_task[name] |= {"dev_uncompressed": report["dev"]["uncompressed"][name],
                               "dev_compressed": report["dev"]["compressed"][name],
                               "dev_drop": report["dev"]["uncompressed"][name] - report["dev"]["compressed"][name]}
    out = {"crossbars": hwr["compressed"]["crossbars"], "uncompressed_crossbars": hwr["uncompressed"]["crossbars"],
           "area_ratio": hwr["area_ratio"], "energy_ratio": hwr["energy_ratio"],
           "energy_per_request_j": hwr["compressed"]["energy_per_request_j"],
           "uncompressed_energy_per_request_j": hwr["uncompressed"]["energy_per_request_j"],
           "delta_crossbars": hwr["compressed"]["delta_crossbars"], "base_crossbars": hwr["compressed"]["base_crossbars"],
           "latency_ratio": hwr["compressed"]["latency_per_request_s"] / hwr["uncompressed"]["latency_per_request_s"],
           "per_task": per_task, "mean_heldout_drop": mean({k: v["heldout_drop"] for k, v in per_task.items()})}
    if "dev" in report:
        out |= {"mean_dev_uncompressed": mean(report["dev"]["uncompressed"]),
                "mean_dev_compressed": mean(report["dev"]["compressed"]),
                "mean_dev_drop": mean(report["dev"]["uncompressed"]) - mean(report["dev"]["compressed"])}
    return out


def curve(runs: Path, spec, arch, settings, glue_dir, trace) -> list[dict[str, Any]]:
    """Every task at the same budget fraction: crossbars, energy and dev scores (reported, nothing chosen on them)."""
    from mgen_jax.compress.blocks import allocate_to_budget
    from mgen_jax.compress.models import Evaluator, encoded_split, load_models
    from mgen_jax.compress.pipeline import hardware_summary
    from mgen_jax.compress.profiler import (calibration_of, compressed_model, plan_for, task_options, task_stats,
                                            uncompressed_crossbars)
    from mgen_jax.model.pretrained import load_pretrained

    models = load_models(runs, list(GLUE5))
    pre = load_pretrained(models.model_name)
    evaluator = Evaluator(pre.config, models.pooling)
    prepared = []
    for model in models.models:
        held = encoded_split(models, model.task, "heldout", pre.tokenizer, glue_dir)  # calibration rows only
        dev = encoded_split(models, model.task, "dev", pre.tokenizer, glue_dir)
        stats = task_stats(model, pre.config, models.pooling, held, settings.calibration_rows)
        options = task_options(model, "pretrained", stats, spec, settings.levels(spec), settings.bias_correction)
        prepared.append((model, dev, calibration_of(stats, settings), options, uncompressed_crossbars(model, spec)))
    points = []
    names = [m.task.name for m in models.models]
    for fraction in CURVE_FRACTIONS:
        records, dev_scores = {}, {}
        for model, dev, calibration, options, full in prepared:
            _, choices = allocate_to_budget(options, fraction * full)
            params, _ = compressed_model(model, "pretrained", choices, spec, calibration)
            dev_scores[model.task.name] = evaluator.score(model.task, params, dev)[0]
            records[model.task.name] = {"base": "pretrained", "choices": choices}
        plan = plan_for(models, records, spec)
        hwr = hardware_summary(spec, arch, plan, names, [m.task.num_labels for m in models.models], trace)
        points.append({"budget_fraction": fraction, "crossbars": hwr["compressed"]["crossbars"],
                       "area_ratio": hwr["area_ratio"], "energy_ratio": hwr["energy_ratio"],
                       "dev": dev_scores, "mean_dev": mean(dev_scores)})
        log(f"curve {fraction:.3f}: area {hwr['area_ratio']:.3f}x, energy {hwr['energy_ratio']:.3f}x, mean dev "
            f"{mean(dev_scores):.2f}")
    return points


def eight_tasks(spec, arch, plan5: dict[str, Any], glue_dir) -> dict[str, Any]:
    """Area, energy and schedule of 8 independent models as pretrained base + deltas: the five measured deltas and, for
    QNLI, MNLI and QQP, the delta structure of the three largest measured deltas (no fine-tuned models here)."""
    from mgen_jax.hw.delta import plan_from_dict
    from mgen_jax.hw.tree import SharingTree
    from mgen_jax.schedule import SchedulingProblem, solve
    from mgen_jax.sim import simulate
    from mgen_jax.workload.glue import glue_trace
    from mgen_jax.data.glue import get_task

    plan = plan_from_dict(plan5)
    sizes = {t: sum(len(m["kept_blocks"]) for d in plan5["deltas"] if d["task"] == t for m in d["matrices"].values())
             for t in range(len(GLUE5))}
    donors = sorted(sizes, key=lambda t: -sizes[t])[:3]
    units = dict(plan.units)
    for extra, donor in zip(range(len(GLUE5), len(GLUE8)), donors):
        units |= {(extra, u): e for (t, u), e in plan.units.items() if t == donor}
    plan8 = dataclasses.replace(plan, branch_points=(0,) * len(GLUE8), units=units)
    labels = [get_task(t).num_labels for t in GLUE8]
    trace = glue_trace(list(GLUE8), glue_dir=glue_dir)
    tree = SharingTree.from_branch_points([0] * len(GLUE8), arch.num_units)
    out: dict[str, Any] = {"tasks": list(GLUE8), "workload": trace.description,
                           "delta_source": {name: GLUE5[donor] for name, donor in zip(GLUE8[5:], donors)},
                           "note": "QNLI, MNLI and QQP have no fine-tuned models here: each is given the delta "
                                   "structure (kept blocks, bits) measured on the named glue5 task (the three largest "
                                   "measured deltas); areas and energies are exact for that structure, no accuracy is "
                                   "claimed for them"}
    for label, compression in (("uncompressed", None), ("compressed", plan8)):
        problem = SchedulingProblem(spec, arch, tree, trace, num_labels=labels, compression=compression)
        solution = solve(problem, "fast")
        sim = simulate(spec, arch, tree, trace, num_labels=labels, schedule=solution.schedule, compression=compression)
        s = sim.summary()
        out[label] = {"crossbars": s["crossbars"], "fits_on_chip": s["fits_on_chip"], "chip_crossbars": s["chip_crossbars"],
                      "energy_per_request_j": s["energy_per_request_j"],
                      "schedule": {"batch_size": solution.schedule.batch_size, "pinned_nodes": len(solution.schedule.pinned),
                                   "nodes": len(problem.nodes), "loads": s["schedule"]["loads"],
                                   "cells_written": s["schedule"]["cells_written"],
                                   "write_energy_per_request_j": s["breakdown_per_request_j"].get("write", 0.0),
                                   "reprogramming": s["schedule"]["loads"] > 0}}
        log(f"8 tasks {label}: {s['crossbars']:,} crossbars, loads {s['schedule']['loads']:,}")
    out["area_ratio"] = out["compressed"]["crossbars"] / out["uncompressed"]["crossbars"]
    out["energy_ratio"] = out["compressed"]["energy_per_request_j"] / out["uncompressed"]["energy_per_request_j"]
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mgen_jax.io import save_figure_atomic

    ind, both, one = result["independent"], result["compressed"], result["stage_one_only"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    pts = result["curve"]
    ax.plot([p["area_ratio"] for p in pts], [p["mean_dev"] for p in pts], "o-", color="0.6",
            label="every task at one budget fraction (both stages)")
    for p in pts:
        ax.annotate(f"E {p['energy_ratio']:.2f}x", (p["area_ratio"], p["mean_dev"]), textcoords="offset points",
                    xytext=(4, -11), fontsize=7, color="0.4")
    ax.plot([1.0], [ind["mean_dev"]], "s", color="k", label=f"independent models ({ind['crossbars']:,} crossbars)")
    ax.plot([one["area_ratio"]], [one["mean_dev_compressed"]], "^", color="tab:orange", ms=9,
            label=f"stage one only, chosen on held-out (E {one['energy_ratio']:.2f}x)")
    ax.plot([both["area_ratio"]], [both["mean_dev_compressed"]], "*", color="tab:red", ms=13,
            label=f"both stages, chosen on held-out (E {both['energy_ratio']:.2f}x)")
    for (label, entry), color in zip(result.get("searched", {}).get("models", {}).items(), ("tab:green", "tab:purple")):
        vs = entry.get("versus_independent")
        if not vs:
            continue
        share, both_ = vs["sharing_only"], vs["sharing_and_deltas"]
        ax.plot([share["area_ratio"], both_["area_ratio"]], [share["mean_dev"], both_["mean_dev"]], "--", color=color,
                lw=0.8)
        ax.plot([share["area_ratio"]], [share["mean_dev"]], "D", color=color, ms=7,
                label=f"searched {label}: sharing only (E {share['energy_ratio']:.2f}x)")
        ax.plot([both_["area_ratio"]], [both_["mean_dev"]], "P", color=color, ms=10,
                label=f"searched {label} + compressed deltas (E {both_['energy_ratio']:.2f}x)")
    for label, variant in result.get("heldout_rule_variants", {}).items():
        ax.plot([variant["area_ratio"]], [variant["mean_dev_compressed"]], "X", color="tab:brown", ms=10,
                label=f"both stages, held-out rule: {label} (E {variant['energy_ratio']:.2f}x)")
    ax.axhline(ind["mean_dev"] - 1.0, color="tab:red", lw=0.8, ls=":", label="1 point below independent")
    ax.axvline(0.26, color="tab:blue", lw=0.8, ls="--", label="0.26x (ICCAD 2021)")
    ax.set_xlabel("crossbars / independent models' crossbars")
    ax.set_ylabel("mean glue5 dev score")
    ax.set_title("glue5 on ISAAC: base + compressed deltas, no retraining\n(E: energy per request vs "
                 "independent, exact simulator, dev lengths)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=130)


def run_independent(args, spec, arch) -> dict[str, Any]:
    from mgen_jax.compress.pipeline import compress_folder, hardware_summary
    from mgen_jax.compress.profiler import ProfileSettings
    from mgen_jax.workload.glue import glue_trace

    trace = glue_trace(list(GLUE5), glue_dir=args.glue_dir)
    settings = ProfileSettings(tolerance_points=args.tolerance)
    work = Path(args.work)
    result: dict[str, Any] = {"mode": "independent", "runs": str(args.runs), "tasks": list(GLUE5), "hw": spec.name,
                              "workload": trace.description, "tolerance_points_heldout": args.tolerance}
    reports = {}
    for label, levels in (("compressed", None), ("stage_one_only", (spec.weight_bits,))):
        folder = work / ("both" if levels is None else "stage_one")
        if (folder / "report.json").is_file() and "dev" in json.loads((folder / "report.json").read_text()):
            log(f"{label}: reusing {folder / 'report.json'}")
            reports[label] = json.loads((folder / "report.json").read_text())
        else:
            log(f"{label}: compressing into {folder}")
            reports[label] = compress_folder(args.runs, folder, spec, arch, dataclasses.replace(settings, bit_levels=levels),
                                             tasks=list(GLUE5), glue_dir=args.glue_dir, evaluate_dev=True, trace=trace,
                                             log=log)
        result[label] = compression_summary(reports[label]) | {"folder": str(folder),
                                                               "wall_clock_s": reports[label]["wall_clock_s"]}
    both = reports["compressed"]
    result["independent"] = {"crossbars": both["hardware"]["uncompressed"]["crossbars"],
                             "energy_per_request_j": both["hardware"]["uncompressed"]["energy_per_request_j"],
                             "dev": both["dev"]["uncompressed"], "mean_dev": mean(both["dev"]["uncompressed"]),
                             "heldout": both["heldout"]["uncompressed"]}
    one, two = result["stage_one_only"], result["compressed"]
    result["stages"] = {
        "base_only_crossbars": two["base_crossbars"],
        "delta_crossbars_stage_one_only": one["delta_crossbars"],
        "delta_crossbars_both_stages": two["delta_crossbars"],
        "private_crossbars_uncompressed": sum(v["uncompressed_crossbars"] for v in two["per_task"].values()),
        "note": "stage one alone keeps blocks at 8 bits; both stages choose (kept blocks, bits) together per matrix; "
                "each was chosen by its own held-out walk at the same tolerance",
    }
    result["curve"] = curve(Path(args.runs), spec, arch, settings, args.glue_dir, trace)
    result["eight_tasks"] = eight_tasks(spec, arch, both["plan"], args.glue_dir)
    return result


def base_comparison(models: dict[str, dict]) -> dict[str, Any]:
    """Which base compressed better, per task of every searched model (delta crossbars each base needed within the
    tolerance; None where its walk found no fraction within it)."""
    rows = {}
    for label, entry in models.items():
        for task, kinds in entry["per_base_kind"].items():
            if set(kinds) >= {"pretrained", "trunk"} and entry["compressed"]["per_task"][task]["uncompressed_crossbars"]:
                rows[f"{label}/{task}"] = {kind: kinds[kind]["delta_crossbars"] for kind in ("pretrained", "trunk")} | {
                    "chosen": entry["base_choice"]["per_task"][task]}
    return {"pretrained_base": "the pretrained unit, stored once (the only base an independent model has)",
            "trunk_base": "the searched model's own trunk unit at the same depth, stored anyway",
            "per_task": rows}


def versus_independent(entry: dict[str, Any], independent: dict[str, Any] | None) -> dict[str, Any] | None:
    """A searched entry's sharing-only and sharing + deltas points as ratios to the independent models."""
    if not independent:
        return None
    comp = entry["compressed"]
    points = {"sharing_only": (comp["uncompressed_crossbars"], comp["uncompressed_energy_per_request_j"],
                               comp.get("mean_dev_uncompressed")),
              "sharing_and_deltas": (comp["crossbars"], comp["energy_per_request_j"], comp.get("mean_dev_compressed"))}
    out = {label: {"crossbars": xb, "area_ratio": xb / independent["crossbars"],
                   "energy_ratio": e / independent["energy_per_request_j"],
                   "mean_dev": dev, "drop": None if dev is None else independent["mean_dev"] - dev}
           for label, (xb, e, dev) in points.items()}
    return out | {"independent_crossbars": independent["crossbars"],
                  "independent_energy_per_request_j": independent["energy_per_request_j"],
                  "independent_mean_dev": independent["mean_dev"]}


def run_confidence(args, spec, arch) -> dict[str, Any]:
    from mgen_jax.compress.pipeline import compress_folder
    from mgen_jax.compress.profiler import BOOTSTRAP_DRAWS, ProfileSettings
    from mgen_jax.workload.glue import glue_trace

    q = args.confidence
    folder = Path(args.work) / f"both_q{q:g}"
    settings = ProfileSettings(tolerance_points=args.tolerance, heldout_confidence=q)
    report = compress_folder(args.runs, folder, spec, arch, settings, tasks=list(GLUE5), glue_dir=args.glue_dir,
                             evaluate_dev=True, trace=glue_trace(list(GLUE5), glue_dir=args.glue_dir), log=log)
    return compression_summary(report) | {"folder": str(folder), "heldout_confidence": q,
                                          "tolerance_points_heldout": args.tolerance,
                                          "rule": f"a budget passes when the {q:g}-quantile of its held-out drop over "
                                                  f"{BOOTSTRAP_DRAWS} paired bootstrap resamples is within "
                                                  f"{args.tolerance:g} points"}


def run_searched(args, spec, arch) -> dict[str, Any]:
    from mgen_jax.compress.pipeline import compress_folder
    from mgen_jax.compress.profiler import ProfileSettings

    label = args.label or Path(args.searched).name
    report = compress_folder(args.searched, Path(args.work) / label, spec, arch,
                             ProfileSettings(tolerance_points=args.tolerance), glue_dir=args.glue_dir,
                             evaluate_dev=True, log=log)  # workload: the model's tasks' dev lengths (main checks it)
    per_kind = {}
    for name, kinds in report["tasks_profiled"].items():
        per_kind[name] = {kind: {k: r.get(k) for k in ("chosen_budget_fraction", "delta_crossbars",
                                                          "uncompressed_crossbars", "heldout_score")}
                          for kind, r in kinds.items()}
    return {"folder": str(args.searched), "tasks": report["tasks"], "workload": report["hardware"]["workload"],
            "branch_points": report["plan"]["branch_points"], "compressed": compression_summary(report),
            "base_choice": report["base_choice"], "per_base_kind": per_kind,
            "sharing_only": {"crossbars": report["hardware"]["uncompressed"]["crossbars"],
                             "energy_per_request_j": report["hardware"]["uncompressed"]["energy_per_request_j"]}}


def same_workload(recorded: str | None, current: str) -> bool:
    """Do two workload descriptions name the same trace? Descriptions written since commit 37dd285 also give the
    request counts per task ("; 4,100 requests: SST-2 872, ..."); an older record's description lacks them, and is
    the same trace when it matches once they are dropped."""
    import re

    return recorded == current or recorded == re.sub(r"; [\d,]+ requests: [^)]*", "", current)


def main() -> None:
    from mgen_jax import hw

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/baseline", help="folder of fine-tuning runs, one per glue5 task")
    ap.add_argument("--searched", help="a searched multi-task model folder (searched mode)")
    ap.add_argument("--work", default="runs/compress/glue5", help="where the compressed models go (large files)")
    ap.add_argument("--label", help="key of the searched model in --out's searched.models [the folder's name]")
    ap.add_argument("--tolerance", type=float, default=0.5, help="largest held-out drop per task, points [0.5]")
    ap.add_argument("--hw", default="isaac")
    ap.add_argument("--glue-dir")
    ap.add_argument("--out", default="experiments/results/compress_glue5.json")
    ap.add_argument("--confidence", type=float, help="confidence mode: the walk bounds this bootstrap quantile of "
                    "the held-out drop (0.5 <= q < 1)")
    ap.add_argument("--replot", action="store_true",
                    help="only recompute the derived fields (ratios, base comparison) and the plot of --out")
    args = ap.parse_args()
    spec, arch = hw.load_spec(args.hw), hw.load_arch("minilm-l6")
    start = time.perf_counter()
    from mgen_jax.io import write_json_atomic

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    searched = previous.get("searched", {}).get("models", {})  # each mode keeps the other's results
    if args.replot:
        for entry in searched.values():
            entry["versus_independent"] = versus_independent(entry, previous.get("independent"))
        result = previous | {"searched": {"models": searched}}
    elif args.confidence is not None and not args.searched:
        variant = run_confidence(args, spec, arch) | {"wall_clock_s": time.perf_counter() - start}
        result = previous | {"heldout_rule_variants": previous.get("heldout_rule_variants", {}) |
                             {f"bootstrap q{args.confidence:g}": variant}}
    elif args.searched:
        label = args.label or Path(args.searched).name
        entry = run_searched(args, spec, arch) | {"wall_clock_s": time.perf_counter() - start}
        if previous.get("independent") and not same_workload(previous.get("workload"), entry["workload"]):
            raise SystemExit(f"{out}: the independent results were simulated on another workload "
                             f"({previous.get('workload')} vs {entry['workload']}); run both modes alike")
        entry["versus_independent"] = versus_independent(entry, previous.get("independent"))
        result = previous | {"searched": {"models": searched | {label: entry}}}
    else:
        result = run_independent(args, spec, arch) | {"wall_clock_s": time.perf_counter() - start}
        if previous.get("heldout_rule_variants"):
            result["heldout_rule_variants"] = previous["heldout_rule_variants"]
        for label, entry in searched.items():
            entry["versus_independent"] = versus_independent(entry, result["independent"])
        result["searched"] = {"models": searched}
    result["base_comparison"] = base_comparison(result["searched"]["models"])
    write_json_atomic(out, result)
    if "independent" in result:
        plot(result, out.with_suffix(".png"))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
