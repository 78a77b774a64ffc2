"""Fine-tune a pretrained BERT on one GLUE task: ``train_and_evaluate(config, workdir)``.

AdamW (no decay on biases and LayerNorm) with linear warm-up and linear decay, seeded, length-bucketed batches,
data-parallel over all JAX devices (of every process: train/parallel.py), periodic held-out evaluation, the resumable
loop of train/loop.py. The workdir receives:

- ``config.json``: the config and data provenance;
- ``metrics.jsonl``: one line per evaluation (step, epoch, train loss, held-out metrics, wall-clock);
- ``checkpoint.msgpack``: the latest train state (rewritten atomically; a killed run resumes from it, exactly), and
  ``wall_clock.json``, the training seconds up to it;
- ``final_params.msgpack``: the fine-tuned encoder + head parameters;
- ``summary.json``: held-out and dev metrics of the final weights, train rows and examples seen, epochs, seed,
  wall-clock.

The train split is first cut into training rows and a held-out split (data/splits.py); periodic evaluations read the
held-out split only, and the dev set is evaluated once, after training, for the report.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from mgen_jax.data.glue import GlueTask, get_task, load_split
from mgen_jax.data.metrics import main_score, prediction_metrics, predictions
from mgen_jax.data.predictions import PREDICTIONS, write_predictions
from mgen_jax.data.pipeline import BatchStream, EncodedSplit, batch_plan, collate, encode_split
from mgen_jax.data.splits import train_and_heldout
from mgen_jax.errors import ConfigError, TrainingError  # noqa: F401  (TrainingError: re-exported)
from mgen_jax.io import clean_partial_files, write_json_atomic
from mgen_jax.model.bert import BertConfig, SequenceClassifier
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.train.checkpoint import save_checkpoint
from mgen_jax.train.config import MAX_STEPS, FinetuneConfig
from mgen_jax.train.loop import CHECKPOINT, LoopHooks, LoopSettings, run_loop
from mgen_jax.train.optim import adamw_warmup_linear
from mgen_jax.train.parallel import check_batch, data_mesh, is_main_process, replicate, shard_batch, to_host


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def make_optimizer(cfg: FinetuneConfig, total_steps: int) -> optax.GradientTransformation:
    return adamw_warmup_linear(cfg.learning_rate, total_steps, warmup_ratio=cfg.warmup_ratio,
                               weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)


def per_example_loss(task: GlueTask, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy for classification, squared error for regression (STS-B)."""
    if task.is_regression:
        return jnp.square(outputs[:, 0] - labels)
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels)


def make_train_step(module: SequenceClassifier, task: GlueTask, tx: optax.GradientTransformation, base_rng: jax.Array):
    def loss_fn(params, batch, rng):
        outputs = module.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
            deterministic=False, rngs={"dropout": rng},
        )
        losses = per_example_loss(task, outputs, batch["labels"])
        return jnp.sum(losses * batch["weights"]) / jnp.maximum(jnp.sum(batch["weights"]), 1.0)

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(base_rng, state.step)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), loss

    return jax.jit(step, donate_argnums=(0,))


def make_predict(module: SequenceClassifier):
    return jax.jit(
        lambda params, batch: module.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], deterministic=True
        )
    )


def predict(predict_fn: Callable, params: Any, data: EncodedSplit, batch_size: int, buckets, mesh) -> np.ndarray:
    """Model outputs for every example of ``data``, in its order."""
    outputs: list[np.ndarray | None] = [None] * len(data)
    for indices, length in batch_plan(data.lengths, batch_size, buckets=buckets, shuffle=False):
        batch = shard_batch(collate(data, indices, length, batch_size), mesh)
        result = to_host(predict_fn(params, batch))
        for row, i in enumerate(indices):
            outputs[i] = result[row]
    return np.stack(outputs)


