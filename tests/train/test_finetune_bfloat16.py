"""Fine-tuning with ``compute_dtype: bfloat16`` learns as in float32 (the quick SST-2 run, the same bar as
test_finetune.py's) and keeps float32 weights."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from mgen_jax.train import load_config, train_and_evaluate
from mgen_jax.train.checkpoint import restore_checkpoint

REPO = Path(__file__).parents[2]


def test_quick_run_learns_sst2_in_bfloat16(tmp_path, glue_dir):
    cfg = load_config(REPO / "configs/finetune/quick.yaml", heldout_max_rows=64, buckets=(32, 64, 96, 128),
                      compute_dtype="bfloat16")
    summary = train_and_evaluate(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    assert summary["metrics"]["accuracy"] >= 0.65  # chance 0.5; float32 reaches about 0.8, bfloat16 0.78 here
    assert json.loads((tmp_path / "config.json").read_text())["config"]["compute_dtype"] == "bfloat16"
    params = restore_checkpoint(tmp_path / "final_params.msgpack", None)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
