"""The independent models (``independent_runs``: one folder of separately fine-tuned task models per training seed).

The first folder is the reference run: with ``finetune_budget: independent`` every discrete model trains on its rows,
caps and budgets (``reference_runs`` reads and checks them), and its held-out scores are the bar of the task-weight
calibration and of the claim. ``independent_record`` describes every finished seed folder with its energy: a point
of the sweep of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError
from mgen_jax.io import read_json_file


def reference_runs(cfg, tasks: Sequence[Any]) -> list[dict[str, Any]] | None:
    """With ``finetune_budget: independent``: each task's reference run (the first independent_runs folder): its
    config.json and summary.json. Their held-out split, data seed, max_length and train caps must be ``cfg``'s."""
    if cfg.finetune_budget != "independent":
        return None
    runs = []
    for task in tasks:
        folder = Path(cfg.independent_dirs[0]) / task.name
        paths = [folder / "config.json", folder / "summary.json"]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ConfigError(f"finetune_budget: independent needs the finished independent {task.name} run: "
                              f"{missing[0]} not found (mgen finetune, experiments/glue5/run_independent.sh)")
        config, summary = (read_json_file(p, "independent run record") for p in paths)
        if "train_examples_seen" not in summary:
            raise ConfigError(f"{folder}: the run predates held-out splits and recorded budgets; fine-tune it again")
        run_cfg = config["config"]
        _check_split(cfg, task.name, folder, run_cfg)
        runs.append({"folder": str(folder), "config": run_cfg, "summary": summary,
                     "train_rows_digest": config.get("train_rows_digest")})
    return runs


def _check_split(cfg, task: str, folder: Path, run_cfg: dict[str, Any]) -> None:
    theirs = {k: run_cfg.get(k) for k in ("heldout_fraction", "heldout_max_rows", "heldout_seed", "data_seed",
                                           "max_length")}
    ours = cfg.heldout.to_dict() | {"data_seed": cfg.data_seed, "max_length": cfg.max_length}
    if theirs != ours:
        raise ConfigError(f"{folder}/config.json: the independent run used {theirs}, this search config "
                          f"{ours}: the equal-budget comparison needs the same held-out split, rows and "
                          "max_length")
    cap = (cfg.max_train_per_task or {}).get(task, run_cfg.get("max_train_examples"))
    if cap != run_cfg.get("max_train_examples"):
        raise ConfigError(f"search config field 'max_train_per_task.{task}' ({cap}) differs from the "
                          f"independent run's cap ({run_cfg.get('max_train_examples')}, {folder})")


def train_caps(cfg, tasks: Sequence[Any], reference: list[dict[str, Any]] | None) -> dict[str, int | None]:
    """Every task's cap on its training rows: the reference runs' own, else the config's ``max_train_per_task``."""
    if reference is not None:
        return {t.name: r["config"].get("max_train_examples") for t, r in zip(tasks, reference)}
    return {get_task(task).name: cap for task, cap in (cfg.max_train_per_task or {}).items()}


def check_reference_rows(tasks: Sequence[Any], train: Sequence[Any], reference: list[dict[str, Any]] | None) -> None:
    """ConfigError unless every task's training rows are its reference run's (by their digest)."""
    for task, rows, run in zip(tasks, train, reference or []):
        if run["train_rows_digest"] != rows.rows_digest:
            raise ConfigError(f"{task.name}: this run's training rows (digest {rows.rows_digest}) are not the "
                              f"independent run's ({run['train_rows_digest']}, {run['folder']}): the GLUE files "
                              "or the split settings differ")


def independent_record(gen) -> dict[str, Any] | None:
    """The separately fine-tuned models of ``independent_runs`` (every seed folder that is complete), with their
    energy (``gen.describe``): scores are means over the seeds, ``seeds`` holds each seed's record; None when no
    folder is complete."""
    runs = [run for run in (_seed_record(gen, folder) for folder in gen.cfg.independent_dirs) if run is not None]
    if not runs:
        return None
    mean = lambda key: {t.name: float(np.mean([r[key][t.name] for r in runs])) for t in gen.tasks}
    record = dict(runs[0]) | {"scores": mean("scores"), "seeds": runs, "num_seeds": len(runs),
                              "training_wall_clock_s": float(np.mean([r["training_wall_clock_s"] for r in runs]))}
    record["mean_score"] = float(np.mean(list(record["scores"].values())))
    record.pop("metrics", None)
    record["metrics_by_seed"] = [r["metrics"] for r in runs]
    if all("heldout_scores" in r for r in runs):
        record["heldout_scores"] = mean("heldout_scores")
        record["heldout_mean_score"] = float(np.mean(list(record["heldout_scores"].values())))
    return record


def _seed_record(gen, folder: str) -> dict[str, Any] | None:
    """One seed folder's record (every task's summary.json), or None while a task is missing."""
    metrics, heldout, wall, seeds, budget = {}, {}, 0.0, set(), {}
    for task in gen.tasks:
        path = Path(folder) / task.name / "summary.json"
        if not path.is_file():
            return None
        summary = read_json_file(path, "independent run summary")
        metrics[task.name] = summary["metrics"]
        if summary.get("heldout_metrics") is not None:
            heldout[task.name] = summary["heldout_metrics"]
        wall += summary["wall_clock_s"]
        seeds.add(summary.get("seed"))
        budget[task.name] = summary.get("train_examples_seen")
    record = gen.describe([0] * len(gen.tasks), metrics, heldout if len(heldout) == len(gen.tasks) else None)
    return record | {"folder": folder, "seed": seeds.pop() if len(seeds) == 1 else sorted(seeds),
                     "training_wall_clock_s": wall, "examples_seen": budget}
