"""One gradient-search run against one equal-budget model, side by side on one machine in one invocation (issue 31).

    .venv/bin/python experiments/bench_gradient_run.py [--config configs/search/glue5_gradient.yaml]
        [--target 0.334] [--seed 0] [--tree 12,4,12,12,12] [--workdir runs/bench/gradient_run]
        [--out experiments/results/bench_gradient_run.json]
    .venv/bin/python experiments/bench_gradient_run.py --front configs/front/glue5.yaml \
        --front-model "budget 0.227:enumeration tree:1" --front-run "budget 0.334:gradient search:2"

Both train all-MiniLM-L6-v2 on glue5 with exactly the examples each task's independent model saw (the config's
``finetune_budget: independent``), from the pretrained encoder, and are evaluated the same way (held-out, then dev
once):
- ``gradient run``: ``gradient_run`` at energy target ``--target``: ``gradient.search_fraction`` of the steps train the
  weights and the branch logits together, then the decoded tree trains on for the rest of the budget;
- ``equal-budget model``: one fixed tree (``--tree``, default the enumeration's tree at 0.334) trained over the whole
  budget (``ModelGenerator.finetune_and_evaluate``), what every point of the front costs.

They run one after the other, the model first, in a work folder of their own (nothing is shared with the front's
runs, so both are trained here), recording the load average before and after each. With ``--front``, the two are
instead runs of that front config still to train (``BUDGET:CANDIDATE:SEED`` by their labels), trained in the folders
where ``mgen front`` reads them, so that the benchmark's two hours also train two of the front's models; a run the
front has already finished is refused (its wall clock was not measured here). The model's tree is then the front
candidate's. Every equal-budget model trains the same steps on the same rows whatever its tree, but a step's cost
depends somewhat on the tree: a task's own units are updated in its row of the stacked own weights, which costs more
than a trunk unit's update (bench_equal_budget.json: b = 0, every unit own, 4 % slower per step than b = 12). The
record names both trees; where the ratio is close, compare a run with a model whose tree has as many own units.

A kill resumes where it stopped: the training loops' wall clocks exclude the time between sessions, and a part already
finished keeps the load averages recorded when it ran (``bench_state.json`` in the work folder). The goal of issue 31:
the run's wall clock (search + training) at most 1.15x the model's. Both wall clocks include compiling the steps (one
program per batch shape); the record names the commit and JAX's persistent compilation cache, if one was set
(``JAX_COMPILATION_CACHE_DIR``: leave it unset to time a first run). A new measurement written to ``--out`` keeps the
ones already there under ``earlier_measurements``.

Runtime: about 2 x 50 minutes on 2 quiet CPU cores. Writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import jax

from mgen_jax.data.glue import default_glue_dir
from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search.config import load_search_config
from mgen_jax.search.generator import ModelGenerator
from mgen_jax.search.gradient import gradient_run
from mgen_jax.search.judge import format_efficiency

GOAL = 1.15


def _timed(state: dict, state_path: Path, name: str, run) -> dict:
    """``run()``'s record, with the load average before and after and this invocation's wall clock; a part finished
    by an earlier invocation keeps what was recorded then."""
    if name in state:
        return state[name]
    before = os.getloadavg()
    start = time.perf_counter()
    record = run()
    state[name] = {"load_before": [round(x, 2) for x in before],
                   "load_after": [round(x, 2) for x in os.getloadavg()],
                   "invocation_wall_clock_s": time.perf_counter() - start,
                   "training_wall_clock_s": record["finetune_wall_clock_s"],
                   "eval_wall_clock_s": record.get("eval_wall_clock_s"),
                   "branch_points": record["branch_points"], "energy_ratio": record["energy_ratio"],
                   "heldout_mean_score": record.get("heldout_mean_score"), "dev_mean_score": record["mean_score"]}
    if "search_wall_clock_s" in record:
        state[name] |= {"search_wall_clock_s": record["search_wall_clock_s"],
                        "train_wall_clock_s": record["train_wall_clock_s"],
                        "search_steps": record.get("search", {}).get("steps")}
    write_json_atomic(state_path, state)
    return state[name]


def _commit() -> str | None:
    """The checkout's commit (``+`` if it has uncommitted changes), or None outside a git checkout."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=Path(__file__).parent, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("+" if dirty else "")


def _earlier(out: Path, record: dict) -> list[dict]:
    """The measurements ``out`` already holds, so that a new measurement never erases an earlier one: its own
    earlier list, plus its latest measurement unless that is this one (the same two parts, rewritten by a rerun)."""
    if not out.is_file():
        return []
    previous = json.loads(out.read_text())
    earlier = previous.pop("earlier_measurements", [])
    same = all(previous.get(k) == record.get(k) for k in ("front", "seed", "equal_budget_model", "gradient_run"))
    return earlier if same else earlier + [previous]


