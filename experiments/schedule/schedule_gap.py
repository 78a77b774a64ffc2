"""Fast vs exact scheduler on random small instances (mgen_jax.schedule.instances), and how often each cost term
matters.

    .venv/bin/python experiments/schedule/schedule_gap.py [--instances 60] [--out experiments/results/schedule_gap.json]

Runtime here: about 30 s.
"""

from __future__ import annotations

import argparse

import numpy as np

from mgen_jax import hw
from mgen_jax.io import write_json_atomic
from mgen_jax.schedule import SchedulingProblem, solve_exact, solve_fast
from mgen_jax.schedule.instances import random_small_instance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="experiments/results/schedule_gap.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.instances):
        problem = SchedulingProblem(*random_small_instance(rng, hw.load_spec("isaac")))
        exact, fast = solve_exact(problem), solve_fast(problem)
        gap = fast.cost.energy_j / exact.cost.energy_j - 1 if exact.cost.energy_j else 0.0
        rows.append({"gap": gap, "exact_j": exact.cost.energy_j, "fast_j": fast.cost.energy_j,
                     "exact_loads": exact.cost.loads, "exact_dram_bits": exact.cost.dram_bits})
    gaps = np.array([r["gap"] for r in rows])
    summary = {"instances": len(rows), "seed": args.seed, "max_gap": float(gaps.max()), "mean_gap": float(gaps.mean()),
               "instances_fast_not_optimal": int((gaps > 1e-12).sum()),
               "instances_with_loads": sum(r["exact_loads"] > 0 for r in rows),
               "instances_with_dram": sum(r["exact_dram_bits"] > 0 for r in rows)}
    print(summary)
    write_json_atomic(args.out, {"summary": summary, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
