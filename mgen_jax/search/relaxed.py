"""The relaxed phases: the warm-up and the lambda searches.

- **Warm-up** (folder ``warmup/``): the relaxed model's weights trained with the branch logits frozen at uniform
  (temperature 1, ``warmup_sampling``): lambda-independent, shared by every search and by the loss profile that
  budget selection reads. Keeps ``params.msgpack`` and ``result.json`` (``WarmupRecord``).
- **Lambda search** (folder ``search_lambda_<lambda>/``): weights and branch logits trained together against
  lambda x energy from the warm-up's weights; b_t = argmax of the logits. Its fields (``SEARCH_FIELDS``) are checked
  in its folder, so that the warm-up and every fine-tuned model are kept when only they change.

Each phase resumes from its checkpoint (ModelGenerator.loop) and, once its result is written, drops it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgen_jax.io import write_json_atomic
from mgen_jax.search.data import SEARCH_STREAM, WARMUP_STREAM
from mgen_jax.search.rundir import PhaseFields, RunDir
from mgen_jax.search.steps import RelaxedState, expected_branch_points, make_relaxed_step
from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from mgen_jax.train.optim import adamw_warmup_linear

# What only the lambda searches read (the warm-up trains with frozen uniform logits at temperature 1 and its own
# warmup_sampling): checked per search folder.
SEARCH_FIELDS = PhaseFields(("search_steps", "lr_logits", "temperature_start", "temperature_end", "sampling",
                             "search_task_weights"), "search folder")


@dataclasses.dataclass(frozen=True)
class WarmupRecord:
    """A finished warm-up (its ``result.json``): its steps and training wall clock."""

    steps: int
    wall_clock_s: float


def warmup_record(run: RunDir) -> WarmupRecord | None:
    """The warm-up's record, or None before it has finished."""
    if not run.finished(run.warmup):
        return None
    result = run.result(run.warmup, ("steps", "wall_clock_s"))
    return WarmupRecord(result["steps"], result["wall_clock_s"])


def record_no_warmup(run: RunDir) -> None:
    """Record a warm-up of 0 steps without training (nothing reads warm-up weights)."""
    write_json_atomic(run.warmup / "result.json", {"steps": 0, "wall_clock_s": 0.0})


def warmup(gen) -> Any:
    """The warm-up's weights: trained (in ``warmup/``) unless a finished warm-up holds them."""
    directory = gen.run.warmup
    done = directory / "params.msgpack"
    params = gen.initial_params()
    if done.exists() and gen.run.finished(directory):  # weights without result.json: a partial phase
        return restore_checkpoint(done, params)
    logits = jnp.zeros((len(gen.tasks), gen.num_units + 1))
    with gen.run.phase_folder(directory, "warm-up folder"):
        if done.exists() and gen.run.finished(directory):  # finished by another process before the lock
            return restore_checkpoint(done, params)
        state, wall = _relaxed(gen, directory, params, logits, gen.cfg.warmup_steps, 0.0, train_logits=False,
                               desc="warm-up (logits frozen)")
        save_checkpoint(done, state.params)
        write_json_atomic(directory / "result.json", {"steps": gen.cfg.warmup_steps, "wall_clock_s": wall})
        gen.run.drop_checkpoint(directory)
    return state.params


def search(gen, lam: float, warm_params) -> dict[str, Any]:
    """Joint search of weights and branch logits for one lambda from the warm-up's weights. Returns its record
    (``result.json``): ``lambda``, ``logits`` [T][U + 1], ``branch_points`` (argmax), ``expected_branch_points``,
    ``steps``, ``settings`` (SEARCH_FIELDS) and ``wall_clock_s``."""
    directory = gen.run.search(lam)
    result = directory / "result.json"
    gen.run.check_phase(directory, SEARCH_FIELDS.settings(gen.cfg), SEARCH_FIELDS.folder)
    if result.exists():
        return gen.run.result(directory, ("lambda", "branch_points", "steps", "wall_clock_s"))
    logits = jnp.zeros((len(gen.tasks), gen.num_units + 1))
    with gen.run.phase_folder(directory, SEARCH_FIELDS.folder):
        if result.exists():  # finished by another process before the lock
            return gen.run.result(directory, ("lambda", "branch_points", "steps", "wall_clock_s"))
        state, wall = _relaxed(gen, directory, warm_params, logits, gen.cfg.search_steps, lam, train_logits=True,
                               desc=f"search lambda={lam:g}")
        logits = np.asarray(state.logits)
        record = {
            "lambda": lam, "logits": logits.tolist(), "branch_points": [int(b) for b in logits.argmax(axis=1)],
            "expected_branch_points": expected_branch_points(logits).tolist(), "steps": gen.cfg.search_steps,
            "settings": SEARCH_FIELDS.settings(gen.cfg), "wall_clock_s": wall,
        }
        write_json_atomic(result, record)
        gen.run.drop_checkpoint(directory)
    return record


def _relaxed(gen, directory: Path, params, logits, steps: int, lam: float, *, train_logits: bool, desc: str):
    """``steps`` relaxed steps in ``directory``: weights only (the warm-up) or weights and logits (a search)."""
    cfg = gen.cfg
    tx_w = adamw_warmup_linear(cfg.lr_weights, max(steps, 1), warmup_ratio=cfg.warmup_ratio,
                               weight_decay=cfg.weight_decay)
    tx_l = optax.adam(cfg.lr_logits)
    params = jax.tree.map(jnp.copy, params)  # the step donates its state; the caller keeps its arrays
    state = RelaxedState(jnp.asarray(0, jnp.int32), params, tx_w.init(params), logits, tx_l.init(logits))
    fn = make_relaxed_step(gen.model, gen.tasks, tx_w, tx_l, gen.energy, jax.random.PRNGKey(cfg.seed + 3),
                           sampling=cfg.sampling if train_logits else cfg.warmup_sampling,
                           task_weights=cfg.search_task_weights if train_logits else None)

    def step(state, batch, k):
        frac = k / max(steps - 1, 1)
        tau = cfg.temperature_start * (cfg.temperature_end / cfg.temperature_start) ** frac if train_logits else 1.0
        return fn(state, batch, jnp.float32(lam), jnp.float32(tau), jnp.float32(1.0 if train_logits else 0.0))

    def observe(k, outputs):
        losses, ratio, total = outputs
        return {"loss": float(total), "energy_ratio": float(ratio)} | {
            f"loss_{t.name}": float(l) for t, l in zip(gen.tasks, losses)}

    mean_b = lambda state: {"mean_b": float(np.mean(expected_branch_points(state.logits)))}
    return gen.loop(directory, state, steps, SEARCH_STREAM if train_logits else WARMUP_STREAM, step, desc, observe,
                    mean_b, place=gen.replicate)
