"""Fine-tuning on real SST-2 slices: it learns (MiniLM), it resumes exactly after an interruption, it fails clearly, it
is data parallel (a tiny random BERT: the loop, not the weights, is the point)."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mgen_jax.train import FinetuneConfig, TrainingError, load_config, train_and_evaluate
from mgen_jax.train.checkpoint import restore_checkpoint

REPO = Path(__file__).parents[2]
TINY = dict(task="SST-2", max_train_examples=48, max_dev_examples=32, epochs=1, batch_size=8, eval_batch_size=16,
            learning_rate=1e-4, checkpoint_every_steps=2, max_length=64, buckets=(64,))


def test_quick_run_learns_sst2(tmp_path, glue_dir):
    """configs/finetune/quick.yaml: 512 real SST-2 rows, one epoch; dev accuracy (256 rows) must beat chance by 0.15.
    The held-out split is cut to 64 rows and the padded lengths to every 32 tokens (not 1,000 rows and every 8
    tokens): a fifth of the compilations and of the evaluation, the same recipe and number of training rows."""
    cfg = load_config(REPO / "configs/finetune/quick.yaml", heldout_max_rows=64, buckets=(32, 64, 96, 128))
    summary = train_and_evaluate(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    assert summary["metrics"]["accuracy"] >= 0.65
    assert summary["train_examples"] == 512 and summary["dev_examples"] == 256
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == summary["steps"]
    for name in ("config.json", "summary.json", "checkpoint.msgpack", "final_params.msgpack"):
        assert (tmp_path / name).exists()


def _final_params(workdir):
    return restore_checkpoint(workdir / "final_params.msgpack", None)


def test_resume_after_interrupt_is_exact(tmp_path, glue_dir, tiny_bert_dir):
    cfg = FinetuneConfig(**TINY, model=str(tiny_bert_dir))
    whole = train_and_evaluate(cfg, tmp_path / "whole", glue_dir=glue_dir, progress=False)
    stopped = train_and_evaluate(cfg, tmp_path / "cut", glue_dir=glue_dir, progress=False, stop_at_step=3)
    assert stopped == {"stopped_at_step": 3, "total_steps": 6}
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = train_and_evaluate(cfg, tmp_path / "cut", glue_dir=glue_dir, progress=False)
    assert resumed["metrics"] == whole["metrics"]
    a, b = _final_params(tmp_path / "whole"), _final_params(tmp_path / "cut")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    # a finished run is read back: nothing is evaluated or written again (dev is evaluated once per model)
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "whole").iterdir()
             if p.is_file() and p.name != ".mgen.lock"}  # the lock is taken anew
    assert train_and_evaluate(cfg, tmp_path / "whole", glue_dir=glue_dir, progress=False) == whole
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == files


def test_nan_loss_is_a_clear_error(tmp_path, glue_dir, tiny_bert_dir, monkeypatch):
    import mgen_jax.train.finetune as finetune

    monkeypatch.setattr(finetune, "per_example_loss", lambda task, outputs, labels: outputs[:, 0] * np.nan)
    with pytest.raises(TrainingError, match="loss became nan at step 1"):
        train_and_evaluate(FinetuneConfig(**TINY, model=str(tiny_bert_dir)), tmp_path, glue_dir=glue_dir, progress=False)


@pytest.mark.parametrize(
    "change, words",
    [({"batch_size": 0}, "batch_size"), ({"learning_rate": 2.0}, "learning_rate"), ({"pooling": "max"}, "pooling"),
     ({"buckets": (16, 32)}, "buckets"), ({"epochs": -1}, "epochs")],
)
def test_bad_config_fields(change, words):
    from mgen_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=words):
        FinetuneConfig(**(TINY | change))


def test_config_file_errors(tmp_path):
    from mgen_jax.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("task: SST-2\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown field.*learning_rat"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_data_parallel_on_two_cpu_devices(tmp_path, glue_dir, tiny_bert_dir, host_devices_env):
    """The same tiny run on 2 forced host devices (jax.sharding data parallelism) matches the 1-device run."""
    values = TINY | {"model": str(tiny_bert_dir)}
    script = (
        "import json, sys, jax\n"
        "from mgen_jax.train import FinetuneConfig, train_and_evaluate\n"
        f"cfg = FinetuneConfig(**{values!r})\n"
        "s = train_and_evaluate(cfg, sys.argv[1], glue_dir=sys.argv[2], progress=False)\n"
        "print(json.dumps({'devices': len(jax.devices()), 'metrics': s['metrics']}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "dp"), str(glue_dir)], env=host_devices_env(2),
                         capture_output=True, text=True, check=True, cwd=REPO)
    two = json.loads(out.stdout.strip().splitlines()[-1])
    assert two["devices"] == 2
    one = train_and_evaluate(FinetuneConfig(**values), tmp_path / "single", glue_dir=glue_dir, progress=False)
    assert json.loads((tmp_path / "dp" / "config.json").read_text())["devices"] == 2
    a, b = _final_params(tmp_path / "dp"), _final_params(tmp_path / "single")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, atol=2e-4)
    assert abs(two["metrics"]["accuracy"] - one["metrics"]["accuracy"]) <= 1 / 32


def test_shipped_finetune_configs_load():
    paths = sorted((REPO / "configs/finetune").glob("*.yaml"))
    assert len(paths) >= 9  # one per GLUE task + quick
    for path in paths:
        assert isinstance(load_config(path), FinetuneConfig), path.name
