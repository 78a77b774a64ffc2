"""Training-step speed, side by side: the independent fine-tuning step, the equal-budget multi-task step at b = 0, 6
and 12, and a PyTorch eager step (transformers + torch.optim.AdamW) when torch is installed (issue 34).

    .venv/bin/python experiments/training_speed/bench_train_step.py [--rounds 6] [--steps 3] [--former 57cdc3d]
        [--dtypes float32[,bfloat16]] [--hlo] [--out experiments/results/bench_train_step.json]

Every variant trains all-MiniLM-L6-v2 (pretrained weights) on the same batch, 32 sequences x 64 real tokens, dropout
0.1, AdamW (lr 1e-4, weight decay 0.01 except biases and LayerNorm) after clipping the gradients to global norm 1:

- ``independent``: ``make_train_step`` (train/finetune.py), one classifier;
- ``multi-task b=B``: ``make_budget_step`` (search/budget.py) of a 5-task model (glue5's label counts), the task
  switching every step as in the interleaved schedule, branch point B (0: every unit the task's own; 12: all trunk);
- ``former multi-task b=6`` with ``--former REV``: the equal-budget step as it was at commit REV (``git show``), for
  a before/after table (57cdc3d: before issue 34);
- ``pytorch eager``: transformers' BertForSequenceClassification (its default attention) and torch.optim.AdamW,
  ``torch.nn.utils.clip_grad_norm_``, all CPU threads (or the GPU; bfloat16 through torch.autocast).

Every variant is compiled (and warmed) first. Then ``--rounds`` rounds, each running every variant for ``--steps``
steps, the order rotating from round to round, so that load from other jobs falls on all variants alike; the load
average is recorded before and after every round. Per variant: min and median seconds per step, the median over
rounds of its ratio to the independent step in the same round, and process CPU seconds per step (on a CPU host
less sensitive to other jobs than the wall clock). GFLOP/s: FLOPs of one step from XLA's cost analysis of the
compiled independent step, against the machine's measured matmul rate (n x n by n x n, 2 n^3 FLOPs). ``--hlo``
adds load-independent facts of every compiled JAX step (``hlo_stats``: bytes accessed, op counts, large copies).

Runtime: about 4 minutes on a quiet 2-core host (a third of it compiling), twice that under load. It runs
unchanged on a GPU or TPU, where ``--dtypes`` defaults to float32,bfloat16.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.data.glue import get_task
from mgen_jax.io import write_json_atomic
from mgen_jax.model.bert import SequenceClassifier
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search.budget import budget_optimizer, init_budget_state, make_budget_step
from mgen_jax.train.finetune import TrainState, make_train_step
from mgen_jax.train.optim import adamw_warmup_linear

REPO = Path(__file__).resolve().parents[2]
GLUE5 = ("SST-2", "CoLA", "MRPC", "STS-B", "RTE")
BATCH, LENGTH = 32, 64
LR, WEIGHT_DECAY, MAX_GRAD_NORM = 1e-4, 0.01, 1.0


def make_batch(vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed batch of ``BATCH`` sequences of ``LENGTH`` real tokens (random ids: speed does not depend on them)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab_size, (BATCH, LENGTH)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids),
            "labels": rng.integers(0, 2, BATCH).astype(np.int32), "weights": np.ones(BATCH, np.float32)}


def jax_variants(pretrained, batch, dtype: str, former: str | None):
    """({name: run(k)}, {name: lower()}, FLOPs of one independent step): run(k) does step k and waits for it; lower()
    lowers the variant's jitted step for its inputs (for ``hlo_stats``)."""
    bert = pretrained.config if dtype == "float32" else dataclasses.replace(pretrained.config, compute_dtype=dtype)
    tasks = [get_task(t) for t in GLUE5]
    on_device = {k: jnp.asarray(v) for k, v in batch.items()}
    variants: dict[str, Callable[[int], None]] = {}
    lowerings: dict[str, Callable[[], object]] = {}

    module = SequenceClassifier(bert, tasks[0].num_labels)
    tx = adamw_warmup_linear(LR, 1_000_000, warmup_ratio=0.0, weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM)
    params = module.init(jax.random.PRNGKey(0), batch["input_ids"][:1], batch["attention_mask"][:1])["params"]
    params["encoder"] = jax.tree.map(jnp.copy, pretrained.params)
    independent = make_train_step(module, tasks[0], tx, jax.random.PRNGKey(1))
    state = {"s": TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))}
    flops = float(_cost(independent.lower(state["s"], on_device).compile()).get("flops", float("nan")))

    def run_independent(k: int) -> None:
        state["s"], loss = independent(state["s"], on_device)
        loss.block_until_ready()

    variants["independent"] = run_independent
    lowerings["independent"] = lambda: independent.lower(state["s"], on_device)

    model = MultiTaskModel(bert, [t.num_labels for t in tasks])
    heads = [model.init_head(jax.random.PRNGKey(10 + t)) for t in range(len(tasks))]
    multi = model.from_encoders(pretrained.params, [pretrained.params] * len(tasks), heads)
    mt_batch = dict(on_device, labels=on_device["labels"].astype(jnp.float32))
    steps = [("multi-task", make_budget_step, init_budget_state, (0, 6, 12))]
    if former:
        old = _former_budget_module(former)
        steps.append((f"former multi-task ({former})", old.make_budget_step, old.init_budget_state, (6,)))
    for label, make_step, init_state, branch_points in steps:
        btx = budget_optimizer(WEIGHT_DECAY)
        step_fn = make_step(model, tasks, btx, max_grad_norm=MAX_GRAD_NORM)
        holder = {"s": init_state(multi, btx)}
        for b in branch_points:
            def run_multi(k: int, b=b, step_fn=step_fn, holder=holder) -> None:
                holder["s"], loss = step_fn(holder["s"], mt_batch, jnp.int32(k % len(tasks)), jnp.int32(b),
                                            jnp.float32(LR), jax.random.PRNGKey(2))
                loss.block_until_ready()

            variants[f"{label} b={b}"] = run_multi
            lowerings[f"{label} b={b}"] = lambda b=b, step_fn=step_fn, holder=holder: step_fn.lower(
                holder["s"], mt_batch, jnp.int32(0), jnp.int32(b), jnp.float32(LR), jax.random.PRNGKey(2))
    return variants, lowerings, flops


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    return cost[0] if isinstance(cost, list) else (cost or {})


