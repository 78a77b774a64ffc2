"""Step time of the model generator's search on glue5 (MiniLM, 5 tasks x 8 examples per mixed batch).

    .venv/bin/python experiments/training_speed/bench_search_step.py [--steps 10]
        [--out experiments/results/bench_search_step.json]

Times, on the same real mixed batches (search data stream, bucketed lengths):
- the loss profile (every task's loss at every branch point b = 0..U, the part of an ``enumerate`` step that the
  weights' update does not need): U + 1 separate discrete forward passes against ``make_loss_profile``, whose
  models share their trunk prefixes;
- a whole search step with ``sampling: hard`` and with ``sampling: enumerate``.
Every shape is compiled before timing; the variants run in alternating order (host load moves timings). Runtime
here: about 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from mgen_jax import hw
from mgen_jax.data.glue import get_task
from mgen_jax.io import write_json_atomic
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search.data import MultiTaskData
from mgen_jax.search.data import SEARCH_STREAM as SEARCH
from mgen_jax.search.steps import RelaxedState, energy_model, make_loss_profile, make_relaxed_step, task_losses
from mgen_jax.workload.glue import glue_trace

GLUE5 = ("SST-2", "CoLA", "MRPC", "STS-B", "RTE")


def separate_passes_profile(model, tasks):
    """The reference: U + 1 discrete forward passes, one per branch point, nothing shared."""
    def one(params, batch, b):
        outputs = model.discrete_forward(params, batch, jnp.full((len(tasks),), b, jnp.int32), deterministic=True)
        return task_losses(model, tasks, outputs, batch)

    return jax.jit(lambda params, batch: jax.lax.map(lambda b: one(params, batch, b),
                                                     jnp.arange(model.cfg.num_units + 1)))


def time_calls(fn, batches) -> float:
    """Seconds per call of fn(batch) over ``batches`` (all shapes compiled beforehand)."""
    start = time.perf_counter()
    out = None
    for batch in batches:
        out = fn(batch)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="mixed batches timed per variant and round [10]")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds [2]")
    parser.add_argument("--glue-dir")
    parser.add_argument("--out", default="experiments/results/bench_search_step.json")
    args = parser.parse_args()

    pretrained = load_pretrained("minilm-l6")
    tasks = [get_task(t) for t in GLUE5]
    model = MultiTaskModel(pretrained.config, [t.num_labels for t in tasks])
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(len(tasks))]
    params = model.from_encoders(pretrained.params, [pretrained.params] * len(tasks), heads)
    data = MultiTaskData(GLUE5, pretrained.tokenizer, max_length=128, buckets=(32, 64, 96, 128), per_task_batch=8,
                         length_window=64, seed=0, glue_dir=args.glue_dir)
    batches = [{k: jnp.asarray(v) for k, v in data.mixed_batch(k, SEARCH).items()} for k in range(args.steps)]
    trace = glue_trace(list(GLUE5), glue_dir=args.glue_dir, max_length=128)
    energy = energy_model(pretrained.config, hw.load_spec("isaac"), [t.num_labels for t in tasks], trace, "minilm-l6")

    profiles = {"separate passes": separate_passes_profile(model, tasks),
                "shared prefixes": make_loss_profile(model, tasks)}
    steps = {}
    for sampling in ("hard", "enumerate"):
        tx_w, tx_l = optax.adamw(5e-5), optax.adam(0.1)
        fn = make_relaxed_step(model, tasks, tx_w, tx_l, energy, jax.random.PRNGKey(3), sampling=sampling)
        logits = jnp.zeros((len(tasks), model.cfg.num_units + 1))
        fresh = lambda tx_w=tx_w, tx_l=tx_l, logits=logits: RelaxedState(
            jnp.int32(0), jax.tree.map(jnp.copy, params), tx_w.init(params), logits, tx_l.init(logits))
        holder = {"state": fresh()}

        def call(batch, fn=fn, holder=holder):
            holder["state"], aux = fn(holder["state"], batch, jnp.float32(4.0), jnp.float32(0.5), jnp.float32(1.0))
            return aux

        steps[sampling] = call
    variants = {f"profile, {k}": (lambda batch, f=f: f(params, batch)) for k, f in profiles.items()}
    variants |= {f"search step, {k}": f for k, f in steps.items()}

    shapes = sorted({b["input_ids"].shape[-1] for b in batches})
    print(f"{len(batches)} mixed batches of {len(tasks)} x 8 examples, lengths {shapes}; compiling ...", flush=True)
    for name, fn in variants.items():
        start, seen = time.perf_counter(), set()
        for batch in batches:
            if batch["input_ids"].shape not in seen:
                jax.block_until_ready(fn(batch))
                seen.add(batch["input_ids"].shape)
        print(f"  {name}: compiled {len(seen)} shapes in {time.perf_counter() - start:.0f} s", flush=True)
    seconds = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in (variants if r % 2 == 0 else reversed(list(variants))):
            seconds[name].append(time_calls(variants[name], batches))
            print(f"  round {r + 1}: {name}: {seconds[name][-1]:.2f} s per batch", flush=True)
    rows = {name: {"seconds_per_batch": min(s), "all_rounds": s} for name, s in seconds.items()}
    record = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                    "backend": jax.default_backend(), "devices": len(jax.devices())},
        "model": "minilm-l6", "tasks": list(GLUE5), "per_task_batch": 8, "lengths": shapes, "batches": len(batches),
        "rows": rows,
        "profile_speedup": rows["profile, separate passes"]["seconds_per_batch"]
        / rows["profile, shared prefixes"]["seconds_per_batch"],
        "enumerate_over_hard": rows["search step, enumerate"]["seconds_per_batch"]
        / rows["search step, hard"]["seconds_per_batch"],
    }
    print(f"profile speed-up from shared prefixes: {record['profile_speedup']:.2f}x; "
          f"enumerate step / hard step: {record['enumerate_over_hard']:.2f}")
    write_json_atomic(Path(args.out), record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
