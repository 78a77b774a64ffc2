"""The discrete models: fine-tune one tree and evaluate it (folder ``models/b_<...>[_seed<s>]/``).

Fairness: every discrete model (ours and the baselines) is fine-tuned from the same starting weights
(``finetune_init``) with the same recipe, so that the models differ only in their branch points. The recipe is either
``finetune_steps`` mixed batches (``finetune_budget: null``, the recipe-study configs) or every task's own budget
(``finetune_budget``: "independent" = exactly the batches its independent model saw, or per-task examples/epochs),
one task's batch per step, interleaved in proportion (search/budget.py). Its fields (``FINETUNE_FIELDS``) are checked
in every model folder, so that the rest of the run is kept when only they change.

A model's record (its ``result.json``, ``finetune_and_evaluate``): ModelGenerator.describe's fields (branch points,
dev and held-out metrics and scores, exact-simulator energy, area, latency), the budget actually spent
(``examples_seen``, ``finetune_steps``, ...), the recipe and the wall clocks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgen_jax.data.glue import get_task
from mgen_jax.data.pipeline import BatchStream, collate
from mgen_jax.data.predictions import PREDICTIONS, write_predictions
from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search.budget import (
    budget_optimizer, init_budget_state, interleave, make_budget_step, task_steps, teacher_weight,
)
from mgen_jax.search.data import FINETUNE_STREAM
from mgen_jax.search.rundir import PhaseFields
from mgen_jax.search.steps import DiscreteState, evaluate_discrete, make_discrete_step
from mgen_jax.train.checkpoint import save_checkpoint
from mgen_jax.train.optim import adamw_warmup_linear, warmup_linear_schedule
from mgen_jax.train.parallel import check_batch, replicate, shard_batch

# What only the discrete models read: checked per model folder.
FINETUNE_FIELDS = PhaseFields(("finetune_steps", "lr_finetune", "finetune_init", "finetune_own_lr_scale",
                               "distill_weight", "distill_temperature", "distill_anneal", "finetune_task_weights",
                               "finetune_budget", "finetune_batch_size", "teacher_run"), "model folder")


# what every reader of a model's record takes from it (the sweep's points, the front, the claim)
MODEL_RECORD = ("branch_points", "scores", "mean_score", "energy_per_request_j", "energy_ratio", "crossbars")


def check_branch_points(gen, branch_points: Sequence[int]) -> list[int]:
    """``branch_points`` as a list of ints; ConfigError unless it has one entry per task, each in 0..U."""
    b = [int(x) for x in branch_points]
    if len(b) != len(gen.tasks) or any(not 0 <= x <= gen.num_units for x in b):
        raise ConfigError(f"branch points {b} do not fit {len(gen.tasks)} tasks and {gen.num_units} units")
    return b


def finetune_and_evaluate(gen, branch_points: Sequence[int], warm_params, *, seed: int | None = None
                          ) -> dict[str, Any]:
    """Fine-tune the discrete model (from the weights ``finetune_init`` names, for the budget ``finetune_budget``
    sets, with training seed ``seed``, default the config's); held-out and dev metrics (dev only reported);
    exact-simulator energy, area and latency. A finished model's record is read back, not trained again."""
    b = check_branch_points(gen, branch_points)
    cfg = gen.cfg
    seed = cfg.seed if seed is None else int(seed)
    if seed != cfg.seed and cfg.finetune_budget is None:
        raise ConfigError("another training seed needs a fine-tuning budget (finetune_budget)")
    directory = gen.run.model(b, seed)
    gen.run.check_phase(directory, FINETUNE_FIELDS.settings(cfg), FINETUNE_FIELDS.folder)
    if gen.run.finished(directory):
        return gen.run.result(directory, MODEL_RECORD)
    with gen.run.phase_folder(directory, FINETUNE_FIELDS.folder):
        if gen.run.finished(directory):  # finished by another process between the check above and the lock
            return gen.run.result(directory, MODEL_RECORD)
        return _train_and_record(gen, directory, b, warm_params, seed)


def _train_and_record(gen, directory: Path, b: list[int], warm_params, seed: int) -> dict[str, Any]:
    cfg = gen.cfg
    start = _start_params(gen, warm_params, seed)
    if cfg.finetune_budget is None:
        params, wall, info = train_mixed(gen, directory, start, b)
    else:
        params, wall, info = train_budget(gen, directory, start, b, seed)
    record = evaluate(gen, directory, b, params) | info | {
        "seed": seed, "finetune_init": cfg.finetune_init, "finetune_own_lr_scale": cfg.finetune_own_lr_scale,
        "distill_weight": cfg.distill_weight, "distill_temperature": cfg.distill_temperature,
        "distill_anneal": cfg.distill_anneal, "teacher_run": cfg.teacher_run if cfg.distill_weight > 0 else None,
        "finetune_task_weights": None if cfg.finetune_task_weights is None else list(cfg.finetune_task_weights),
        "finetune_wall_clock_s": wall}
    write_json_atomic(directory / "result.json", record)
    gen.run.drop_checkpoint(directory)
    return record


def _start_params(gen, warm_params, seed: int) -> Any:
    """Where every discrete model starts (``finetune_init``)."""
    if gen.cfg.finetune_init == "pretrained":
        return gen.pretrained_params(seed)
    if gen.cfg.finetune_init == "independent":
        # the warm-up's embeddings and trunk; every task's own units and head as it was fine-tuned alone
        def own_and_heads():
            initial = gen.initial_params()
            return {"own": initial["own"], "heads": initial["heads"]}

        return dict(warm_params) | gen.memo("initial_own_heads", own_and_heads)
    return warm_params


def evaluate(gen, directory: Path, b: Sequence[int], params) -> dict[str, Any]:
    """Save a trained discrete model's weights (``params.msgpack``), evaluate it on the held-out split and once on
    dev, write every row's prediction (``predictions.json``: what a paired bootstrap resamples) and return its
    ``describe`` record with ``eval_wall_clock_s``."""
    save_checkpoint(directory / "params.msgpack", params)
    clock = time.perf_counter()
    params = gen.replicate(params)
    rows = {}
    heldout = None
    if gen.data.has_heldout:
        heldout, rows["heldout"] = evaluate_discrete(gen.predict, params, gen.data, b, gen.eval_batch, "heldout",
                                                     gen.shard, with_predictions=True)
    metrics, rows["dev"] = evaluate_discrete(gen.predict, params, gen.data, b, gen.eval_batch, "dev", gen.shard,
                                             with_predictions=True)  # once
    write_predictions(directory / PREDICTIONS, rows)
    return gen.describe(b, metrics, heldout) | {"eval_wall_clock_s": time.perf_counter() - clock}


def train_mixed(gen, directory: Path, params, b: list[int]):
    """``finetune_steps`` steps of mixed batches (per_task_batch examples of every task), the recipe before equal
    budgets (kept for the recipe-study configs). Returns (weights, wall clock, the budget's record fields)."""
    cfg = gen.cfg
    tx = adamw_warmup_linear(cfg.lr_finetune, max(cfg.finetune_steps, 1), warmup_ratio=cfg.warmup_ratio,
                             weight_decay=cfg.weight_decay)
    if cfg.finetune_own_lr_scale != 1.0:  # own units and heads move slower than the trunk
        own_or_head = lambda params: {k: jax.tree.map(lambda _: k in ("own", "heads"), v) for k, v in params.items()}
        tx = optax.chain(tx, optax.masked(optax.scale(cfg.finetune_own_lr_scale), own_or_head))
    params = jax.tree.map(jnp.copy, params)  # the step donates its state; the caller's weights stay
    state = DiscreteState(jnp.asarray(0, jnp.int32), params, tx.init(params))
    fn = gen.memo("discrete_step", lambda: make_discrete_step(
        gen.model, gen.tasks, tx, jax.random.PRNGKey(cfg.seed + 5), distill_weight=cfg.distill_weight,
        distill_temperature=cfg.distill_temperature, task_weights=cfg.finetune_task_weights))
    b_arr = jnp.asarray(b, jnp.int32)
    teachers = gen.teachers() if cfg.distill_weight > 0 else None

    def observe(k, losses):
        return {"loss": float(losses.sum())} | {f"loss_{t.name}": float(l) for t, l in zip(gen.tasks, losses)}

    state, wall = gen.loop(directory, state, cfg.finetune_steps, FINETUNE_STREAM,
                           lambda s, batch, k: fn(s, batch, b_arr, teachers), f"fine-tune b={b}", observe,
                           place=gen.replicate)
    examples = cfg.finetune_steps * cfg.per_task_batch
    return state.params, wall, {
        "finetune_steps": cfg.finetune_steps, "finetune_budget": f"{cfg.finetune_steps} mixed steps of "
        f"{cfg.per_task_batch} examples per task", "examples_seen": {t.name: examples for t in gen.tasks}}


def train_budget(gen, directory: Path, params, b: list[int], seed: int):
    """Every task's budget, one task's batch per step, interleaved in proportion (search/budget.py), data parallel
    over every local device. Returns (weights, wall clock, the budget's record fields)."""
    cfg = gen.cfg
    if cfg.finetune_task_weights is not None:
        raise ConfigError("finetune_task_weights act on mixed batches: they need finetune_budget: null")
    distill = cfg.distill_weight > 0
    teacher = gen.teacher_outputs() if distill else None
    streams = budget_streams(gen, seed)
    schedule = interleave([s.steps for s in streams])
    total = len(schedule)
    lr = warmup_linear_schedule(cfg.lr_finetune, total, warmup_ratio=cfg.warmup_ratio)
    for stream in streams:
        check_batch(stream.batch_size, gen.mesh, "the fine-tuning batch size")
    tx, fn = budget_step(gen)
    dropout_key = gen.replicate(jax.random.PRNGKey(seed + 5))
    state = init_budget_state(params, tx)
    b_placed = placed_branch_points(gen, b)

    def step(state, batch, k):
        t = int(schedule[k])
        args = (jnp.float32(teacher_weight(k, total, cfg.distill_weight, cfg.distill_anneal)),) if distill else ()
        state, loss = fn(state, batch, jnp.int32(t), b_placed[t], jnp.float32(lr(k)), dropout_key, *args)
        return state, (t, loss)

    log = task_loss_log(gen.tasks)
    state, wall = gen.loop(directory, state, total, budget_batches(gen, streams, schedule, teacher), step,
                           f"fine-tune b={b} (equal budget)", lambda k, out: log(*out),
                           place=lambda s: replicate(s, gen.mesh))
    real, padded = token_counts(streams)
    budget = cfg.finetune_budget if isinstance(cfg.finetune_budget, str) else "per-task examples/epochs"
    return state.params, wall, {
        "finetune_steps": total, "finetune_budget": budget, **per_task_fields(gen.tasks, streams),
        "lr_finetune": cfg.lr_finetune, "padding_fraction": 1 - real / padded, "real_tokens": real,
        "real_tokens_per_s": real / wall if wall > 0 else None, "devices": len(jax.devices())}


def token_counts(streams: Sequence[BatchStream]) -> tuple[int, int]:
    """(real, padded) tokens of every stream together."""
    tokens = [s.tokens() for s in streams]
    return sum(r for r, _ in tokens), sum(p for _, p in tokens)


def per_task_fields(tasks: Sequence[Any], streams: Sequence[BatchStream]) -> dict[str, dict[str, int]]:
    """What a budget run's record says of each task's stream: examples seen, steps and batch size."""
    return {"examples_seen": {t.name: s.examples() for t, s in zip(tasks, streams)},
            "steps_per_task": {t.name: s.steps for t, s in zip(tasks, streams)},
            "batch_size_per_task": {t.name: s.batch_size for t, s in zip(tasks, streams)}}


def task_loss_log(tasks: Sequence[Any]) -> Callable[[int, Any], dict[str, Any]]:
    """observe(t, loss) -> the logged values of a budget step of task t: its loss and every task's mean over its
    last 20 steps."""
    recent: dict[int, list[float]] = {t: [] for t in range(len(tasks))}

    def observe(t, loss) -> dict[str, Any]:
        recent[t] = (recent[t] + [float(loss)])[-20:]
        return {"loss": float(loss), "task": tasks[t].name} | {
            f"loss_{x.name}": float(np.mean(recent[i])) for i, x in enumerate(tasks) if recent[i]}

    return observe


def budget_streams(gen, seed: int) -> list[BatchStream]:
    """Every task's training stream under ``finetune_budget`` for training seed ``seed``: with "independent" exactly
    the reference run's (batch size, epochs, buckets; seed 0 of both is the same batch order)."""
    budget, streams = gen.cfg.finetune_budget, []
    for t, (task, train) in enumerate(zip(gen.tasks, gen.data.train)):
        if budget == "independent":
            run = gen.reference_runs[t]["config"]
            _check_steps(run["epochs"] * -(-len(train) // run["batch_size"]), f"{task.name}'s independent run "
                         f"(epochs {run['epochs']:g}, batch size {run['batch_size']})")
            stream = BatchStream.for_epochs(train.lengths, run["batch_size"], run["epochs"], buckets=run["buckets"],
                                            seed=seed, bucketing=run["bucketing"])
            seen = gen.reference_runs[t]["summary"]["train_examples_seen"]
            if stream.examples() != seen and seed == run["seed"]:
                raise ConfigError(f"{task.name}: the equal-budget stream draws {stream.examples()} examples, the "
                                  f"independent run saw {seen}")
        else:
            kind, given = next(iter({get_task(k).name: v for k, v in budget.items()}[task.name].items()))
            amount = given * len(train) if kind == "epochs" else given
            _check_steps(amount / gen.cfg.finetune_batch_size, f"search config field 'finetune_budget.{task.name}' "
                         f"({kind}: {given:g})")
            stream = _nearest_stream(train, gen.cfg.finetune_batch_size, amount, gen.cfg.buckets, seed)
        streams.append(stream)
    return streams


MAX_BUDGET_STEPS = 1_000_000  # one task's steps at equal budget (GLUE's largest independent run, MNLI: 37k), so that
# its stream and the schedule arrays stay small


def _check_steps(steps: float, what: str) -> None:
    """ConfigError naming ``what`` if it makes more than MAX_BUDGET_STEPS steps (before any stream or schedule of
    that length is built)."""
    if not steps <= MAX_BUDGET_STEPS:
        raise ConfigError(f"{what} makes {steps:.3g} steps, more than the {MAX_BUDGET_STEPS:,} an equal-budget run "
                          "may take")


def _nearest_stream(train, size: int, amount: float, buckets, seed: int) -> BatchStream:
    """The stream of ``size`` batches whose examples come nearest ``amount`` (within one batch of it)."""
    make = lambda k: BatchStream(train.lengths, size, steps=k, buckets=buckets, seed=seed)
    stream = make(max(1, int(amount // size)))
    while stream.examples() < amount:
        stream = make(stream.steps + 1)
    if stream.steps > 1 and abs(make(stream.steps - 1).examples() - amount) < stream.examples() - amount:
        stream = make(stream.steps - 1)
    return stream


def budget_step(gen):
    """(tx, step): the equal-budget optimizer and its jitted step (``make_budget_step``; distillation when
    ``distill_weight`` > 0), built once: one compiled step (per padded length) serves every tree and seed."""
    cfg = gen.cfg
    tx = budget_optimizer(cfg.weight_decay)
    step = gen.memo("budget_step", lambda: make_budget_step(
        gen.model, gen.tasks, tx, own_lr_scale=cfg.finetune_own_lr_scale,
        distill_temperature=cfg.distill_temperature if cfg.distill_weight > 0 else None))
    return tx, step


def placed_branch_points(gen, branch_points: Sequence[int]) -> list[jax.Array]:
    """Every task's branch point as an int32 replicated over the devices, as the gradient search's logit step
    outputs it: the equal-budget step (``budget_step``) then compiles one program per batch shape for the search and
    every fine-tuning run alike (an argument placed otherwise would compile it again)."""
    return [gen.replicate(jnp.int32(b)) for b in np.asarray(branch_points, np.int32)]


def budget_batches(gen, streams: Sequence[BatchStream], schedule: np.ndarray,
                   teacher: Sequence[np.ndarray] | None = None) -> Callable[[int], dict]:
    """k -> global step k's batch of an equal-budget run (task ``schedule[k]``'s next batch of its stream), on the
    devices; with ``teacher`` (every task's teacher outputs on its training rows) also the rows' teacher outputs."""
    index = task_steps(schedule, len(gen.tasks))

    def batch_fn(k):
        t = int(schedule[k])
        idx, length = streams[t].batch(int(index[k]))
        batch = collate(gen.data.train[t], idx, length, streams[t].batch_size)
        batch["labels"] = batch["labels"].astype(np.float32)
        if teacher is not None:  # the teacher's outputs on these rows (padding rows: zeros, weight 0)
            batch["teacher"] = np.zeros((streams[t].batch_size, gen.model.max_labels), np.float32)
            batch["teacher"][: len(idx)] = teacher[t][idx]
        return shard_batch(batch, gen.mesh)

    return batch_fn
