"""Benchmark: the fast scheduler's time for 8 tasks and 10,000 requests (MiniLM, real GLUE dev lengths).

    .venv/bin/python experiments/schedule/bench_schedule.py [--out experiments/results/bench_schedule.json]

Runtime here: about a minute. Every request runs all 8 tasks; lengths are the first 10,000 of the 8-task GLUE-dev
trace. Times are the best of 3 runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path


from mgen_jax import hw
from mgen_jax.io import write_json_atomic
from mgen_jax.schedule import SchedulingProblem, evaluate, solve_fast
from mgen_jax.workload import Trace
from mgen_jax.workload.glue import glue_trace

GLUE8 = ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "MNLI", "QQP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results/bench_schedule.json")
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    full = glue_trace(GLUE8)
    trace = Trace(full.tokens[: args.requests], full.task_mask[: args.requests], full.task_names)
    arch = hw.load_arch("minilm-l6")
    rows = []
    for chip in ("isaac", "isaac-half"):
        spec = hw.load_spec(chip)
        for name, b in (("independent", [0] * 8), ("b=2,4,...,12 (mixed)", [2, 4, 6, 8, 10, 12, 4, 8])):
            problem = SchedulingProblem(spec, arch, hw.SharingTree.from_branch_points(b, 12), trace)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                solution = solve_fast(problem)
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            evaluate(problem, solution.schedule)
            eval_s = time.perf_counter() - start
            rows.append({"chip": chip, "model": name, "requests": trace.num_requests, "tasks": 8,
                         "nodes": len(problem.nodes), "solve_s": min(times), "candidates": solution.candidates,
                         "evaluate_s": eval_s, "batch_size": solution.schedule.batch_size,
                         "energy_per_request_j": solution.cost.energy_j / trace.num_requests})
            print(f"{chip:10} {name:22} {len(problem.nodes)} nodes: fast solver {min(times):.2f} s "
                  f"({solution.candidates} schedules evaluated, one evaluation {eval_s * 1e3:.1f} ms), "
                  f"batch size {solution.schedule.batch_size}")
    write_json_atomic(Path(args.out), {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                                       "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
