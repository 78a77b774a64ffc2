"""Throughput of equal-budget multi-task fine-tuning (search/budget.py) against independent fine-tuning on glue5.

    .venv/bin/python experiments/training_speed/bench_equal_budget.py [--sample 48] [--padding-only]
        [--out experiments/results/bench_equal_budget.json]

1. Padding, exact: over every step of one equal-budget glue5 model (each task's stream as its independent model
   trains it: configs/finetune/{sst2,cola,mrpc,stsb,rte}.yaml, the held-out split removed, batch 32), for the shipped
   buckets (every 8 tokens) and the former ones (16, 32, 48, 64, 96, 128); and over the warm-up's mixed batches
   [T, 8, L] (configs/search/glue5.yaml).
2. Speed: a seeded random sample of ``--sample`` steps of the interleaved schedule, each step timed as an independent
   fine-tuning step (the task's own classifier, AdamW) and as an equal-budget multi-task step at b = 0, 6 and 12
   (lazy AdamW over the trunk, own units and heads), every shape compiled first, the variants in alternating order
   (host load moves timings by up to 1.7x). The projection of one model's fine-tuning is the mean step time x the
   number of steps, compile and evaluation excluded.
Runtime here: 10-18 minutes (most of it compiling 4 step variants per padded length; 750 s of compilation on a slow
hour).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from mgen_jax.data.glue import get_task
from mgen_jax.data.pipeline import BatchStream, collate, encode_split
from mgen_jax.data.splits import train_and_heldout
from mgen_jax.io import write_json_atomic
from mgen_jax.model.bert import SequenceClassifier
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search.budget import budget_optimizer, init_budget_state, interleave, make_budget_step, task_steps
from mgen_jax.search.config import load_search_config
from mgen_jax.search.data import MultiTaskData
from mgen_jax.train.config import load_config
from mgen_jax.train.finetune import TrainState, init_params, make_optimizer, make_train_step

CONFIGS = {"SST-2": "sst2", "CoLA": "cola", "MRPC": "mrpc", "STS-B": "stsb", "RTE": "rte"}
OLD_BUCKETS = (16, 32, 48, 64, 96, 128)


def streams_for(pretrained, buckets, glue_dir=None):
    rows, streams = [], []
    for task, name in CONFIGS.items():
        cfg = load_config(f"configs/finetune/{name}.yaml")
        train, _ = train_and_heldout(task, cfg.heldout, max_train_examples=cfg.max_train_examples,
                                     data_seed=cfg.data_seed, glue_dir=glue_dir)
        enc = encode_split(train, pretrained.tokenizer, max_length=cfg.max_length)
        rows.append(enc)
        streams.append(BatchStream.for_epochs(enc.lengths, cfg.batch_size, cfg.epochs, buckets=buckets, seed=cfg.seed))
    return rows, streams


def padding(streams) -> dict:
    per_task, real_all, padded_all = {}, 0, 0
    for task, stream in zip(CONFIGS, streams):
        real, padded = stream.tokens()
        per_task[task] = 1 - real / padded
        real_all, padded_all = real_all + real, padded_all + padded
    return {"padding_fraction": 1 - real_all / padded_all, "per_task": per_task, "real_tokens": real_all,
            "padded_tokens": padded_all, "steps": sum(s.steps for s in streams)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=48, help="steps of the schedule timed per variant [48]")
    parser.add_argument("--padding-only", action="store_true", help="part 1 only (exact, seconds): no timing")
    parser.add_argument("--glue-dir")
    parser.add_argument("--out", default="experiments/results/bench_equal_budget.json")
    args = parser.parse_args()
    pretrained = load_pretrained("minilm-l6")
    search = load_search_config("configs/search/glue5.yaml")
    buckets = tuple(search.buckets)

    rows, streams = streams_for(pretrained, buckets, args.glue_dir)
    pad_new = padding(streams)
    pad_old = padding(streams_for(pretrained, OLD_BUCKETS, args.glue_dir)[1])
    data = MultiTaskData(list(CONFIGS), pretrained.tokenizer, max_length=128, buckets=buckets,
                         per_task_batch=search.per_task_batch, length_window=search.length_window, seed=0,
                         glue_dir=args.glue_dir, heldout=search.heldout,
                         max_train={"SST-2": load_config("configs/finetune/sst2.yaml").max_train_examples})
    real = padded = 0
    for k in range(search.warmup_steps):
        batch = data.mixed_batch(k, 0)
        real += int(batch["attention_mask"].sum() - (batch["weights"] == 0).sum())
        padded += batch["attention_mask"].size
    mixed = {"padding_fraction": 1 - real / padded, "steps": search.warmup_steps, "per_task_batch": search.per_task_batch}
    print(f"padding of one equal-budget model: {pad_new['padding_fraction']:.3f} (buckets every 8 tokens), "
          f"{pad_old['padding_fraction']:.3f} (16, 32, 48, 64, 96, 128); warm-up mixed batches "
          f"{mixed['padding_fraction']:.3f}", flush=True)
    record = {"model": "minilm-l6", "buckets": list(buckets), "old_buckets": list(OLD_BUCKETS),
              "padding_equal_budget": pad_new, "padding_equal_budget_old_buckets": pad_old,
              "padding_warmup_mixed": mixed}
    if args.padding_only:
        write_json_atomic(args.out, record)
        print(f"wrote {args.out}")
        return

    load_before = os.getloadavg()  # 1, 5, 15 min: near 0 on a quiet machine
    schedule = interleave([s.steps for s in streams])
    index = task_steps(schedule, len(streams))
    picks = np.sort(np.random.default_rng(0).choice(len(schedule), size=min(args.sample, len(schedule)), replace=False))
    batches = []
    for k in picks:
        t = int(schedule[k])
        idx, length = streams[t].batch(int(index[k]))
        b = collate(rows[t], idx, length, streams[t].batch_size)
        batches.append((t, int(rows[t].lengths[idx].sum()), b))

    tasks = [get_task(t) for t in CONFIGS]
    # independent: one classifier per task
    independent = {}
    for t, task in enumerate(tasks):
        cfg = load_config(f"configs/finetune/{CONFIGS[task.name]}.yaml")
        module = SequenceClassifier(pretrained.config, task.num_labels)
        tx = make_optimizer(cfg, 1000)
        params = init_params(module, pretrained.params, cfg, pretrained.config)
        independent[t] = [TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params)),
                          make_train_step(module, task, tx, jax.random.PRNGKey(0))]
    model = MultiTaskModel(pretrained.config, [t.num_labels for t in tasks])
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(len(tasks))]
    tx = budget_optimizer(0.01)
    state = init_budget_state(model.from_encoders(pretrained.params, [pretrained.params] * len(tasks), heads), tx)
    step = make_budget_step(model, tasks, tx)

    def run_independent(t, b):
        s, fn = independent[t]
        s, loss = fn(s, {k: jnp.asarray(v) for k, v in b.items()})
        loss.block_until_ready()
        independent[t][0] = s

    def run_budget(t, b, branch):
        nonlocal state
        batch = {k: jnp.asarray(v.astype(np.float32) if k == "labels" else v) for k, v in b.items()}
        state, loss = step(state, batch, jnp.int32(t), jnp.int32(branch), jnp.float32(1e-5), jax.random.PRNGKey(0))
        loss.block_until_ready()

    variants = {"independent": lambda t, b: run_independent(t, b)}
    for branch in (0, 6, 12):
        variants[f"equal budget b={branch}"] = lambda t, b, branch=branch: run_budget(t, b, branch)
    start = time.perf_counter()
    seen = set()
    for t, _, b in tqdm(batches, desc="compile (task, shape) pairs", unit="batch"):  # compile each shape first
        key = (t, b["input_ids"].shape)
        if key not in seen:
            seen.add(key)
            for fn in variants.values():
                fn(t, b)
    compile_s = time.perf_counter() - start
    print(f"compiled {len(seen)} (task, shape) pairs in {compile_s:.0f} s", flush=True)
    seconds = {name: 0.0 for name in variants}
    for t, _, b in tqdm(batches, desc="time the variants", unit="step"):  # alternate the variants step by step
        for name, fn in variants.items():
            clock = time.perf_counter()
            fn(t, b)
            seconds[name] += time.perf_counter() - clock
    real_tokens = sum(r for _, r, _ in batches)
    total_steps = len(schedule)
    rows_out = []
    for name, s in seconds.items():
        per_step = s / len(batches)
        rows_out.append({"variant": name, "seconds_per_step": per_step, "real_tokens_per_s": real_tokens / s,
                         "projected_finetune_s": per_step * total_steps})
        print(f"{name:22s} {per_step:.3f} s/step, {real_tokens / s:7.0f} real tokens/s, one glue5 model "
              f"~{per_step * total_steps / 60:.1f} min", flush=True)
    write_json_atomic(args.out, record | {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                    "backend": jax.default_backend(), "devices": len(jax.devices())},
        "timed_steps": len(batches), "schedule_steps": total_steps, "compile_s": compile_s, "rows": rows_out,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "note": "the load averages say whether other work shared the cores; compare rows before absolute seconds",
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
