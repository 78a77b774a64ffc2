"""experiments/run_records.py: what a long run carries across machines (result files, sweep settings, teacher
outputs) and what it leaves (weights, checkpoints, scratch sweeps); restore never overwrites."""

import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "run_records.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], check=True, capture_output=True, text=True)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_save_and_restore(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    files = {
        "baseline/SST-2/summary.json": b"{}", "baseline/SST-2/metrics.jsonl": b"{}\n",
        "baseline/SST-2/final_params.msgpack": b"weights", "baseline/CoLA/checkpoint.msgpack": b"unfinished",
        "baseline/CoLA/metrics.jsonl": b"{}\n",  # no summary.json: an unfinished phase
        "search/bam/settings.json": b"{}", "search/bam/models/b_1-0/result.json": b"{}",
        "search/bam/models/b_1-0/checkpoint.msgpack": b"x", "search/bam/models/b_2-2/metrics.jsonl": b"{}\n",
        "search/demo/models/b_1-1/result.json": b"{}", "jax_cache/x/result.json": b"{}",
    }
    for name, data in files.items():
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_bytes(data)
    teacher = runs / "search/bam/teachers/runs_baseline_seed1/SST-2.npy"
    teacher.parent.mkdir(parents=True)
    np.save(teacher, np.arange(6, dtype=np.float32).reshape(3, 2))
    _run("save", "--runs", runs, "--records", records)
    assert sorted(_tree(records)) == sorted([
        "baseline/SST-2/summary.json", "baseline/SST-2/metrics.jsonl", "search/bam/settings.json",
        "search/bam/models/b_1-0/result.json", "search/bam/teachers/runs_baseline_seed1/SST-2.npy"])
    fresh = tmp_path / "fresh"
    (fresh / "search/bam").mkdir(parents=True)
    (fresh / "search/bam/settings.json").write_bytes(b"{\"kept\": 1}")
    out = _run("restore", "--runs", fresh, "--records", records).stdout
    assert "restored 4 files" in out and "1 already there" in out
    assert (fresh / "search/bam/settings.json").read_bytes() == b"{\"kept\": 1}"  # never overwritten
    np.testing.assert_array_equal(np.load(fresh / "search/bam/teachers/runs_baseline_seed1/SST-2.npy"),
                                  np.load(teacher))
