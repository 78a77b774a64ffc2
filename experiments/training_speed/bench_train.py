"""Training throughput (sequences/s) of all-MiniLM-L6-v2 fine-tuning, with and without length bucketing.

    .venv/bin/python experiments/training_speed/bench_train.py [--steps 20] [--out experiments/results/bench_train.json]

For each task, real train rows are batched (batch 32) either by length buckets (16, 32, 48, 64, 96, 128) or padded
to max_length 128; the script compiles every shape first, then times ``--steps`` training steps, the two variants in
alternating order (host load moves timings by up to ~1.7x). Runtime here: about 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from mgen_jax.data.glue import get_task
from mgen_jax.data.pipeline import batch_plan, collate
from mgen_jax.io import write_json_atomic
from mgen_jax.model.bert import SequenceClassifier
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.train.config import FinetuneConfig
from mgen_jax.train.finetune import TrainState, init_params, make_optimizer, make_train_step, prepare_data
from mgen_jax.train.parallel import data_mesh, replicate, shard_batch


def run_variant(task: str, bucketing: bool, steps: int, pretrained, glue_dir) -> dict:
    cfg = FinetuneConfig(task=task, max_train_examples=steps * 32, batch_size=32, bucketing=bucketing)
    mesh = data_mesh()
    train, _ = prepare_data(cfg, pretrained.tokenizer, glue_dir)
    module = SequenceClassifier(pretrained.config, get_task(task).num_labels)
    tx = make_optimizer(cfg, steps)
    params = init_params(module, pretrained.params, cfg, pretrained.config)
    state = replicate(TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)), mesh)
    step = make_train_step(module, get_task(task), tx, jax.random.PRNGKey(0))
    plan = batch_plan(train.lengths, 32, buckets=cfg.buckets, shuffle=True, seed=0, epoch=0, bucketing=bucketing)
    batches = [shard_batch(collate(train, idx, pad, 32), mesh) for idx, pad in plan]
    compiled = set()
    for batch in batches:  # compile every shape before timing
        shape = batch["input_ids"].shape
        if shape not in compiled:
            state, loss = step(state, batch)
            loss.block_until_ready()
            compiled.add(shape)
    start = time.perf_counter()
    for batch in batches:
        state, loss = step(state, batch)
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    sequences = sum(len(idx) for idx, _ in plan)
    tokens = int(sum(train.lengths))
    padded = sum(pad * 32 for _, pad in plan)
    return {"task": task, "bucketing": bucketing, "steps": len(batches), "sequences": sequences, "seconds": seconds,
            "sequences_per_s": sequences / seconds, "real_tokens_per_s": tokens / seconds,
            "padding_fraction": 1 - tokens / padded, "shapes": sorted(s[1] for s in compiled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--tasks", default="SST-2,MRPC")
    parser.add_argument("--glue-dir")
    parser.add_argument("--out", default="experiments/results/bench_train.json")
    args = parser.parse_args()
    pretrained = load_pretrained("minilm-l6")
    rows = []
    for task in args.tasks.split(","):
        for bucketing in (True, False):
            row = run_variant(task, bucketing, args.steps, pretrained, args.glue_dir)
            rows.append(row)
            print(f"{task:6} bucketing={str(bucketing):5}  {row['sequences_per_s']:7.1f} sequences/s  "
                  f"{row['real_tokens_per_s']:7.0f} real tokens/s  padding {100 * row['padding_fraction']:4.1f} %  "
                  f"shapes {row['shapes']}")
    record = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                          "backend": jax.default_backend(), "devices": len(jax.devices())},
              "model": "minilm-l6", "batch_size": 32, "max_length": 128, "dropout": True, "rows": rows}
    for task in args.tasks.split(","):
        on, off = (next(r for r in rows if r["task"] == task and r["bucketing"] == b) for b in (True, False))
        record.setdefault("speedup", {})[task] = on["sequences_per_s"] / off["sequences_per_s"]
        print(f"{task}: bucketing speed-up {record['speedup'][task]:.2f}x")
    write_json_atomic(Path(args.out), record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
