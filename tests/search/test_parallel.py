"""The model generator is data parallel over every device (jax.sharding): a tiny equal-budget sweep (warm-up,
held-out profile, budget selection, fine-tuning, evaluation) on two forced host devices, and on two processes of one
device each (jax.distributed on localhost), matches one device."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from mgen_jax.search.config_file import nest
from mgen_jax.train.checkpoint import restore_checkpoint

REPO = Path(__file__).parents[2]
SWEEP = ["-m", "mgen_jax.cli", "sweep", "--no-progress", "--json"]


def _config(path: Path, model: Path) -> Path:
    values = dict(tasks=["SST-2", "STS-B"], model=str(model), independent_runs=None, finetune_init="pretrained",
                  finetune_budget={"SST-2": {"examples": 48}, "STS-B": {"examples": 32}}, finetune_batch_size=8,
                  lr_finetune=1e-3, max_train_per_task={"SST-2": 64, "STS-B": 64}, heldout_max_rows=16,
                  max_dev_per_task=16, max_length=64, buckets=[64], per_task_batch=4, length_window=16, warmup_steps=2,
                  warmup_sampling="hard", search_steps=0, lambdas=[], profile_metric="score", energy_budgets=[0.6],
                  uniform_branch_points=[], heuristic_thresholds=[], redundancy_file=None, checkpoint_every_steps=4)
    path.write_text(yaml.safe_dump(nest(values)))
    return path


def _args(config: Path, work: Path, glue_dir) -> list[str]:
    return SWEEP + ["--config", str(config), "--workdir", str(work), "--out", str(work), "--glue-dir", str(glue_dir)]


def _sweep(config: Path, work: Path, glue_dir, env: dict) -> dict:
    run = subprocess.run([sys.executable, *_args(config, work, glue_dir)], cwd=REPO, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, tiny_bert_dir, glue_dir, host_devices_env):
    """(config, workdir, sweep record) of the tiny sweep on one device."""
    folder = tmp_path_factory.mktemp("parallel")
    config = _config(folder / "tiny.yaml", tiny_bert_dir)
    return config, folder / "one", _sweep(config, folder / "one", glue_dir, host_devices_env(1))


def _same_sweep(one: dict, one_dir: Path, other: dict, other_dir: Path, devices: int) -> None:
    assert [p["devices"] for p in other["points"] if "devices" in p] and all(
        p["devices"] == devices for p in other["points"] if "devices" in p)
    key = lambda r: sorted((p["label"], tuple(p["branch_points"])) for p in r["points"])
    assert key(one) == key(other)  # the same trees chosen
    profile = [json.loads((d / "warmup" / "loss_profile_heldout.json").read_text()) for d in (one_dir, other_dir)]
    np.testing.assert_allclose(profile[0]["mean_loss"], profile[1]["mean_loss"], rtol=1e-3, atol=1e-4)
    by_label = {p["label"]: p for p in other["points"]}
    for p in one["points"]:
        q = by_label[p["label"]]
        assert p["energy_per_request_j"] == q["energy_per_request_j"]
        for task in p["scores"]:  # a handful of 16-row evaluations: at most one example may flip
            assert abs(p["scores"][task] - q["scores"][task]) <= 100 / 16 + 1e-9, (p["label"], task)
    for folder in (one_dir / "models").iterdir():
        a = restore_checkpoint(folder / "params.msgpack", None)
        b = restore_checkpoint(other_dir / "models" / folder.name / "params.msgpack", None)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, atol=2e-4)


def test_two_devices_match_one(tmp_path, one_device, glue_dir, host_devices_env):
    config, one_dir, one = one_device
    two = _sweep(config, tmp_path / "two", glue_dir, host_devices_env(2))
    _same_sweep(one, one_dir, two, tmp_path / "two", 2)


def _untimed(record):
    """``record`` without its clocks (wall_clock_s fields, real_tokens_per_s)."""
    if isinstance(record, dict):
        return {k: _untimed(v) for k, v in record.items() if "wall_clock" not in k and not k.endswith("per_s")}
    return [_untimed(v) for v in record] if isinstance(record, list) else record


def test_two_processes_match_one(tmp_path, one_device, glue_dir, run_processes):
    config, one_dir, one = one_device
    outs = run_processes(_args(config, tmp_path / "two", glue_dir), 2)
    two = [json.loads(out) for out in outs]  # stdout is the record alone (gloo's connection lines go to stderr)
    assert _untimed(two[0]) == _untimed(two[1])  # every process ends with the whole record (its own clocks)
    _same_sweep(one, one_dir, two[0], tmp_path / "two", 2)
    lines = (tmp_path / "two" / "warmup" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2]  # written once, by process 0