def hlo_stats(lowered) -> dict:
    """Load-independent facts of a compiled step: XLA's cost analysis (FLOPs, bytes accessed; a loop's body and
    every branch of a conditional counted once, run or not), its instruction counts, and the bytes of parameter-sized
    copies (arrays of 10^5 elements or more: the copies of whole stacks of the former multi-task step)."""
    compiled = lowered.compile()
    cost, text = _cost(compiled), compiled.as_text()
    big_copies = 0
    for dtype, dims in re.findall(r"= (f32|bf16)\[([\d,]+)\]\{[\d,]*\} copy\(", text):
        size = int(np.prod([int(d) for d in dims.split(",")]))
        big_copies += size * (4 if dtype == "f32" else 2) if size >= 100_000 else 0
    count = lambda op: len(re.findall(rf"= \S+ {op}\(", text))
    return {"flops": cost.get("flops"), "bytes_accessed": cost.get("bytes accessed"),
            "transcendentals": cost.get("transcendentals"), "fusions": count("fusion"), "copies": count("copy"),
            "large_copy_bytes": big_copies, "while_loops": count("while"), "conditionals": count("conditional")}


def _former_budget_module(rev: str) -> types.ModuleType:
    """search/budget.py as it was at commit ``rev``, as a module of its own (it imports today's package)."""
    source = subprocess.run(["git", "show", f"{rev}:mgen_jax/search/budget.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    module = types.ModuleType(f"budget_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:mgen_jax/search/budget.py", "exec"), module.__dict__)
    return module


def torch_variant(model_dir: Path, batch, dtype: str) -> tuple[Callable[[int], None], dict] | None:
    try:
        import torch
        from transformers import BertForSequenceClassification
    except ImportError:
        return None
    device = torch.device("cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(model_dir), num_labels=2).to(device)
    model.train()
    no_decay = lambda name: name.endswith("bias") or "LayerNorm" in name
    groups = [{"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": WEIGHT_DECAY},
              {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=LR)
    inputs = {k: torch.as_tensor(batch[k], dtype=torch.long, device=device)
              for k in ("input_ids", "token_type_ids", "attention_mask")}
    labels = torch.as_tensor(batch["labels"], dtype=torch.long, device=device)

    def run(k: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # waits for the step (and for the GPU)

    info = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "attention": getattr(model.config, "_attn_implementation", None)}
    return run, info


def matmul_gflops(dtype: str, n: int) -> float:
    """The machine's matmul rate: best of 5 n x n by n x n products (2 n^3 FLOPs) in ``dtype``."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.dtype(dtype))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.dtype(dtype))
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def time_rounds(variants: dict[str, Callable[[int], None]], rounds: int, steps: int) -> list[dict]:
    names = list(variants)
    records, k = [], 0
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        record = {"round": r, "order": order, "load_before": list(os.getloadavg()), "seconds": {}, "cpu_seconds": {}}
        for name in order:
            wall, cpu = [], []
            for _ in range(steps):
                start, start_cpu = time.perf_counter(), time.process_time()
                variants[name](k)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                k += 1
            record["seconds"][name], record["cpu_seconds"][name] = wall, cpu
        record["load_after"] = list(os.getloadavg())
        records.append(record)
        print(f"round {r + 1}/{rounds}, load {record['load_before'][0]:.2f} -> {record['load_after'][0]:.2f}: "
              + ", ".join(f"{n} {np.min(record['seconds'][n]):.3f}" for n in names), flush=True)
    return records


def summarize(records: list[dict], flops: float, matmul: float) -> list[dict]:
    names = list(records[0]["seconds"])
    per_round = lambda name, key: np.asarray([np.mean(r[key][name]) for r in records])
    base = per_round("independent", "seconds")
    base_min = min(min(r["seconds"]["independent"]) for r in records)
    rows = []
    for name in names:
        wall = np.concatenate([r["seconds"][name] for r in records])
        cpu = np.concatenate([r["cpu_seconds"][name] for r in records])
        rows.append({
            "variant": name, "min_s": float(wall.min()), "median_s": float(np.median(wall)),
            "cpu_min_s": float(cpu.min()), "cpu_median_s": float(np.median(cpu)),
            "ratio_to_independent_min": float(wall.min() / base_min),
            "ratio_to_independent_median_of_rounds": float(np.median(per_round(name, "seconds") / base)),
            "cpu_ratio_to_independent_median_of_rounds": float(np.median(
                per_round(name, "cpu_seconds") / per_round("independent", "cpu_seconds"))),
            "gflops_per_s": flops / wall.min() / 1e9, "fraction_of_matmul_rate": flops / wall.min() / 1e9 / matmul,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds [6]")
    parser.add_argument("--steps", type=int, default=3, help="steps of every variant per round [3]")
    parser.add_argument("--dtypes", help="compute dtypes, comma-separated [float32; on GPU/TPU float32,bfloat16]")
    parser.add_argument("--former", metavar="REV", help="also time the multi-task step as it was at commit REV")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if it is installed")
    parser.add_argument("--hlo", action="store_true",
                        help="also record each JAX step's XLA cost analysis and op counts (compiles them again)")
    parser.add_argument("--out", default="experiments/results/bench_train_step.json")
    args = parser.parse_args()
    backend = jax.default_backend()
    dtypes = (args.dtypes or ("float32" if backend == "cpu" else "float32,bfloat16")).split(",")
    pretrained = load_pretrained("minilm-l6")
    batch = make_batch(pretrained.config.vocab_size)
    record = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "backend": backend,
                    "device": jax.devices()[0].device_kind, "jax": jax.__version__},
        "model": "all-MiniLM-L6-v2", "batch_size": BATCH, "length": LENGTH, "dropout": pretrained.config.hidden_dropout,
        "rounds": args.rounds, "steps_per_round": args.steps, "former": args.former, "results": {},
        "note": "wall seconds move with host load (see each round's load average); CPU seconds and the per-round "
                "ratios much less",
    }
    for dtype in dtypes:
        start = time.perf_counter()
        variants, lowerings, flops = jax_variants(pretrained, batch, dtype, args.former)
        torch_run = None if args.no_torch else torch_variant(pretrained.directory, batch, dtype)
        if torch_run is not None:
            variants["pytorch eager"] = torch_run[0]
            record["machine"]["pytorch"] = torch_run[1]
        for name, run in variants.items():  # compile and warm up
            run(0)
            run(1)
        warm_s = time.perf_counter() - start
        matmul = matmul_gflops(dtype, 2048 if backend == "cpu" else 8192)
        print(f"{dtype}: {len(variants)} variants compiled and warmed in {warm_s:.0f} s; {flops / 1e9:.1f} GFLOP per "
              f"step; matmul rate {matmul:.0f} GFLOP/s", flush=True)
        rounds = time_rounds(variants, args.rounds, args.steps)
        rows = summarize(rounds, flops, matmul)
        record["results"][dtype] = {"flops_per_step": flops, "matmul_gflops_per_s": matmul,
                                    "compile_and_warm_s": warm_s, "rows": rows, "rounds": rounds}
        print(f"{'variant':34s} {'min s':>7s} {'median s':>9s} {'x indep.':>9s} {'x (rounds)':>10s} {'cpu s':>7s} "
              f"{'x cpu':>6s} {'GFLOP/s':>8s}")
        for row in rows:
            print(f"{row['variant']:34s} {row['min_s']:7.3f} {row['median_s']:9.3f} "
                  f"{row['ratio_to_independent_min']:9.3f} {row['ratio_to_independent_median_of_rounds']:10.3f} "
                  f"{row['cpu_median_s']:7.3f} {row['cpu_ratio_to_independent_median_of_rounds']:6.3f} "
                  f"{row['gflops_per_s']:8.1f}")
        if args.hlo:
            stats = {name: hlo_stats(lower()) for name, lower in lowerings.items()}
            record["results"][dtype]["hlo"] = stats
            for name, st in stats.items():
                print(f"{name:34s} {st['bytes_accessed'] / 1e9:6.2f} GB accessed, {st['fusions']} fusions, "
                      f"{st['large_copy_bytes'] / 1e9:.2f} GB of large copies", flush=True)
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
