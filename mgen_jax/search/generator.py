"""The model generator: warm-up, differentiable search of branch points for one lambda, discretisation, fine-tuning
and evaluation of discrete models, and the Pareto sweep with its baselines.

Every phase runs in its own folder under the workdir and resumes from its checkpoint; a phase whose result file
exists is not run again, and its checkpoint (weights and optimizer state, about 3x the weights) is then deleted:
what stays is the warm-up's ``params.msgpack``, each search's ``result.json`` (logits, branch points) and each
discrete model's fine-tuned ``params.msgpack`` and ``result.json``. Fairness: every discrete model (ours and the
baselines) is fine-tuned from the same starting weights (``finetune_init``) with the same recipe, so the models
differ only in their branch points.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mgen_jax import hw
from mgen_jax.data.glue import get_task
from mgen_jax.data.metrics import main_score
from mgen_jax.data.pipeline import BatchStream, collate
from mgen_jax.errors import ConfigError
from mgen_jax.data.predictions import PREDICTIONS, write_predictions
from mgen_jax.io import write_bytes_atomic, write_json_atomic
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search.config import SearchConfig
from mgen_jax.search.rundir import PhaseFields, RunDir
from mgen_jax.search.budget import (
    budget_optimizer, init_budget_state, interleave, make_budget_step, task_steps, teacher_weight,
)
from mgen_jax.search.data import MultiTaskData
from mgen_jax.search.gradient import GRADIENT_FIELDS
from mgen_jax.search.steps import (
    DiscreteState, RelaxedState, energy_model, evaluate_discrete, expected_branch_points, make_discrete_step,
    make_loss_profile, make_relaxed_step, make_task_loss_profile, make_task_predict, split_loss_profile,
)
from mgen_jax.search.select import (
    all_branch_points, calibrate_task_weights, estimated_loss, score_drop_profile, select_within_budget,
    tree_energy_ratios,
)
from mgen_jax.sim import simulate
from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from mgen_jax.train.optim import adamw_warmup_linear, warmup_linear_schedule
from mgen_jax.train.loop import LoopHooks, LoopSettings, run_loop
from mgen_jax.train.parallel import check_batch, data_mesh, is_main_process, replicate, shard_batch, to_host
from mgen_jax.workload.glue import glue_trace

WARMUP, SEARCH, FINETUNE = 0, 1, 2  # data streams
PROFILE = 7  # without a held-out split: mixed train batches no phase draws, for the loss profile

# The config fields that only one phase reads (rundir.PhaseFields); every other field is a run setting.
# The searches (the warm-up runs with frozen uniform logits at temperature 1 and its own warmup_sampling): checked per
# search folder, so that the warm-up and the fine-tuned discrete models (baselines included) are kept when only the
# search settings change.
SEARCH_FIELDS = PhaseFields(("search_steps", "lr_logits", "temperature_start", "temperature_end", "sampling",
                             "search_task_weights"), "search folder")
# The discrete models: checked per model folder.
FINETUNE_FIELDS = PhaseFields(("finetune_steps", "lr_finetune", "finetune_init", "finetune_own_lr_scale",
                               "distill_weight", "distill_temperature", "distill_anneal", "finetune_task_weights",
                               "finetune_budget", "finetune_batch_size", "teacher_run"), "model folder")
# Budget selection and the task-weight calibration: the profile file is named by its batches.
SELECTION_FIELDS = PhaseFields(("profile_batches", "task_weight_min_drop", "profile_metric"))
# The sweep: which models it trains and how it judges them.
SWEEP_FIELDS = PhaseFields(("name", "lambdas", "uniform_branch_points", "heuristic_thresholds", "redundancy_file",
                            "energy_budgets", "budgets_at_baselines", "uniform_at_budgets", "claim_seeds", "trees",
                            "full_sharing", "claim_margin"))
# The resumable loop: how often a checkpoint is written changes no result.
LOOP_FIELDS = PhaseFields(("checkpoint_every_steps",))
PHASES = (SEARCH_FIELDS, FINETUNE_FIELDS, SELECTION_FIELDS, SWEEP_FIELDS, GRADIENT_FIELDS, LOOP_FIELDS)


class Interrupted(Exception):
    """Raised by a phase stopped at ``interrupt_at`` (after its checkpoint), as a killed run would stop."""


class ModelGenerator:
    def __init__(self, cfg: SearchConfig, workdir: str | Path, *, glue_dir=None, progress: bool = True,
                 interrupt_at: int | None = None):
        # data parallelism over every device of every process (train/parallel.py; joins a multi-process run before
        # any JAX work): batches split on their example axis, state replicated
        self.mesh = data_mesh()
        check_batch(cfg.per_task_batch, self.mesh, "per_task_batch")
        self.interrupt_at = interrupt_at
        self.cfg = cfg
        self.run = RunDir(workdir, seed=cfg.seed)
        self.workdir = self.run.root
        self.glue_dir = glue_dir
        self.progress = progress and is_main_process()
        self.tasks = [get_task(t) for t in cfg.tasks]
        self.pretrained = load_pretrained(cfg.model)
        self.bert = self.pretrained.config
        self.num_units = self.bert.num_units
        self.model = MultiTaskModel(self.bert, [t.num_labels for t in self.tasks], cfg.pooling)
        self.reference_runs = self._reference_runs()
        self.data = MultiTaskData(
            [t.name for t in self.tasks], self.pretrained.tokenizer, max_length=cfg.max_length, buckets=cfg.buckets,
            per_task_batch=cfg.per_task_batch, length_window=cfg.length_window, seed=cfg.seed, glue_dir=glue_dir,
            max_dev_per_task=cfg.max_dev_per_task, heldout=cfg.heldout, max_train=self._train_caps(),
            data_seed=cfg.data_seed,
        )
        self._check_reference_rows()
        too_deep = [b for b in cfg.uniform_branch_points if b > self.num_units]
        if too_deep:
            raise ConfigError(f"search config field 'uniform_branch_points': {too_deep} exceed the model's "
                              f"{self.num_units} units")
        for i, tree in enumerate(cfg.trees):
            if max(tree["branch_points"]) > self.num_units:
                raise ConfigError(f"search config field 'trees[{i}].branch_points': {list(tree['branch_points'])} "
                                  f"exceed the model's {self.num_units} units")
        self.spec = hw.load_spec(cfg.hw)
        # The workload: every request runs every task, token lengths of the tasks' dev sets (DESIGN.md default).
        self.trace = glue_trace([t.name for t in self.tasks], glue_dir=glue_dir, max_length=cfg.max_length)
        self.energy = energy_model(self.bert, self.spec, [t.num_labels for t in self.tasks], self.trace, cfg.model)
        self.predict = make_task_predict(self.model)
        self.eval_batch = -(-64 // self.mesh.devices.size) * self.mesh.devices.size
        self._discrete_step = None
        self._initial_own_heads = None
        self._teachers = None
        self._teacher_outputs: list[np.ndarray] | None = None
        self._profile_fn = None
        self._task_profile_fn = None
        self._budget_step = None
        self._tree_ratios = None
        self._task_weights = None if isinstance(cfg.search_task_weights, str) else cfg.search_task_weights
        self.run.check_run(cfg, PHASES)

    # ----- the independent runs: rows, budgets ---------------------------------------------------------------
    def _reference_runs(self) -> list[dict[str, Any]] | None:
        """With ``finetune_budget: independent``: each task's reference run (the first independent_runs folder):
        its config.json and summary.json. Their held-out split must be this config's."""
        if self.cfg.finetune_budget != "independent":
            return None
        runs = []
        for task in self.tasks:
            folder = Path(self.cfg.independent_dirs[0]) / task.name
            paths = [folder / "config.json", folder / "summary.json"]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise ConfigError(f"finetune_budget: independent needs the finished independent {task.name} run: "
                                  f"{missing[0]} not found (mgen finetune, experiments/run_independent.sh)")
            config, summary = (json.loads(p.read_text()) for p in paths)
            if "train_examples_seen" not in summary:
                raise ConfigError(f"{folder}: the run predates held-out splits and recorded budgets; fine-tune it again")
            run_cfg = config["config"]
            theirs = {k: run_cfg.get(k) for k in ("heldout_fraction", "heldout_max_rows", "heldout_seed", "data_seed",
                                                   "max_length")}
            ours = self.cfg.heldout.to_dict() | {"data_seed": self.cfg.data_seed, "max_length": self.cfg.max_length}
            if theirs != ours:
                raise ConfigError(f"{folder}/config.json: the independent run used {theirs}, this search config "
                                  f"{ours}: the equal-budget comparison needs the same held-out split, rows and "
                                  "max_length")
            cap = (self.cfg.max_train_per_task or {}).get(task.name, run_cfg.get("max_train_examples"))
            if cap != run_cfg.get("max_train_examples"):
                raise ConfigError(f"search config field 'max_train_per_task.{task.name}' ({cap}) differs from the "
                                  f"independent run's cap ({run_cfg.get('max_train_examples')}, {folder})")
            runs.append({"folder": str(folder), "config": run_cfg, "summary": summary,
                         "train_rows_digest": config.get("train_rows_digest")})
        return runs

    def _train_caps(self) -> dict[str, int | None]:
        if self.reference_runs is not None:
            return {t.name: r["config"].get("max_train_examples") for t, r in zip(self.tasks, self.reference_runs)}
        caps = {}
        for task, cap in (self.cfg.max_train_per_task or {}).items():
            caps[get_task(task).name] = cap
        return caps

    def _check_reference_rows(self) -> None:
        for task, train, run in zip(self.tasks, self.data.train, self.reference_runs or []):
            if run["train_rows_digest"] != train.rows_digest:
                raise ConfigError(f"{task.name}: this run's training rows (digest {train.rows_digest}) are not the "
                                  f"independent run's ({run['train_rows_digest']}, {run['folder']}): the GLUE files "
                                  "or the split settings differ")

    def budget_streams(self, seed: int) -> list[BatchStream]:
        """Every task's training stream under ``finetune_budget`` for training seed ``seed``: with "independent"
        exactly the reference run's (batch size, epochs, buckets; seed 0 of both is the same batch order)."""
        budget, streams = self.cfg.finetune_budget, []
        for t, (task, train) in enumerate(zip(self.tasks, self.data.train)):
            if budget == "independent":
                run = self.reference_runs[t]["config"]
                stream = BatchStream.for_epochs(train.lengths, run["batch_size"], run["epochs"],
                                                buckets=run["buckets"], seed=seed, bucketing=run["bucketing"])
                seen = self.reference_runs[t]["summary"]["train_examples_seen"]
                if stream.examples() != seen and seed == self.reference_runs[t]["config"]["seed"]:
                    raise ConfigError(f"{task.name}: the equal-budget stream draws {stream.examples()} examples, the "
                                      f"independent run saw {seen}")
            else:
                kind, amount = next(iter({get_task(k).name: v for k, v in budget.items()}[task.name].items()))
                size = self.cfg.finetune_batch_size
                amount = amount * len(train) if kind == "epochs" else amount
                # the step count whose examples come nearest the budget (within one batch of it)
                make = lambda k: BatchStream(train.lengths, size, steps=k, buckets=self.cfg.buckets, seed=seed)
                stream = make(max(1, int(amount // size)))
                while stream.examples() < amount:
                    stream = make(stream.steps + 1)
                if stream.steps > 1 and abs(make(stream.steps - 1).examples() - amount) < stream.examples() - amount:
                    stream = make(stream.steps - 1)
            streams.append(stream)
        return streams

    # ----- initial parameters ----------------------------------------------------------------------------------
    def _task_models(self, folder: str | None = None) -> tuple[list[Any], list[Any]]:
        """Every task's encoder and head: from its fine-tuned model in ``folder`` (default: the reference independent
        run, ``independent_runs``' first), or pretrained copies and fresh heads when there is none."""
        encoders, heads = [], []
        folder = folder or (self.cfg.independent_dirs[0] if self.cfg.independent_dirs else None)
        for i, task in enumerate(self.tasks):
            if folder is None:
                encoders.append(self.pretrained.params)
                heads.append(self.model.init_head(jax.random.PRNGKey(self.cfg.seed * 1000 + i)))
                continue
            path = Path(folder) / task.name / "final_params.msgpack"
            if not path.is_file():
                raise ConfigError(f"{path} not found: fine-tune the independent {task.name} model first "
                                  f"(mgen finetune), or set independent_runs: null")
            tuned = restore_checkpoint(path, None)
            encoders.append(tuned["encoder"])
            heads.append(tuned["head"])
        return encoders, heads

    def pretrained_params(self, seed: int) -> Any:
        """Every unit (trunk and own copies) from the pretrained encoder, fresh heads drawn with ``seed``: where the
        independent models started (``finetune_init: pretrained``)."""
        heads = [self.model.init_head(jax.random.PRNGKey(seed * 1000 + i)) for i in range(len(self.tasks))]
        return self.model.from_encoders(self.pretrained.params, [self.pretrained.params] * len(self.tasks), heads)

    def initial_params(self) -> Any:
        """Trunk from the pretrained encoder; own units and heads from each task's independent fine-tuned model
        (``independent_runs``), or pretrained copies and fresh heads when it is None."""
        return self.model.from_encoders(self.pretrained.params, *self._task_models())

    def teachers(self) -> Any:
        """The independently fine-tuned models (``teacher_run``, default the reference run), whole (their own
        embeddings), as distillation teachers."""
        if self._teachers is None:
            self._teachers = self.model.separate_params(*self._task_models(self.cfg.teacher_run))
        return self._teachers

    def teacher_outputs(self) -> list[np.ndarray]:
        """Every task's teacher outputs [N_t, max_labels] on its training rows (``data.train[t]``): its independent
        model of the reference folder (``independent_runs``' first) or of ``teacher_run``, dropout off. Computed once
        per work folder and teacher folder and kept in teachers/<task>.npy (teachers/<teacher_run as a name>/<task>.npy;
        the work folder's settings pin the independent runs and the rows), so that distillation at equal budget costs
        no teacher forward pass per step."""
        if self._teacher_outputs is not None:
            return self._teacher_outputs
        folder = self.run.teachers(self.cfg.teacher_run)
        with self.run.phase_folder(folder, "teacher folder"):
            self._teacher_outputs = self._teacher_outputs_in(folder)
        return self._teacher_outputs

    def _teacher_outputs_in(self, folder: Path) -> list[np.ndarray]:
        outputs, forward = [], None
        for t, task in enumerate(self.tasks):
            path = folder / f"{task.name}.npy"
            shape = (len(self.data.train[t]), self.model.max_labels)
            if path.is_file():
                cached = np.load(path)
                if cached.shape == shape:
                    outputs.append(cached)
                    continue
            if forward is None:
                forward = jax.jit(self.model.separate_task_forward)
                teachers = self._replicate(self.teachers())
                if self.progress:
                    print(f"teacher outputs on the training rows ({sum(len(x) for x in self.data.train)} rows, once "
                          f"per work folder)", file=sys.stderr, flush=True)
            out = np.zeros(shape, np.float32)
            for idx, batch in self.data.eval_batches(t, self.eval_batch, "train"):
                batch = self._shard({k: v for k, v in batch.items() if k != "labels"})
                out[idx] = to_host(forward(teachers, jnp.int32(t), batch))[: len(idx)]
            buffer = io.BytesIO()
            np.save(buffer, out)
            write_bytes_atomic(path, buffer.getvalue())
            outputs.append(out)
        return outputs

    # ----- the resumable loop (train/loop.py) ------------------------------------------------------------------
    def _loop(self, directory: Path, state, total: int, batches: int | Callable[[int], dict], step: Callable,
              desc: str, observe: Callable[[int, Any], dict], record: Callable[[Any], dict] = lambda state: {},
              place: Callable[[Any], Any] = lambda s: s):
        """Run ``step(state, batch, k)`` for k up to ``total`` in ``directory`` (``run_loop``: resumes from its
        checkpoint); batch k is mixed batch k of data stream ``batches`` (an int), or ``batches(k)``. ``observe(k,
        outputs)`` turns step k's outputs, fetched every 10 steps, into its logged values, the latest of which (with
        ``record(state)``) make a metrics.jsonl line every 10 steps. Raises Interrupted at ``interrupt_at``."""
        batch_fn = batches if callable(batches) else (
            lambda k: shard_batch(self.data.mixed_batch(k, batches), self.mesh, axis=1))
        latest: dict[str, Any] = {}

        def keep(k, outputs):
            latest.clear()
            latest.update(observe(k, outputs))
            return latest

        hooks = LoopHooks(
            batch=batch_fn, step=step, observe=keep, place=place,
            status=lambda done, state: {k.replace("loss_", ""): f"{v:.3f}" for k, v in (latest | record(state)).items()
                                        if k != "loss" and isinstance(v, float)},  # E ratio, mean b, task losses
            record=lambda done, state, wall_clock_s: dict(latest) | record(state))
        settings = LoopSettings(directory, total, desc, self.cfg.checkpoint_every_steps, progress=self.progress,
                                stop_at_step=self.interrupt_at)
        state, wall, stopped = run_loop(settings, state, hooks)
        if stopped:
            raise Interrupted(f"{desc}: stopped at step {self.interrupt_at} of {total}")
        return state, wall

    # ----- relaxed phases --------------------------------------------------------------------------------------
    def _relaxed(self, directory: Path, params, logits, steps: int, lam: float, *, train_logits: bool, desc: str):
        cfg = self.cfg
        tx_w = adamw_warmup_linear(cfg.lr_weights, max(steps, 1), warmup_ratio=cfg.warmup_ratio,
                                   weight_decay=cfg.weight_decay)
        tx_l = optax.adam(cfg.lr_logits)
        params = jax.tree.map(jnp.copy, params)  # the step donates its state; the caller keeps its arrays
        state = RelaxedState(jnp.asarray(0, jnp.int32), params, tx_w.init(params), logits, tx_l.init(logits))
        fn = make_relaxed_step(self.model, self.tasks, tx_w, tx_l, self.energy, jax.random.PRNGKey(cfg.seed + 3),
                               sampling=cfg.sampling if train_logits else cfg.warmup_sampling,
                               task_weights=cfg.search_task_weights if train_logits else None)

        def step(state, batch, k):
            frac = k / max(steps - 1, 1)
            tau = cfg.temperature_start * (cfg.temperature_end / cfg.temperature_start) ** frac if train_logits \
                else 1.0
            return fn(state, batch, jnp.float32(lam), jnp.float32(tau), jnp.float32(1.0 if train_logits else 0.0))

        def observe(k, outputs):
            losses, ratio, total = outputs
            return {"loss": float(total), "energy_ratio": float(ratio)} | {
                f"loss_{t.name}": float(l) for t, l in zip(self.tasks, losses)}

        mean_b = lambda state: {"mean_b": float(np.mean(expected_branch_points(state.logits)))}
        return self._loop(directory, state, steps, SEARCH if train_logits else WARMUP, step, desc, observe, mean_b,
                          place=self._replicate)

    def warmup(self) -> Any:
        """Train the relaxed model's weights with the branch logits frozen (uniform): lambda-independent."""
        directory = self.run.warmup
        done = directory / "params.msgpack"
        params = self.initial_params()
        if done.exists() and self.run.finished(directory):  # weights without result.json: a partial phase
            return restore_checkpoint(done, params)
        logits = jnp.zeros((len(self.tasks), self.num_units + 1))
        with self.run.phase_folder(directory, "warm-up folder"):
            state, wall = self._relaxed(directory, params, logits, self.cfg.warmup_steps, 0.0, train_logits=False,
                                        desc="warm-up (logits frozen)")
            save_checkpoint(done, state.params)
            write_json_atomic(directory / "result.json", {"steps": self.cfg.warmup_steps, "wall_clock_s": wall})
            self.run.drop_checkpoint(directory)
        return state.params

    def search(self, lam: float, warm_params) -> dict[str, Any]:
        """Joint search of weights and branch logits for one lambda; b_t = argmax of the logits."""
        directory = self.run.search(lam)
        result = directory / "result.json"
        self.run.check_phase(directory, SEARCH_FIELDS.settings(self.cfg), SEARCH_FIELDS.folder)
        if result.exists():
            return json.loads(result.read_text())
        logits = jnp.zeros((len(self.tasks), self.num_units + 1))
        with self.run.phase_folder(directory, SEARCH_FIELDS.folder):
            state, wall = self._relaxed(directory, warm_params, logits, self.cfg.search_steps, lam, train_logits=True,
                                        desc=f"search lambda={lam:g}")
            logits = np.asarray(state.logits)
            record = {
                "lambda": lam, "logits": logits.tolist(), "branch_points": [int(b) for b in logits.argmax(axis=1)],
                "expected_branch_points": expected_branch_points(logits).tolist(), "steps": self.cfg.search_steps,
                "settings": SEARCH_FIELDS.settings(self.cfg), "wall_clock_s": wall,
            }
            write_json_atomic(result, record)
            self.run.drop_checkpoint(directory)
        return record

    # ----- budget selection ------------------------------------------------------------------------------------
    def loss_profile(self, params, batches: int) -> dict[str, Any]:
        """Every task's train loss at every branch point under ``params`` (dropout off), mean and standard error
        over ``batches`` mixed batches of a stream no phase trains on: {"mean_loss", "stderr"}, each [U + 1][T]."""
        if self._profile_fn is None:
            self._profile_fn = make_loss_profile(self.model, self.tasks)
        rows = np.stack([
            to_host(self._profile_fn(params, shard_batch(self.data.mixed_batch(i, PROFILE), self.mesh, axis=1)))
            for i in range(batches)])  # [batches, U + 1, T]
        return {"mean_loss": rows.mean(0).tolist(), "stderr": (rows.std(0) / np.sqrt(batches)).tolist()}

    def profile_ready(self) -> bool:
        """The cached profile exists and holds what ``profile_metric`` needs."""
        path = self.profile_path()
        if not path.exists():
            return False
        return self.cfg.profile_metric != "score" or "mean_score" in json.loads(path.read_text())

    def profile_path(self) -> Path:
        return self.run.loss_profile(heldout=self.data.has_heldout, batches=self.cfg.profile_batches)

    def warmup_profile(self, warm_params) -> dict[str, Any]:
        """The loss profile of the warm-up's weights (cached in the warm-up folder): over every row of the held-out
        split when the run has one, else over ``profile_batches`` mixed train batches of a stream no phase draws."""
        heldout = self.data.has_heldout
        path = self.profile_path()
        if self.profile_ready():
            return json.loads(path.read_text())
        if warm_params is None:
            raise ConfigError(f"{path} is missing and the warm-up's weights were not loaded")
        start = time.perf_counter()
        if heldout:
            if self.progress:
                print(f"loss profile of the warm-up's weights on the held-out split "
                      f"({sum(len(h) for h in self.data.heldout)} rows)", file=sys.stderr, flush=True)
            if self._task_profile_fn is None:
                self._task_profile_fn = make_task_loss_profile(self.model, self.tasks)
            record = split_loss_profile(self._task_profile_fn, self._replicate(warm_params), self.data, "heldout",
                                        batch_size=self.eval_batch, put=self._shard) | {
                "split": "heldout", "batches": None}
        else:
            if self.progress:
                print(f"loss profile of the warm-up's weights on {self.cfg.profile_batches} batches", file=sys.stderr,
                      flush=True)
            record = self.loss_profile(warm_params, self.cfg.profile_batches) | {
                "split": "train (a stream no phase draws)", "batches": self.cfg.profile_batches}
        record |= {"tasks": [t.name for t in self.tasks], "wall_clock_s": time.perf_counter() - start}
        write_json_atomic(path, record)
        return record

    def task_weights(self) -> list[float]:
        """The search's task weights: the config's list, the held-out calibration (``calibrate``), or every task 1."""
        if self.cfg.search_task_weights == "heldout" and self._task_weights is None:
            path = self.run.task_weights
            if not path.is_file():
                raise ConfigError("search_task_weights: heldout are calibrated in the sweep, after the full-sharing "
                                  "model is fine-tuned (ModelGenerator.calibrate)")
            self._task_weights = json.loads(path.read_text())["weights"]
        return list(self._task_weights or [1.0] * len(self.tasks))

    def calibrate(self, full_sharing: dict[str, Any], warm_params) -> dict[str, Any]:
        """``search_task_weights: heldout``: w_t = held-out points task t loses between the reference independent run
        and full sharing / its held-out loss rise in the warm-up's profile from b = 0 to b = U / T
        (search/select.py); written to the workdir's task_weights_heldout.json."""
        independent = self.independent_record()
        reference = None if independent is None else independent["seeds"][0]
        if reference is None or reference["folder"] != self.cfg.independent_dirs[0] or \
                "heldout_scores" not in reference or "heldout_scores" not in full_sharing:
            raise ConfigError("calibrating task weights on the held-out split needs the reference independent run's "
                              f"({self.cfg.independent_dirs[0] if self.cfg.independent_dirs else None}) and the "
                              "full-sharing model's held-out scores")
        profile, how = self.selection_profile(warm_params)
        result = calibrate_task_weights(reference["heldout_scores"], full_sharing["heldout_scores"],
                                        profile.tolist(), [t.name for t in self.tasks],
                                        self.cfg.task_weight_min_drop)
        record = result | {"split": "heldout", "min_drop": self.cfg.task_weight_min_drop, "profile": how,
                           "independent_run": reference["folder"],
                           "note": "held-out scores of the reference independent run (the first folder: choices never "
                                   "wait for the other seeds) and of the full-sharing model; loss rise from the "
                                   "warm-up's held-out loss profile"}
        write_json_atomic(self.run.task_weights, record)
        self._task_weights = record["weights"]
        return record

    def tree_ratios(self) -> tuple[np.ndarray, np.ndarray]:
        """Every tree (all_branch_points) and its cost-model energy ratio to the independent models."""
        if self._tree_ratios is None:
            trees = all_branch_points(len(self.tasks), self.num_units)
            self._tree_ratios = trees, tree_energy_ratios(trees, self.energy.tables, self.energy.workload,
                                                          self.energy.independent_j)
        return self._tree_ratios

    def select_within_budget(self, budget: float, warm_params) -> dict[str, Any]:
        """The tree of least estimated loss sum_t w_t (loss_t(b_t) - loss_t(0)) (w = ``task_weights``; losses from
        the warm-up's profile) whose cost-model energy ratio is <= budget (search/select.py)."""
        profile = self.warmup_profile(warm_params)
        trees, ratios = self.tree_ratios()
        weights = self.task_weights()
        loss = estimated_loss(self.selection_profile(warm_params)[0], weights, trees)
        return select_within_budget(trees, ratios, loss, budget) | {
            "task_weights": weights, "profile_batches": profile["batches"], "profile_split": profile.get(
                "split", "train (a stream no phase draws)"), "profile_metric": self.cfg.profile_metric,
            "profile_wall_clock_s": profile["wall_clock_s"]}

    def selection_profile(self, warm_params) -> tuple[np.ndarray, dict[str, Any]]:
        """[U + 1, T]: what budget selection and the task-weight calibration rank trees by, each task's cost of
        branch point b, and how it was made. ``profile_metric: loss``: the warm-up's mean loss. ``score``: the
        warm-up's held-out main score, made non-increasing in b (isotonic regression: sharing more units is not
        assumed to help; the profile's rises are noise of 249-1,000 rows), as the drop from b = 0 in points; a task
        whose smoothed score does not drop at all is given a linear ramp in b instead (its calibration then spreads
        its measured full-sharing drop evenly over the units)."""
        profile = self.warmup_profile(warm_params)
        if self.cfg.profile_metric == "loss":
            return np.asarray(profile["mean_loss"], dtype=np.float64), {"metric": "loss"}
        drops, flat = score_drop_profile(np.asarray(profile["mean_score"], dtype=np.float64))
        return drops, {"metric": "score", "smoothing": "isotonic, non-increasing in b",
                       "linear_ramp_tasks": [self.tasks[t].name for t in flat]}

    # ----- discrete models -------------------------------------------------------------------------------------
    def _replicate(self, tree):
        return replicate(tree, self.mesh)

    def _shard(self, batch):
        return shard_batch(batch, self.mesh)

    def model_dir(self, b: Sequence[int], seed: int | None = None) -> Path:
        return self.run.model(b, seed)

    def model_finished(self, b: Sequence[int], seed: int | None = None) -> bool:
        """Has the discrete model with branch points ``b`` (training seed ``seed``) been fine-tuned and evaluated?"""
        return self.run.finished(self.run.model(b, seed))

    def search_finished(self, lam: float) -> bool:
        return self.run.finished(self.run.search(lam))

    def finetune_and_evaluate(self, branch_points: Sequence[int], warm_params, *, seed: int | None = None
                              ) -> dict[str, Any]:
        """Fine-tune the discrete model (from the weights ``finetune_init`` names, for the budget
        ``finetune_budget`` sets, with training seed ``seed``, default the config's); held-out and dev metrics (dev
        only reported); exact-simulator energy, area and latency."""
        b = [int(x) for x in branch_points]
        if len(b) != len(self.tasks) or any(not 0 <= x <= self.num_units for x in b):
            raise ConfigError(f"branch points {b} do not fit {len(self.tasks)} tasks and {self.num_units} units")
        cfg = self.cfg
        seed = cfg.seed if seed is None else int(seed)
        if seed != cfg.seed and cfg.finetune_budget is None:
            raise ConfigError("another training seed needs a fine-tuning budget (finetune_budget)")
        directory = self.run.model(b, seed)
        result = directory / "result.json"
        self.run.check_phase(directory, FINETUNE_FIELDS.settings(cfg), FINETUNE_FIELDS.folder)
        if result.exists():
            return json.loads(result.read_text())
        with self.run.phase_folder(directory, FINETUNE_FIELDS.folder):
            return self._finetune_and_evaluate(directory, b, warm_params, seed)

    def _finetune_and_evaluate(self, directory: Path, b: list[int], warm_params, seed: int) -> dict[str, Any]:
        cfg = self.cfg
        result = directory / "result.json"
        if cfg.finetune_init == "pretrained":
            start = self.pretrained_params(seed)
        elif cfg.finetune_init == "independent":
            # the warm-up's embeddings and trunk; every task's own units and head as it was fine-tuned alone
            if self._initial_own_heads is None:
                initial = self.initial_params()
                self._initial_own_heads = {"own": initial["own"], "heads": initial["heads"]}
            start = dict(warm_params) | self._initial_own_heads
        else:
            start = warm_params
        if cfg.finetune_budget is None:
            params, wall, info = self._finetune_mixed(directory, start, b)
        else:
            params, wall, info = self._finetune_budget(directory, start, b, seed)
        record = self.evaluate(directory, b, params) | info | {
            "seed": seed, "finetune_init": cfg.finetune_init, "finetune_own_lr_scale": cfg.finetune_own_lr_scale,
            "distill_weight": cfg.distill_weight, "distill_temperature": cfg.distill_temperature,
            "distill_anneal": cfg.distill_anneal, "teacher_run": cfg.teacher_run if cfg.distill_weight > 0 else None,
            "finetune_task_weights": None if cfg.finetune_task_weights is None else list(cfg.finetune_task_weights),
            "finetune_wall_clock_s": wall}
        write_json_atomic(result, record)
        self.run.drop_checkpoint(directory)
        return record

    def evaluate(self, directory: Path, b: Sequence[int], params) -> dict[str, Any]:
        """Save a trained discrete model's weights (``params.msgpack``), evaluate it on the held-out split and once on
        dev, write every row's prediction (``predictions.json``: what a paired bootstrap resamples) and return its
        ``describe`` record with ``eval_wall_clock_s``."""
        save_checkpoint(directory / "params.msgpack", params)
        clock = time.perf_counter()
        params = self._replicate(params)
        rows = {}
        heldout = None
        if self.data.has_heldout:
            heldout, rows["heldout"] = evaluate_discrete(self.predict, params, self.data, b, self.eval_batch,
                                                         "heldout", self._shard, with_predictions=True)
        metrics, rows["dev"] = evaluate_discrete(self.predict, params, self.data, b, self.eval_batch, "dev",
                                                 self._shard, with_predictions=True)  # once
        write_predictions(directory / PREDICTIONS, rows)
        return self.describe(b, metrics, heldout) | {"eval_wall_clock_s": time.perf_counter() - clock}

    def _finetune_mixed(self, directory: Path, params, b: list[int]):
        """``finetune_steps`` steps of mixed batches (per_task_batch examples of every task), the recipe before
        equal budgets (kept for the recipe-study configs)."""
        cfg = self.cfg
        tx = adamw_warmup_linear(cfg.lr_finetune, max(cfg.finetune_steps, 1), warmup_ratio=cfg.warmup_ratio,
                                 weight_decay=cfg.weight_decay)
        if cfg.finetune_own_lr_scale != 1.0:  # own units and heads move slower than the trunk
            own_or_head = lambda params: {k: jax.tree.map(lambda _: k in ("own", "heads"), v) for k, v in params.items()}
            tx = optax.chain(tx, optax.masked(optax.scale(cfg.finetune_own_lr_scale), own_or_head))
        params = jax.tree.map(jnp.copy, params)  # the step donates its state; the caller's weights stay
        state = DiscreteState(jnp.asarray(0, jnp.int32), params, tx.init(params))
        if self._discrete_step is None:
            self._discrete_step = make_discrete_step(self.model, self.tasks, tx, jax.random.PRNGKey(cfg.seed + 5),
                                                     distill_weight=cfg.distill_weight,
                                                     distill_temperature=cfg.distill_temperature,
                                                     task_weights=cfg.finetune_task_weights)
        fn = self._discrete_step
        b_arr = jnp.asarray(b, jnp.int32)
        teachers = self.teachers() if cfg.distill_weight > 0 else None

        def observe(k, losses):
            return {"loss": float(losses.sum())} | {f"loss_{t.name}": float(l) for t, l in zip(self.tasks, losses)}

        state, wall = self._loop(directory, state, cfg.finetune_steps, FINETUNE,
                                 lambda s, batch, k: fn(s, batch, b_arr, teachers), f"fine-tune b={b}", observe,
                                 place=self._replicate)
        examples = cfg.finetune_steps * cfg.per_task_batch
        return state.params, wall, {
            "finetune_steps": cfg.finetune_steps, "finetune_budget": f"{cfg.finetune_steps} mixed steps of "
            f"{cfg.per_task_batch} examples per task", "examples_seen": {t.name: examples for t in self.tasks}}

    def _finetune_budget(self, directory: Path, params, b: list[int], seed: int):
        """Every task's budget, one task's batch per step, interleaved in proportion (search/budget.py), data
        parallel over every local device."""
        cfg = self.cfg
        if cfg.finetune_task_weights is not None:
            raise ConfigError("finetune_task_weights act on mixed batches: they need finetune_budget: null")
        distill = cfg.distill_weight > 0
        teacher = self.teacher_outputs() if distill else None
        streams = self.budget_streams(seed)
        steps = [s.steps for s in streams]
        schedule = interleave(steps)
        total = len(schedule)
        lr = warmup_linear_schedule(cfg.lr_finetune, total, warmup_ratio=cfg.warmup_ratio)
        mesh = self.mesh
        for stream in streams:
            check_batch(stream.batch_size, mesh, "the fine-tuning batch size")
        tx, fn = self.budget_step()
        dropout_key = self._replicate(jax.random.PRNGKey(seed + 5))
        state = init_budget_state(params, tx)
        b_arr = np.asarray(b, np.int32)
        recent: dict[int, list[float]] = {t: [] for t in range(len(self.tasks))}

        batch_fn = self.budget_batches(streams, schedule, teacher)

        def step(state, batch, k):
            t = int(schedule[k])
            args = (jnp.float32(teacher_weight(k, total, cfg.distill_weight, cfg.distill_anneal)),) if distill else ()
            state, loss = fn(state, batch, jnp.int32(t), jnp.int32(b_arr[t]), jnp.float32(lr(k)), dropout_key, *args)
            return state, (t, loss)

        def observe(k, outputs):
            t, loss = outputs
            recent[t] = (recent[t] + [float(loss)])[-20:]
            record = {"loss": float(loss), "task": self.tasks[t].name}
            record.update({f"loss_{x.name}": float(np.mean(recent[i])) for i, x in enumerate(self.tasks) if recent[i]})
            return record

        state, wall = self._loop(directory, state, total, batch_fn, step, f"fine-tune b={b} (equal budget)", observe,
                                 place=lambda s: replicate(s, mesh))
        tokens = [s.tokens() for s in streams]
        real, padded = sum(r for r, _ in tokens), sum(p for _, p in tokens)
        budget = cfg.finetune_budget if isinstance(cfg.finetune_budget, str) else "per-task examples/epochs"
        return state.params, wall, {
            "finetune_steps": total, "finetune_budget": budget,
            "examples_seen": {t.name: s.examples() for t, s in zip(self.tasks, streams)},
            "steps_per_task": {t.name: s.steps for t, s in zip(self.tasks, streams)},
            "batch_size_per_task": {t.name: s.batch_size for t, s in zip(self.tasks, streams)},
            "lr_finetune": cfg.lr_finetune, "padding_fraction": 1 - real / padded, "real_tokens": real,
            "real_tokens_per_s": real / wall if wall > 0 else None, "devices": len(jax.devices()),
        }

    def budget_step(self):
        """(tx, step): the equal-budget optimizer and its jitted step (``make_budget_step``; distillation when
        ``distill_weight`` > 0), built once: one compiled step (per padded length) serves every tree and seed."""
        cfg = self.cfg
        tx = budget_optimizer(cfg.weight_decay)
        if self._budget_step is None:
            self._budget_step = make_budget_step(
                self.model, self.tasks, tx, own_lr_scale=cfg.finetune_own_lr_scale,
                distill_temperature=cfg.distill_temperature if cfg.distill_weight > 0 else None)
        return tx, self._budget_step

    def budget_batches(self, streams: Sequence[BatchStream], schedule: np.ndarray,
                       teacher: Sequence[np.ndarray] | None = None) -> Callable[[int], dict]:
        """k -> global step k's batch of an equal-budget run (task ``schedule[k]``'s next batch of its stream), on the
        devices; with ``teacher`` (every task's teacher outputs on its training rows) also the rows' teacher outputs."""
        index = task_steps(schedule, len(self.tasks))

        def batch_fn(k):
            t = int(schedule[k])
            idx, length = streams[t].batch(int(index[k]))
            batch = collate(self.data.train[t], idx, length, streams[t].batch_size)
            batch["labels"] = batch["labels"].astype(np.float32)
            if teacher is not None:  # the teacher's outputs on these rows (padding rows: zeros, weight 0)
                batch["teacher"] = np.zeros((streams[t].batch_size, self.model.max_labels), np.float32)
                batch["teacher"][: len(idx)] = teacher[t][idx]
            return shard_batch(batch, self.mesh)

        return batch_fn

    def describe(self, b: Sequence[int], metrics: dict[str, dict[str, float]],
                 heldout: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
        """Dev metrics and scores (reported), held-out metrics and scores (what the sweep chooses on), and the exact
        simulator's energy/area/latency of a discrete model."""
        tree = hw.SharingTree.from_branch_points(list(b), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        scores = {t.name: main_score(t, metrics[t.name]) for t in self.tasks}
        energy = sim.total_energy_j / sim.num_requests
        independent = self.independent_energy_j()
        record = {
            "branch_points": list(b), "metrics": metrics, "scores": scores,
            "mean_score": float(np.mean(list(scores.values()))), "energy_per_request_j": energy,
            "energy_ratio": energy / independent, "efficiency": independent / energy,
            "crossbars": sim.footprint.crossbars, "area_mm2": sim.footprint.area_mm2,
            "latency_per_request_s": float(sim.latency_per_request_s.mean()),
        }
        if heldout is not None:
            held = {t.name: main_score(t, heldout[t.name]) for t in self.tasks}
            record |= {"heldout_metrics": heldout, "heldout_scores": held,
                       "heldout_mean_score": float(np.mean(list(held.values())))}
        return record

    def independent_energy_j(self) -> float:
        tree = hw.SharingTree.from_branch_points([0] * len(self.tasks), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        return sim.total_energy_j / sim.num_requests

    def independent_record(self) -> dict[str, Any] | None:
        """The separately fine-tuned models of ``independent_runs`` (every seed folder that is complete), with their
        energy: scores are means over the seeds, ``seeds`` holds each seed's record."""
        runs = []
        for folder in self.cfg.independent_dirs:
            metrics, heldout, wall, seeds, budget = {}, {}, 0.0, set(), {}
            for task in self.tasks:
                path = Path(folder) / task.name / "summary.json"
                if not path.is_file():
                    break
                summary = json.loads(path.read_text())
                metrics[task.name] = summary["metrics"]
                if summary.get("heldout_metrics") is not None:
                    heldout[task.name] = summary["heldout_metrics"]
                wall += summary["wall_clock_s"]
                seeds.add(summary.get("seed"))
                budget[task.name] = summary.get("train_examples_seen")
            else:
                record = self.describe([0] * len(self.tasks), metrics,
                                       heldout if len(heldout) == len(self.tasks) else None)
                runs.append(record | {"folder": folder, "seed": seeds.pop() if len(seeds) == 1 else sorted(seeds),
                                      "training_wall_clock_s": wall, "examples_seen": budget})
        if not runs:
            return None
        mean = lambda key: {t.name: float(np.mean([r[key][t.name] for r in runs])) for t in self.tasks}
        record = dict(runs[0]) | {"scores": mean("scores"), "seeds": runs, "num_seeds": len(runs),
                                  "training_wall_clock_s": float(np.mean([r["training_wall_clock_s"] for r in runs]))}
        record["mean_score"] = float(np.mean(list(record["scores"].values())))
        record.pop("metrics", None)
        record["metrics_by_seed"] = [r["metrics"] for r in runs]
        if all("heldout_scores" in r for r in runs):
            record["heldout_scores"] = mean("heldout_scores")
            record["heldout_mean_score"] = float(np.mean(list(record["heldout_scores"].values())))
        return record
