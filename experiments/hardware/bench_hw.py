"""Benchmark of the hardware side: cost-model throughput, gradient time, simulator throughput on a real trace.

    .venv/bin/python experiments/hardware/bench_hw.py [--out experiments/results/bench_hw.json]

Runtime here (2 CPU cores): about a minute. Goals (issue 2): >= 1e6 cost-model evaluations per second (jit + vmap
over >= 10,000 relaxed configurations of T = 8 tasks on bert-base) and the whole 8-task GLUE-dev trace simulated in
under a second. Timings are the best of several repeats; host load changes them by up to ~1.7x.
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

from mgen_jax import cost, hw
from mgen_jax.io import write_json_atomic
from mgen_jax.sim import simulate
from mgen_jax.workload.glue import glue_trace

GLUE8 = ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "MNLI", "QQP"]


def best_time(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_cost(batch: int, tasks: int = 8, model: str = "bert-base") -> dict:
    spec, arch = hw.load_spec("isaac"), hw.load_arch(model)
    tables = cost.build_tables(spec, arch, (2,) * tasks)
    workload = cost.fixed_workload(tasks, 40)
    logits = jax.random.normal(jax.random.PRNGKey(0), (batch, tasks, arch.num_units + 1))

    probs = jax.vmap(cost.branch_probs)(logits)
    energy = jax.jit(jax.vmap(lambda p: cost.expected_energy(p, tables, workload).total_j))
    start = time.perf_counter()
    energy(probs).block_until_ready()
    compile_s = time.perf_counter() - start
    eval_s = best_time(lambda: energy(probs).block_until_ready())
    from_logits = jax.jit(jax.vmap(lambda l: cost.expected_energy(cost.branch_probs(l), tables, workload).total_j))
    from_logits(logits).block_until_ready()
    logits_s = best_time(lambda: from_logits(logits).block_until_ready())

    loss = lambda l: jnp.sum(jax.vmap(lambda x: cost.expected_energy(cost.branch_probs(x), tables, workload).total_j)(l))
    grad = jax.jit(jax.grad(loss))
    grad(logits).block_until_ready()
    grad_s = best_time(lambda: grad(logits).block_until_ready())

    single = jax.jit(jax.grad(lambda l: cost.expected_energy(cost.branch_probs(l), tables, workload).total_j))
    single(logits[0]).block_until_ready()
    single_s = best_time(lambda: single(logits[0]).block_until_ready(), repeats=50)
    return {
        "model": model, "tasks": tasks, "units": arch.num_units, "batch": batch,
        "compile_s": compile_s, "batch_eval_s": eval_s, "evals_per_s": batch / eval_s,
        "evals_from_logits_per_s": batch / logits_s,
        "batch_grad_s": grad_s, "grads_per_s": batch / grad_s, "single_grad_s": single_s,
    }


def bench_sim(glue_dir: str | None) -> dict:
    spec, arch = hw.load_spec("isaac"), hw.load_arch("minilm-l6")
    start = time.perf_counter()
    trace = glue_trace(GLUE8, glue_dir=glue_dir)
    tokenize_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    results = {}
    for label, b in (("independent", [0] * 8), ("random", [int(x) for x in rng.integers(0, 13, 8)])):
        tree = hw.SharingTree.from_branch_points(b, arch.num_units)
        seconds = best_time(lambda: simulate(spec, arch, tree, trace), repeats=5)
        results[label] = {"branch_points": b, "simulate_s": seconds, "requests_per_s": trace.num_requests / seconds}
    return {"trace": trace.description, "requests": trace.num_requests, "tasks": len(GLUE8),
            "tokenize_s": tokenize_s, "models": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/bench_hw.json")
    parser.add_argument("--glue-dir")
    args = parser.parse_args()
    record = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                    "backend": jax.default_backend(), "devices": len(jax.devices())},
        "cost_model": [bench_cost(10_000), bench_cost(100_000)],
        "simulator": bench_sim(args.glue_dir),
    }
    for row in record["cost_model"]:
        print(f"cost model, {row['model']}, T={row['tasks']}, batch {row['batch']:,}: "
              f"{row['evals_per_s'] / 1e6:.2f} M evals/s (p -> E), "
              f"{row['evals_from_logits_per_s'] / 1e6:.2f} M/s (logits -> E), {row['grads_per_s'] / 1e6:.2f} M grads/s, "
              f"single grad {row['single_grad_s'] * 1e6:.0f} us, compile {row['compile_s']:.2f} s")
    sim = record["simulator"]
    for label, row in sim["models"].items():
        print(f"simulator, {sim['requests']:,}-request 8-task GLUE-dev trace, {label}: {row['simulate_s']:.3f} s "
              f"({row['requests_per_s']:,.0f} requests/s); tokenization {sim['tokenize_s']:.2f} s")
    write_json_atomic(Path(args.out), record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
