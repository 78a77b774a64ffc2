"""Carry a long run's result files across machines and sessions: runs/ (ignored by git: hundreds of MB of weights and
checkpoints) <-> experiments/run_records/ (committed: small JSON files only).

    .venv/bin/python experiments/run_records.py save      [--runs runs] [--records experiments/run_records]
    .venv/bin/python experiments/run_records.py restore   [--runs runs] [--records experiments/run_records]

``save`` copies the JSON and JSON-lines files of every finished phase: a folder holding ``summary.json`` (an
independent fine-tuning run) or ``result.json`` (a warm-up, a search, a fine-tuned discrete model), and a sweep
workdir's own ``settings.json`` and ``task_weights_heldout.json``. ``restore`` copies them back where runs/ lacks them
(it never overwrites). A sweep with ``finetune_init: pretrained`` and no lambda searches resumes from these files
alone: finished models are read from their result.json, the selection from the cached held-out loss profile, and only
the models still missing are trained (mgen_jax/search/sweep.py). A distillation sweep's teacher outputs
(``teachers/**.npy``: a few hundred kB of logits on the training rows) are carried too, so that its models train in a
later session without the teachers' weights. An interrupted phase's checkpoint is not carried: it starts again.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

FINISHED = ("summary.json", "result.json")
SWEEP_FILES = ("settings.json", "task_weights_heldout.json")
MAX_BYTES = 2_000_000
SCRATCH = ("demo", "quick")  # runs/search/<name> of the small sweeps: rerun in minutes, never carried


def record_files(runs: Path) -> list[Path]:
    """The files ``save`` keeps, relative to ``runs``."""
    keep = set()
    for marker in FINISHED:
        for path in runs.rglob(marker):
            for f in path.parent.iterdir():
                if f.is_file() and f.suffix in (".json", ".jsonl") and f.stat().st_size <= MAX_BYTES:
                    keep.add(f)
    for workdir in (runs / "search").glob("*") if (runs / "search").is_dir() else []:
        for name in SWEEP_FILES:
            if (workdir / name).is_file():
                keep.add(workdir / name)
        keep.update(f for f in (workdir / "teachers").rglob("*.npy") if f.stat().st_size <= MAX_BYTES)
    rel = (p.relative_to(runs) for p in keep)
    return sorted(p for p in rel if "jax_cache" not in p.parts and "run_records" not in p.parts  # a code copy's records
                  and not (p.parts[0] == "search" and p.parts[1] in SCRATCH))


def copy(src_root: Path, dst_root: Path, files, *, overwrite: bool) -> int:
    done = 0
    for rel in files:
        src, dst = src_root / rel, dst_root / rel
        if dst.exists() and not overwrite:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--records", default="experiments/run_records")
    args = parser.parse_args()
    runs, records = Path(args.runs), Path(args.records)
    if args.action == "save":
        if not runs.is_dir():
            raise SystemExit(f"error: {runs} not found")
        files = record_files(runs)
        n = copy(runs, records, files, overwrite=True)
        print(f"saved {n} files of finished phases from {runs} to {records}")
    else:
        if not records.is_dir():
            print(f"nothing to restore: {records} does not exist yet")
            return
        files = sorted(p.relative_to(records) for p in records.rglob("*") if p.is_file())
        n = copy(records, runs, files, overwrite=False)
        print(f"restored {n} files from {records} to {runs} ({len(files) - n} already there)")


if __name__ == "__main__":
    main()