def front_part(front, spec: str, kind: str):
    """(candidate, seed) of ``front`` named ``BUDGET:CANDIDATE:SEED`` by their labels; ConfigError naming what is
    wrong (an unknown label, a candidate of the other kind, a seed not in the front)."""
    from mgen_jax.search.front import load_front_config

    cfg = load_front_config(front)
    parts = spec.split(":")
    if len(parts) != 3:
        flag = "--front-run" if kind == "gradient" else "--front-model"
        raise ConfigError(f"{flag} {spec!r}: expected BUDGET:CANDIDATE:SEED")
    budget, label, seed = parts
    budgets = {b.label: b for b in cfg.budgets}
    if budget not in budgets:
        raise ConfigError(f"{front}: no budget labelled {budget!r} (budgets: {sorted(budgets)})")
    cands = {c.label: c for c in budgets[budget].candidates}
    if label not in cands:
        raise ConfigError(f"{front}: budget {budget!r} has no candidate {label!r} (candidates: {sorted(cands)})")
    if cands[label].kind != kind:
        raise ConfigError(f"{front}: {budget!r} / {label!r} is a {cands[label].kind} candidate, not a {kind} one")
    if not seed.isdigit() or int(seed) not in cfg.seeds:
        raise ConfigError(f"{front}: seed {seed!r} is not one of the front's seeds {list(cfg.seeds)}")
    return cands[label], int(seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/search/glue5_gradient.yaml")
    parser.add_argument("--target", type=float, default=0.334, help="energy target of the gradient run")
    parser.add_argument("--seed", type=int, default=0, help="training seed of both")
    parser.add_argument("--tree", default="12,4,12,12,12", help="branch points of the equal-budget model")
    parser.add_argument("--workdir", default="runs/bench/gradient_run")
    parser.add_argument("--out", default="experiments/results/bench_gradient_run.json")
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--front", default=None, help="train two runs of this front config in its folders instead")
    parser.add_argument("--front-model", default=None, help="with --front: BUDGET:CANDIDATE:SEED of a tree candidate")
    parser.add_argument("--front-run", default=None, help="with --front: BUDGET:CANDIDATE:SEED of a gradient one")
    parser.add_argument("--runs-root", default="runs/search", help="with --front: where mgen front keeps its runs")
    args = parser.parse_args()
    glue_dir = args.glue_dir or default_glue_dir()
    workdir = Path(args.workdir)
    state_path = workdir / "bench_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}

    if args.front:
        from mgen_jax.search.front import Models
        from mgen_jax.search.rundir import RunDir

        if not (args.front_model and args.front_run):
            parser.error("--front needs --front-model and --front-run")
        models = Models(glue_dir=glue_dir, progress=True, runs_root=args.runs_root)
        (mc, mseed), (rc, rseed) = front_part(args.front, args.front_model, "tree"), front_part(
            args.front, args.front_run, "gradient")
        for name, c, s in (("equal_budget_model", mc, mseed), ("gradient_run", rc, rseed)):
            models.check(c, f"{args.front}: {c.label!r}")
            if name not in state and RunDir.finished(models.folder(c, s)):
                raise ConfigError(f"{models.folder(c, s)} is already trained: its wall clock was not measured by this "
                                  "benchmark; name a run of the front still to train")
        settings = models.gradient_settings(rc, "gradient")
        config, target, seeds = rc.config, rc.energy_target, {"model": mseed, "run": rseed}
        model = _timed(state, state_path, "equal_budget_model", lambda: models.run(mc, mseed, train=True))
        run = _timed(state, state_path, "gradient_run", lambda: models.run(rc, rseed, train=True))
        front = {"config": args.front, "model": args.front_model, "run": args.front_run}
    else:
        cfg = load_search_config(args.config)
        tree = [int(x) for x in args.tree.split(",")]
        gen = ModelGenerator(cfg, workdir, glue_dir=glue_dir, progress=True)
        settings, config, target, seeds, front = cfg.gradient, args.config, args.target, args.seed, None
        model = _timed(state, state_path, "equal_budget_model",
                       lambda: gen.finetune_and_evaluate(tree, None, seed=args.seed))
        run = _timed(state, state_path, "gradient_run", lambda: gradient_run(gen, args.target, args.seed, settings))
    ratio = run["training_wall_clock_s"] / model["training_wall_clock_s"]
    record = {
        "config": config, "target": target, "seed": seeds, "front": front,
        "search_fraction": settings.search_fraction, "estimator": settings.estimator,
        "weight_sampling": settings.weight_sampling, "objective": settings.objective,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "equal_budget_model": model, "gradient_run": run,
        "run_over_model_wall_clock": ratio,
        "run_over_model_incl_evaluation": (run["training_wall_clock_s"] + (run["eval_wall_clock_s"] or 0.0)) / (
            model["training_wall_clock_s"] + (model["eval_wall_clock_s"] or 0.0)),
        "goal": f"<= {GOAL}x", "goal_met": ratio <= GOAL,
        "note": "training wall clocks of the loops (compilation included, time between sessions excluded); "
                f"efficiencies: run {format_efficiency(run['energy_ratio'])}, "
                f"model {format_efficiency(model['energy_ratio'])}",
    }
    record |= {"commit": _commit(), "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
               "earlier_measurements": _earlier(Path(args.out), record)}
    write_json_atomic(args.out, record)
    print(f"gradient run {run['training_wall_clock_s']:.0f} s (search {run.get('search_wall_clock_s', 0):.0f} s) "
          f"against one equal-budget model {model['training_wall_clock_s']:.0f} s: {ratio:.3f}x (goal <= {GOAL}x)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
