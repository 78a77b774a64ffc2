"""Scheduler experiment: request-major, task-major and our schedule on independent, fully shared and searched MiniLM
models, 8 GLUE tasks, real dev lengths, on an ISAAC chip and on one of half its size.

    .venv/bin/python experiments/schedule/schedule_experiment.py [--out experiments/results]
        [--searched experiments/results/search_glue8.json | --searched none]

Writes schedule.json (energy by component, loads, worst-cell writes, peak buffer, DRAM traffic, lifetime at 1e6 and
1e12 writes per cell) and schedule.png. The searched model is the "best" of ``--searched`` (the model generator's
8-task record; a missing file is an error, ``none`` leaves the searched model out), beside the two reference trees
and an intermediate one (every task branching at the middle of the encoder). Runtime here: about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mgen_jax import hw
from mgen_jax.data.glue import get_task
from mgen_jax.io import save_figure_atomic, write_json_atomic
from mgen_jax.schedule import SchedulingProblem, solve
from mgen_jax.sim import simulate
from mgen_jax.workload.glue import glue_trace

GLUE8 = ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "MNLI", "QQP"]
METHODS = ["request-major", "task-major", "fast"]
LABELS = {"request-major": "request-major", "task-major": "task-major", "fast": "ours"}


def models(arch: hw.BertArch, searched: Path | None) -> dict[str, dict]:
    """The trees to schedule: the two references, every task branching at the middle of the encoder, and the
    model generator's best 8-task model from ``searched`` (None: left out). Each with its mean dev score where that file
    has the tree (independent: the separately fine-tuned models; fully shared: the full-sharing baseline)."""
    u = arch.num_units
    out = {"independent": {"branch_points": [0] * 8}, "fully shared": {"branch_points": [u] * 8},
           "middle branch (b=6)": {"branch_points": [u // 2] * 8}}
    if searched is not None:
        record = json.loads(searched.read_text())
        best = record["best"]
        out["searched"] = {"branch_points": best["branch_points"]}
        for name, kind in (("independent", "independent"), ("fully shared", "full sharing"), ("searched", None)):
            point = best if kind is None else next((p for p in record["points"] if p["kind"] == kind), None)
            if point is not None:
                out[name] |= {"mean_dev_score": point["mean_score"], "from": f"{searched.name}: {point['label']}"}
    return out


def run(out_dir: Path, glue_dir=None, searched: Path | None = Path("experiments/results/search_glue8.json")) -> dict:
    arch = hw.load_arch("minilm-l6")
    labels = [get_task(t).num_labels for t in GLUE8]
    trace = glue_trace(GLUE8, glue_dir=glue_dir)
    record = {"tasks": GLUE8, "model": arch.name, "workload": trace.description, "requests": trace.num_requests,
              "batch": "the whole trace is one batch", "models": models(arch, searched), "results": []}
    for chip in ("isaac", "isaac-half"):
        spec = hw.load_spec(chip)
        for name, info in record["models"].items():
            b = info["branch_points"]
            tree = hw.SharingTree.from_branch_points(b, arch.num_units)
            problem = SchedulingProblem(spec, arch, tree, trace, num_labels=labels)
            for method in METHODS:
                start = time.perf_counter()
                solution = solve(problem, method)
                solve_s = time.perf_counter() - start
                sim = simulate(spec, arch, tree, trace, num_labels=labels, schedule=solution.schedule).summary()
                row = {
                    "chip": chip, "model": name, "branch_points": b, "scheduler": LABELS[method],
                    "energy_per_request_j": sim["energy_per_request_j"],
                    "breakdown_per_request_j": sim["breakdown_per_request_j"],
                    "crossbars": sim["crossbars"], "chip_crossbars": sim["chip_crossbars"],
                    "schedule": solution.schedule.describe() | {"pinned": len(solution.schedule.pinned)},
                    "executed": sim["schedule"], "solver_cost_j": solution.cost.energy_j, "solve_s": solve_s,
                }
                record["results"].append(row)
                life = row["executed"]["lifetime_requests_at_1e6_writes"]
                print(f"{chip:10} {name:20} {LABELS[method]:13} m={solution.schedule.batch_size:<6} "
                      f"{row['energy_per_request_j'] * 1e6:9.2f} uJ/request  loads {row['executed']['loads']:>8,}  "
                      f"lifetime@1e6 {'unlimited' if life is None else f'{life:,.0f}'}")
    write_json_atomic(out_dir / "schedule.json", record)
    plot(record, out_dir / "schedule.png")
    return record


def plot(record: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chips = list(dict.fromkeys(r["chip"] for r in record["results"]))
    names = list(dict.fromkeys(r["model"] for r in record["results"]))
    components = [c for c in hw.COMPONENTS if any(r["breakdown_per_request_j"][c] > 0 for r in record["results"])]
    colors = dict(zip(components, plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, len(chips), figsize=(7.6 * len(chips), 4.6), sharey=True)
    for ax, chip in zip(np.atleast_1d(axes), chips):
        ticks, labels = [], []
        for i, name in enumerate(names):
            for j, sched in enumerate(LABELS.values()):
                row = next(r for r in record["results"] if (r["chip"], r["model"], r["scheduler"]) == (chip, name, sched))
                x = i * (len(LABELS) + 1) + j
                bottom = 0.0
                for c in components:
                    v = row["breakdown_per_request_j"][c] * 1e6
                    ax.bar(x, v, bottom=bottom, color=colors[c], label=c if (i, j) == (0, 0) else None, width=0.85)
                    bottom += v
                ticks.append(x)
                short = {"request-major": "RM", "task-major": "TM"}.get(sched, sched)
                labels.append(f"{short}\n{name}" if j == 1 else short)
        ax.set_xticks(ticks, labels, fontsize=8, rotation=0)
        ax.set_title(f"{chip} ({hw.load_spec(chip).chip_crossbars:,} crossbars)", fontsize=10)
        ax.set_ylabel("energy per request (uJ)")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("8 GLUE tasks on MiniLM, real dev lengths: compute + crossbar writes + DRAM spills "
                 "(RM = request-major, TM = task-major)", fontsize=10)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--glue-dir")
    parser.add_argument("--searched", default="experiments/results/search_glue8.json",
                        help="the 8-task sweep record whose best model is scheduled ('none': leave it out)")
    args = parser.parse_args()
    searched = None if args.searched == "none" else Path(args.searched)
    if searched is not None and not searched.is_file():
        parser.error(f"--searched {searched}: no such file (run the 8-task sweep first, or pass --searched none)")
    run(Path(args.out), args.glue_dir, searched)


if __name__ == "__main__":
    main()
