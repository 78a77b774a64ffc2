"""Collect the independent fine-tuned baselines into experiments/results/baseline_independent.json.

    for t in sst2 cola mrpc stsb rte; do mgen finetune --config configs/finetune/$t.yaml --workdir runs/baseline/...; done
    .venv/bin/python experiments/collect_baseline.py [--runs runs/baseline]

Reads <runs>/<TASK>/summary.json and config.json of every task that has finished, and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mgen_jax.io import write_json_atomic

TASKS = ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "MNLI", "QQP"]
NOTES = {"MNLI": "all-MiniLM-L6-v2 was trained on data including MultiNLI",
         "QQP": "all-MiniLM-L6-v2 was trained on data including QQP"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/baseline")
    parser.add_argument("--out", default="experiments/results/baseline_independent.json")
    args = parser.parse_args()
    tasks = {}
    for name in TASKS:
        path = Path(args.runs) / name / "summary.json"
        if not path.is_file():
            continue
        s = json.loads(path.read_text())
        tasks[name] = {
            "metrics": s["metrics"], "main_metric": s["main_metric"], "score": s["score"],
            "train_examples": s["train_examples"], "train_split": s["train_split"], "dev_examples": s["dev_examples"],
            "dev_split": s["dev_split"], "epochs": s["epochs"], "steps": s["steps"], "batch_size": s["batch_size"],
            "learning_rate": s["learning_rate"], "max_length": s["max_length"], "seed": s["seed"],
            "wall_clock_s": s["wall_clock_s"], "devices": s["devices"], "backend": s["backend"],
            "config": f"configs/finetune/{name.lower().replace('-', '')}.yaml",
        } | ({"note": NOTES[name]} if name in NOTES else {})
    if not tasks:
        raise SystemExit(f"no finished runs under {args.runs}")
    record = {
        "model": "minilm-l6 (all-MiniLM-L6-v2), each task fine-tuned alone; mean pooling + fresh pooler/classifier",
        "tasks": tasks, "mean_score": sum(t["score"] for t in tasks.values()) / len(tasks),
        "total_wall_clock_s": sum(t["wall_clock_s"] for t in tasks.values()),
    }
    write_json_atomic(args.out, record)
    print("| task | metric(s) on dev | train rows | epochs | wall-clock |")
    print("|---|---|---:|---:|---:|")
    for name, t in tasks.items():
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in t["metrics"].items())
        print(f"| {name} | {metrics} | {t['train_examples']:,} | {t['epochs']:g} | {t['wall_clock_s'] / 60:.1f} min |")
    print(f"mean score {record['mean_score']:.2f} (main metric x 100); wrote {args.out}")


if __name__ == "__main__":
    main()
