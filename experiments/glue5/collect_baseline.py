"""Collect the independent fine-tuned baselines into experiments/results/baseline_independent.json.

    for t in sst2 cola mrpc stsb rte; do mgen finetune --config configs/finetune/$t.yaml --workdir runs/baseline/...; done
    .venv/bin/python experiments/glue5/collect_baseline.py
        [--runs runs/baseline runs/baseline_seed1 runs/baseline_seed2]

Reads <runs>/<TASK>/summary.json of every task that has finished in each run folder (one per training seed), and
prints a Markdown table: seed 0's metrics, the dev score's mean (and standard deviation) over the seeds, seed 0's
held-out score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean, stdev

from mgen_jax.io import write_json_atomic

TASKS = ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "MNLI", "QQP"]
NOTES = {"MNLI": "all-MiniLM-L6-v2 was trained on data including MultiNLI",
         "QQP": "all-MiniLM-L6-v2 was trained on data including QQP"}


def _task_record(s: dict, name: str) -> dict:
    return {
        "metrics": s["metrics"], "main_metric": s["main_metric"], "score": s["score"],
        "heldout_metrics": s.get("heldout_metrics"), "heldout_score": s.get("heldout_score"),
        "train_examples": s["train_examples"], "train_examples_seen": s.get("train_examples_seen"),
        "train_split": s["train_split"], "heldout_examples": s.get("heldout_examples"),
        "dev_examples": s["dev_examples"], "dev_split": s["dev_split"], "epochs": s["epochs"], "steps": s["steps"],
        "batch_size": s["batch_size"], "learning_rate": s["learning_rate"], "max_length": s["max_length"],
        "seed": s["seed"], "wall_clock_s": s["wall_clock_s"], "devices": s["devices"], "backend": s["backend"],
        "config": f"configs/finetune/{name.lower().replace('-', '')}.yaml",
    } | ({"note": NOTES[name]} if name in NOTES else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["runs/baseline"],
                        help="run folders, one per training seed (the first is the reference) [runs/baseline]")
    parser.add_argument("--out", default="experiments/results/baseline_independent.json")
    args = parser.parse_args()
    tasks, seeds = {}, {}
    for name in TASKS:
        runs = []
        for root in args.runs:
            path = Path(root) / name / "summary.json"
            if path.is_file():
                runs.append(_task_record(json.loads(path.read_text()), name) | {"folder": str(Path(root) / name)})
        if not runs:
            continue
        tasks[name] = runs[0] | {"num_seeds": len(runs), "score_mean": mean(r["score"] for r in runs),
                                 "score_std": stdev([r["score"] for r in runs]) if len(runs) > 1 else None}
        seeds[name] = runs
    if not tasks:
        raise SystemExit(f"no finished runs under {args.runs}")
    full = [n for n in tasks if tasks[n]["num_seeds"] == len(args.runs)]
    record = {
        "model": "minilm-l6 (all-MiniLM-L6-v2), each task fine-tuned alone; mean pooling + fresh pooler/classifier",
        "runs": args.runs, "tasks": tasks, "by_seed": seeds,
        "mean_score": mean(t["score"] for t in tasks.values()),
        "mean_score_over_seeds": mean(tasks[n]["score_mean"] for n in full) if full else None,
        "tasks_with_every_seed": full,
        "total_wall_clock_s": sum(t["wall_clock_s"] for t in tasks.values()),
    }
    write_json_atomic(args.out, record)
    print("| task | metric(s) on dev (seed 0) | dev score, mean of seeds | held-out score | train rows | epochs | "
          "wall-clock |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, t in tasks.items():
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in t["metrics"].items())
        spread = "" if t["score_std"] is None else f" +- {t['score_std']:.2f}"
        held = "-" if t["heldout_score"] is None else f"{t['heldout_score']:.2f}"
        print(f"| {name} | {metrics} | {t['score_mean']:.2f}{spread} ({t['num_seeds']}) | {held} | "
              f"{t['train_examples']:,} | {t['epochs']:g} | {t['wall_clock_s'] / 60:.1f} min |")
    print(f"mean score {record['mean_score']:.2f} (seed 0, main metric x 100); wrote {args.out}")


if __name__ == "__main__":
    main()