def eval_batch_size(cfg: FinetuneConfig, rows: int, mesh) -> int:
    """``cfg.eval_batch_size``, or fewer when the split is smaller (a batch is padded to its size, so a batch larger
    than the split only allocates padding): the split's rows rounded up to a multiple of the devices."""
    devices = mesh.devices.size
    return min(cfg.eval_batch_size, max(1, -(-rows // devices)) * devices)


def evaluate(predict_fn, params, data: EncodedSplit, cfg: FinetuneConfig, mesh, rows: dict | None = None
             ) -> dict[str, float]:
    """The split's metrics; with ``rows`` (a dict) also every row's prediction and label, put there as {"pred",
    "labels"} (data/predictions.py)."""
    outputs = predict(predict_fn, params, data, eval_batch_size(cfg, len(data), mesh), cfg.buckets, mesh)
    pred = predictions(data.task, outputs)
    if rows is not None:
        rows.update(pred=pred, labels=np.asarray(data.labels))
    return prediction_metrics(data.task, pred, data.labels)


def _subset(data, limit: int | None, seed: int, what: str):
    if limit is None or limit >= len(data):
        return data
    idx = np.sort(np.random.default_rng([seed, 7]).permutation(len(data))[:limit])
    return data.take(idx, note=f"{what} capped at {limit} rows (seeded subset, seed {seed})")


def prepare_data(cfg: FinetuneConfig, tokenizer, glue_dir=None) -> tuple[EncodedSplit, EncodedSplit | None, EncodedSplit]:
    """(training rows, held-out rows or None, dev rows), encoded: data/splits.py says which rows each holds."""
    train, heldout = train_and_heldout(cfg.task, cfg.heldout, max_train_examples=cfg.max_train_examples,
                                       data_seed=cfg.data_seed, glue_dir=glue_dir)
    dev = _subset(load_split(cfg.task, "dev", glue_dir=glue_dir), cfg.max_dev_examples, cfg.seed, "dev")
    encode = lambda split: encode_split(split, tokenizer, max_length=cfg.max_length)
    return encode(train), (encode(heldout) if len(heldout) else None), encode(dev)


def init_params(module: SequenceClassifier, encoder_params: Any, cfg: FinetuneConfig, bert: BertConfig) -> Any:
    """A fresh head (seeded) on the pretrained encoder."""
    dummy = jnp.zeros((1, 8), jnp.int32)
    variables = module.init(jax.random.PRNGKey(cfg.seed), dummy, jnp.ones_like(dummy), dummy)
    params = dict(variables["params"])
    params["encoder"] = jax.tree.map(jnp.copy, encoder_params)  # the train step donates its state
    return params


# Config fields that do not change what a run computes: a work folder may be resumed with other values of these.
FREE_FIELDS = ("checkpoint_every_steps",)


def run_settings(cfg: FinetuneConfig, train: EncodedSplit) -> dict[str, Any]:
    """What a fine-tuning work folder's ``settings.json`` records: every config field that changes the result (the
    task by its canonical name) and the digest of the training rows (the same config on other data is another run)."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in FREE_FIELDS}
    settings["task"] = get_task(cfg.task).name
    settings["train_rows_digest"] = train.rows_digest
    return settings


def _settings_defaults() -> dict[str, Any]:
    """Defaults of FinetuneConfig fields, for a settings file written before a field existed."""
    defaults = {f.name: f.default for f in dataclasses.fields(FinetuneConfig) if f.default is not dataclasses.MISSING}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def _adopt_legacy_settings(workdir: Path) -> None:
    """A folder written before settings.json existed: its config.json holds the same record; copy it, so that the
    guard compares against it. A folder with a checkpoint or results but neither file is not ours to resume."""
    from mgen_jax.workfolder import SETTINGS_FILE, read_state_json

    if (workdir / SETTINGS_FILE).exists():
        return
    started = [name for name in (CHECKPOINT, "final_params.msgpack", "summary.json") if (workdir / name).exists()]
    if not started:
        return
    if not (workdir / "config.json").exists():
        raise ConfigError(f"fine-tuning work folder {workdir} holds {started[0]} but no record of the run that wrote "
                          "it (settings.json, config.json): move it away or use another --workdir")
    record = read_state_json(workdir / "config.json", ("config", "task"))
    if not isinstance(record["config"], dict):
        raise ConfigError(f"state file {workdir / 'config.json'}: field 'config' is not a mapping")
    legacy = {k: v for k, v in record["config"].items() if k not in FREE_FIELDS}
    legacy["task"] = record["task"]
    legacy["train_rows_digest"] = record.get("train_rows_digest")
    write_json_atomic(workdir / SETTINGS_FILE, legacy)


def train_and_evaluate(
    cfg: FinetuneConfig, workdir: str | Path, *, glue_dir: str | Path | None = None, progress: bool = True,
    stop_at_step: int | None = None,
) -> dict[str, Any]:
    """Fine-tune, evaluate and write results to ``workdir``; resumes from ``workdir/checkpoint.msgpack`` if present.

    The folder is locked for the run (a second process on it gets a ConfigError) and carries the run's settings
    (``run_settings``): a run with other settings is refused, never resumed from this one's checkpoint.
    ``stop_at_step`` stops the run (after checkpointing) at that step, as an interruption would; calling again resumes.
    Returns the summary (also written to summary.json), or the partial state's info when stopped early.
    """
    from mgen_jax.train.parallel import init_distributed
    from mgen_jax.workfolder import lock_work_folder

    workdir = Path(workdir)
    get_task(cfg.task)
    init_distributed()  # first: in a multi-process run, process 0 takes the lock for all of them
    with lock_work_folder(workdir, "fine-tuning work folder"):
        _check_new_folder(workdir)
        return _train_and_evaluate(cfg, workdir, glue_dir=glue_dir, progress=progress, stop_at_step=stop_at_step)


def _check_new_folder(workdir: Path) -> None:
    """A folder without settings.json and without a run written before settings.json existed is a new run's: it may
    hold only what a run writes before its settings (its lock, temporary files of a kill; of an older version's start,
    its config.json record, metrics and wall clock). Any other file is someone else's (``--workdir .`` in a
    repository would have overwritten its config.json): ConfigError naming the folder and the files."""
    from mgen_jax.io import describe_value, is_partial_file
    from mgen_jax.train.loop import METRICS, WALL_CLOCK
    from mgen_jax.workfolder import LOCK_FILE, SETTINGS_FILE

    started = (SETTINGS_FILE, CHECKPOINT, "final_params.msgpack", "summary.json")
    if any((workdir / name).exists() for name in started):
        return
    foreign = sorted(p.name for p in workdir.iterdir() if p.name not in (LOCK_FILE, METRICS, WALL_CLOCK)
                     and not is_partial_file(p))
    if "config.json" in foreign and _is_run_record(workdir / "config.json"):
        foreign.remove("config.json")
    if foreign:
        raise ConfigError(f"fine-tuning work folder {workdir} holds files that no fine-tuning run wrote "
                          f"({describe_value(foreign[:5], 120)}{' ...' if len(foreign) > 5 else ''}): a new run "
                          "starts in a new or empty folder (it writes config.json, summary.json and checkpoints "
                          "there); use another --workdir")


def _is_run_record(path: Path) -> bool:
    """Whether ``path`` is the config.json record a fine-tuning run writes (a JSON object with 'config' and 'task')."""
    from mgen_jax.workfolder import read_state_json

    try:
        record = read_state_json(path, ("config", "task"))
    except ConfigError:
        return False
    return isinstance(record["config"], dict)


def _train_and_evaluate(cfg: FinetuneConfig, workdir: Path, *, glue_dir, progress: bool,
                        stop_at_step: int | None) -> dict[str, Any]:
    from mgen_jax.workfolder import check_settings

    task = get_task(cfg.task)
    mesh = data_mesh()
    check_batch(cfg.batch_size, mesh)
    check_batch(cfg.eval_batch_size, mesh, "eval_batch_size")

    pretrained = load_pretrained(cfg.model)
    bert = pretrained.config
    if cfg.hidden_dropout is not None:
        bert = dataclasses.replace(bert, hidden_dropout=cfg.hidden_dropout)
    bert = dataclasses.replace(bert, compute_dtype=cfg.compute_dtype)
    if cfg.max_length > bert.max_position:
        raise ConfigError(f"max_length {cfg.max_length} exceeds the model's {bert.max_position} positions")
    train, heldout, dev = prepare_data(cfg, pretrained.tokenizer, glue_dir)
    if cfg.batch_size > len(train):
        raise ConfigError(f"finetune config field 'batch_size' ({cfg.batch_size:,}) exceeds the {len(train):,} "
                          f"training rows of {task.name} (a batch is padded to its size)")
    module = SequenceClassifier(bert, task.num_labels, cfg.pooling)

    stream = BatchStream.for_epochs(train.lengths, cfg.batch_size, cfg.epochs, buckets=cfg.buckets, seed=cfg.seed,
                                    bucketing=cfg.bucketing)
    steps_per_epoch, total_steps = stream.steps_per_epoch, stream.steps
    if total_steps > MAX_STEPS:
        raise ConfigError(f"finetune config field 'epochs' ({cfg.epochs:g}) makes more than the {MAX_STEPS:,} steps a "
                          "run can count")

    _adopt_legacy_settings(workdir)
    check_settings(workdir, run_settings(cfg, train), "fine-tuning work folder", defaults=_settings_defaults())
    if all((workdir / name).exists() for name in ("summary.json", "final_params.msgpack", PREDICTIONS)):
        from mgen_jax.workfolder import read_state_json  # finished: read back; dev is evaluated once per model

        return read_state_json(workdir / "summary.json", ("task", "metrics", "score"))
    clean_partial_files(workdir, recursive=False)  # what a kill during an atomic write left (the lock is ours)
    tx = make_optimizer(cfg, total_steps)
    params = init_params(module, pretrained.params, cfg, bert)
    state = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))

    if not (workdir / CHECKPOINT).exists():
        write_json_atomic(workdir / "config.json", {
            "config": cfg.to_dict(), "task": task.name, "model_dir": str(pretrained.directory.name),
            "train_rows": len(train), "dev_rows": len(dev), "train_split": train.split_note, "dev_split": dev.split_note,
            "heldout_rows": 0 if heldout is None else len(heldout), "train_rows_digest": train.rows_digest,
            "devices": len(jax.devices()), "processes": jax.process_count(), "backend": jax.default_backend(),
        })
    step_fn = make_train_step(module, task, tx, jax.random.PRNGKey(cfg.seed + 1))
    predict_fn = make_predict(module)
    eval_every = cfg.eval_every_steps or steps_per_epoch
    losses: list[float] = []  # this attempt's train losses, fetched from the devices every 10 steps
    main = is_main_process()

    def observe(k: int, loss) -> dict[str, float]:
        losses.append(float(loss))
        return {"loss": losses[-1]}

    def record(step: int, state: TrainState, wall_clock_s: float) -> dict[str, Any] | None:
        if step % eval_every and step != total_steps:
            return None
        # the held-out split is watched; the dev set is not looked at before the end
        line = {"epoch": step / steps_per_epoch, "train_loss": float(np.mean(losses[-eval_every:])),
                "wall_clock_s": wall_clock_s}
        if heldout is not None:
            line["heldout"] = evaluate(predict_fn, state.params, heldout, cfg, mesh)
            if main:
                tqdm.write(f"step {step}: held-out " + ", ".join(f"{k} {v:.4f}" for k, v in line["heldout"].items()),
                           file=sys.stderr)
        return line

    hooks = LoopHooks(
        batch=lambda k: shard_batch(collate(train, *stream.batch(k), cfg.batch_size), mesh),
        step=lambda state, batch, k: step_fn(state, batch),
        observe=observe,
        status=lambda done, state: {"loss": f"{np.mean(losses[-20:]):.4f}", "epoch": f"{done / steps_per_epoch:.2f}"},
        record=record,
        place=lambda state: replicate(state, mesh),
    )
    settings = LoopSettings(workdir, total_steps, f"finetune {task.name}", cfg.checkpoint_every_steps,
                            log_every_steps=eval_every, progress=progress,
                            stop_at_step=stop_at_step, error_hint=f" (learning rate {cfg.learning_rate})")
    state, wall, stopped = run_loop(settings, state, hooks)
    if stopped:
        return {"stopped_at_step": stop_at_step, "total_steps": total_steps}

    rows = {"heldout": {}, "dev": {}}
    heldout_metrics = None if heldout is None else evaluate(predict_fn, state.params, heldout, cfg, mesh,
                                                            rows["heldout"])
    metrics = evaluate(predict_fn, state.params, dev, cfg, mesh, rows["dev"])  # once, for the report
    save_checkpoint(workdir / "final_params.msgpack", state.params)
    write_predictions(workdir / PREDICTIONS, {split: {task.name: r} for split, r in rows.items() if r})
    summary = {
        "task": task.name, "metrics": metrics, "main_metric": task.main_metric, "score": main_score(task, metrics),
        "heldout_metrics": heldout_metrics,
        "heldout_score": None if heldout is None else main_score(task, heldout_metrics),
        "selection": "none: the model is the last step's weights; the held-out split is only watched",
        "train_examples": len(train), "train_examples_seen": stream.examples(), "train_rows_digest": train.rows_digest,
        "heldout_examples": 0 if heldout is None else len(heldout), "heldout_split": None if heldout is None
        else heldout.split_note, "dev_examples": len(dev), "train_split": train.split_note,
        "dev_split": dev.split_note + "; evaluated once, after training", "epochs": cfg.epochs, "steps": total_steps,
        "batch_size": cfg.batch_size, "data_seed": cfg.data_seed, **cfg.heldout.to_dict(),
        "learning_rate": cfg.learning_rate, "seed": cfg.seed, "max_length": cfg.max_length, "model": cfg.model,
        "wall_clock_s": wall, "devices": len(jax.devices()), "processes": jax.process_count(),
        "backend": jax.default_backend(),
    }
    write_json_atomic(workdir / "summary.json", summary)
    return summary

