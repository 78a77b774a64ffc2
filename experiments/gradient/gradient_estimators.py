"""Which gradient estimator should the logits of the gradient search use? Both, on the planted problem of
mgen_jax/search/planted.py (a tiny BERT whose task 0 gains from sharing and task 1 loses; weights frozen; the best
tree under each target known by enumeration of the exact losses), and their cost on all-MiniLM-L6-v2 from the
compiled programs' FLOP counts (load-independent).

    .venv/bin/python experiments/gradient/gradient_estimators.py [--out experiments/results] [--steps 400]

Runtime here: about 5 minutes (2 CPU cores). Writes gradient_estimators.json: per problem seed, target and
estimator, whether the argmax and the decoded tree are the best tree, mu's convergence, and the FLOPs per search step.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.io import write_json_atomic
from mgen_jax.search.constrained import decode_tree, tree_ratio
from mgen_jax.search.gradient import GradientSettings, LogitState, decode_costs, make_logit_step, mu_converged
from mgen_jax.search.planted import best_tree, planted_problem

ESTIMATORS = ("enumerate", "straight-through")


def run_planted(seed: int, target: float, estimator: str, steps: int, planted) -> dict:
    settings = GradientSettings(estimator=estimator, logit_rows=16)
    e = planted.energy
    step = make_logit_step(planted.model, planted.tasks, e, settings, target, steps)
    state, mus = LogitState.zeros(2, planted.model.cfg.num_units, settings.mu_init), []
    start = time.perf_counter()
    for k in range(steps):
        state, _, _ = step(state, planted.params, planted.batch(k % 2, k, 16), jnp.int32(k % 2), jnp.int32(k),
                           jax.random.PRNGKey(1000 * seed + k))
        mus.append(float(state.mu))
    wall = time.perf_counter() - start
    ratio_of = lambda b: tree_ratio(b, e.tables, e.workload, e.independent_j)
    argmax = [int(b) for b in np.asarray(state.logits).argmax(axis=1)]
    tree, moves = decode_tree(argmax, decode_costs(state, settings), target, ratio_of)
    best, best_ratio = best_tree(planted, target)
    return {"problem_seed": seed, "target": target, "estimator": estimator, "best_tree": best,
            "best_ratio": best_ratio, "argmax": argmax, "argmax_is_best": argmax == best, "decoded": tree,
            "decoded_is_best": tree == best, "decode_moves": len(moves), "decoded_ratio": ratio_of(tree),
            "mu_final": mus[-1], "mu_converged": mu_converged(mus[int(0.9 * steps):], settings.dual_tolerance),
            "wall_clock_s": wall}


def minilm_flops(rows: int = 8, length: int = 64, batch: int = 32) -> dict:
    """FLOPs of one logits step of each estimator and of one equal-budget training step on all-MiniLM-L6-v2."""
    from mgen_jax import hw
    from mgen_jax.data.glue import get_task
    from mgen_jax.model.multitask import MultiTaskModel
    from mgen_jax.model.pretrained import load_pretrained
    from mgen_jax.search.budget import budget_optimizer, init_budget_state, make_budget_step
    from mgen_jax.search.steps import energy_model
    from mgen_jax.workload.trace import fixed_trace

    pretrained = load_pretrained("minilm-l6")
    tasks = [get_task(t) for t in ("SST-2", "CoLA", "MRPC", "STS-B", "RTE")]
    model = MultiTaskModel(pretrained.config, [t.num_labels for t in tasks])
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(len(tasks))]
    params = model.from_encoders(pretrained.params, [pretrained.params] * len(tasks), heads)
    energy = energy_model(pretrained.config, hw.load_spec("isaac"), [t.num_labels for t in tasks],
                          fixed_trace(len(tasks), length), "minilm-l6")
    ids = jnp.ones((batch, length), jnp.int32)
    data = {"input_ids": ids, "token_type_ids": jnp.zeros_like(ids), "attention_mask": ids,
            "labels": jnp.zeros((batch,), jnp.float32), "weights": jnp.ones((batch,), jnp.float32)}
    flops = lambda compiled: float((compiled.cost_analysis() or {}).get("flops", float("nan")))
    out = {}
    for estimator in ESTIMATORS:
        settings = GradientSettings(estimator=estimator, logit_rows=rows)
        step = make_logit_step(model, tasks, energy, settings, 0.5, 100)
        state = LogitState.zeros(len(tasks), model.cfg.num_units)
        lowered = step.lower(state, params, data, jnp.int32(0), jnp.int32(0), jax.random.PRNGKey(0))
        out[f"logit_step_{estimator}"] = flops(lowered.compile())
    tx = budget_optimizer(0.01)
    budget = make_budget_step(model, tasks, tx)
    lowered = budget.lower(init_budget_state(params, tx), data, jnp.int32(0), jnp.int32(6), jnp.float32(1e-4),
                           jax.random.PRNGKey(0))
    out["training_step"] = flops(lowered.compile())
    out |= {f"search_step_over_training_step_{e}": (out[f"logit_step_{e}"] + out["training_step"]) /
            out["training_step"] for e in ESTIMATORS}
    return out | {"rows": rows, "length": length, "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = []
    for seed in range(args.seeds):
        planted = planted_problem(seed=seed)
        for target in (0.8, 0.7):
            for estimator in ESTIMATORS:
                runs.append(run_planted(seed, target, estimator, args.steps, planted))
                r = runs[-1]
                print(f"seed {seed} target {target} {estimator:16s} best {r['best_tree']} argmax {r['argmax']} "
                      f"decoded {r['decoded']} mu converged {r['mu_converged']}", flush=True)
    summary = {e: {"decoded_is_best": sum(r["decoded_is_best"] for r in runs if r["estimator"] == e),
                   "argmax_is_best": sum(r["argmax_is_best"] for r in runs if r["estimator"] == e),
                   "mu_converged": sum(r["mu_converged"] for r in runs if r["estimator"] == e),
                   "of": sum(r["estimator"] == e for r in runs)} for e in ESTIMATORS}
    record = {"planted": runs, "summary": summary, "steps": args.steps, "minilm_flops": minilm_flops(),
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    path = write_json_atomic(Path(args.out) / "gradient_estimators.json", record)
    print(summary, record["minilm_flops"], f"wrote {path}", sep="\n")


if __name__ == "__main__":
    main()
