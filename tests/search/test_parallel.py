"""The model generator is data parallel over every local device (jax.sharding): a tiny equal-budget sweep on two
forced host devices (warm-up, held-out profile, budget selection, fine-tuning, evaluation) matches one device."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).parents[2]


def _config(path: Path, model: Path) -> Path:
    values = dict(tasks=["SST-2", "STS-B"], model=str(model), independent_runs=None, finetune_init="pretrained",
                  finetune_budget={"SST-2": {"examples": 48}, "STS-B": {"examples": 32}}, finetune_batch_size=8,
                  lr_finetune=1e-3, max_train_per_task={"SST-2": 64, "STS-B": 64}, heldout_max_rows=16,
                  max_dev_per_task=16, buckets=[32, 64, 128], per_task_batch=4, length_window=16, warmup_steps=2,
                  warmup_sampling="hard", search_steps=0, lambdas=[], profile_metric="score", energy_budgets=[0.6],
                  uniform_branch_points=[], heuristic_thresholds=[], redundancy_file=None, checkpoint_every_steps=4)
    path.write_text(yaml.safe_dump(values))
    return path


def _sweep(config: Path, work: Path, glue_dir, devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    run = subprocess.run([sys.executable, "-m", "mgen_jax.cli", "sweep", "--config", str(config), "--workdir",
                          str(work), "--out", str(work), "--glue-dir", str(glue_dir), "--no-progress", "--json"],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_two_devices_match_one(tmp_path, tiny_bert_dir, glue_dir):
    config = _config(tmp_path / "tiny.yaml", tiny_bert_dir)
    one = _sweep(config, tmp_path / "one", glue_dir, 1)
    two = _sweep(config, tmp_path / "two", glue_dir, 2)
    assert [p["devices"] for p in two["points"] if "devices" in p] and all(
        p["devices"] == 2 for p in two["points"] if "devices" in p)
    key = lambda r: sorted((p["label"], tuple(p["branch_points"])) for p in r["points"])
    assert key(one) == key(two)  # the same trees chosen
    profile = [json.loads((tmp_path / d / "warmup" / "loss_profile_heldout.json").read_text()) for d in ("one", "two")]
    np.testing.assert_allclose(profile[0]["mean_loss"], profile[1]["mean_loss"], rtol=1e-3, atol=1e-4)
    by_label = {p["label"]: p for p in two["points"]}
    for p in one["points"]:
        q = by_label[p["label"]]
        assert p["energy_per_request_j"] == q["energy_per_request_j"]
        for task in p["scores"]:  # a handful of 16-row evaluations: at most one example may flip
            assert abs(p["scores"][task] - q["scores"][task]) <= 100 / 16 + 1e-9, (p["label"], task)
    from mgen_jax.train.checkpoint import restore_checkpoint
    import jax

    for folder in (tmp_path / "one" / "models").iterdir():
        a = restore_checkpoint(folder / "params.msgpack", None)
        b = restore_checkpoint(tmp_path / "two" / "models" / folder.name / "params.msgpack", None)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_allclose(x, y, atol=2e-4)
