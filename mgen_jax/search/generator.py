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

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mgen_jax import hw
from mgen_jax.data.glue import get_task
from mgen_jax.data.metrics import main_score
from mgen_jax.errors import ConfigError
from mgen_jax.io import append_jsonl, write_json_atomic
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search.config import SearchConfig
from mgen_jax.search.data import MultiTaskData
from mgen_jax.search.steps import (
    DiscreteState, RelaxedState, energy_model, evaluate_discrete, expected_branch_points, make_discrete_step,
    make_loss_profile, make_relaxed_step, make_task_predict,
)
from mgen_jax.search.select import all_branch_points, estimated_loss, select_within_budget, tree_energy_ratios
from mgen_jax.sim import simulate
from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint
from mgen_jax.train.finetune import TrainingError
from mgen_jax.train.optim import adamw_warmup_linear
from mgen_jax.workload.glue import glue_trace

WARMUP, SEARCH, FINETUNE = 0, 1, 2  # data streams
PROFILE = 7  # mixed train batches no phase trains on: the loss profile of budget selection


def _fmt(x: float) -> str:
    return f"{x:g}".replace(".", "p")


def _drop_checkpoint(directory: Path) -> None:
    """Delete a finished phase's resume checkpoint (its result is written; only a rerun of the phase needs it)."""
    (directory / "checkpoint.msgpack").unlink(missing_ok=True)


class Interrupted(Exception):
    """Raised by a phase stopped at ``interrupt_at`` (after its checkpoint), as a killed run would stop."""


class ModelGenerator:
    def __init__(self, cfg: SearchConfig, workdir: str | Path, *, glue_dir=None, progress: bool = True,
                 interrupt_at: int | None = None):
        self.interrupt_at = interrupt_at
        self.cfg = cfg
        self.workdir = Path(workdir)
        self.glue_dir = glue_dir
        self.progress = progress
        self.tasks = [get_task(t) for t in cfg.tasks]
        self.pretrained = load_pretrained(cfg.model)
        self.bert = self.pretrained.config
        self.num_units = self.bert.num_units
        self.model = MultiTaskModel(self.bert, [t.num_labels for t in self.tasks], cfg.pooling)
        self.data = MultiTaskData(
            [t.name for t in self.tasks], self.pretrained.tokenizer, max_length=cfg.max_length, buckets=cfg.buckets,
            per_task_batch=cfg.per_task_batch, length_window=cfg.length_window, seed=cfg.seed, glue_dir=glue_dir,
            max_dev_per_task=cfg.max_dev_per_task,
        )
        self.spec = hw.load_spec(cfg.hw)
        # The workload: every request runs every task, token lengths of the tasks' dev sets (DESIGN.md default).
        self.trace = glue_trace([t.name for t in self.tasks], glue_dir=glue_dir, max_length=cfg.max_length)
        self.energy = energy_model(self.bert, self.spec, [t.num_labels for t in self.tasks], self.trace, cfg.model)
        self.predict = make_task_predict(self.model)
        self._discrete_step = None
        self._initial_own_heads = None
        self._teachers = None
        self._profile_fn = None
        self._tree_ratios = None
        self._check_workdir()

    # Fields that do not change what a phase computes: a workdir may be reused when only these differ.
    FREE_FIELDS = ("name", "lambdas", "uniform_branch_points", "heuristic_thresholds", "redundancy_file",
                   "checkpoint_every_steps", "energy_budgets", "budgets_at_baselines", "profile_batches")
    # Fields that only the searches use (the warm-up runs with frozen uniform logits at temperature 1 and its own
    # warmup_sampling): they are checked per search folder, so that the warm-up and the fine-tuned discrete models
    # (baselines included) are kept when only the search settings change.
    SEARCH_FIELDS = ("search_steps", "lr_logits", "temperature_start", "temperature_end", "sampling",
                     "search_task_weights")
    # Fields that only the discrete models use: checked per model folder.
    FINETUNE_FIELDS = ("finetune_steps", "lr_finetune", "finetune_init", "finetune_own_lr_scale", "distill_weight",
                       "distill_temperature", "finetune_task_weights")

    def _defaults(self) -> dict[str, Any]:
        defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig) if f.default is not dataclasses.MISSING}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}

    def _check_settings(self, path: Path, settings: dict[str, Any], what: str) -> None:
        """Write ``settings`` to ``path``, or refuse if the file holds other values (cached phases would be silently
        reused). A field added to SearchConfig after the run started counts as its default value."""
        if path.exists():
            saved = json.loads(path.read_text())
            defaults = self._defaults()
            changed = sorted(k for k in set(saved) | set(settings)
                             if saved.get(k, defaults.get(k)) != settings.get(k, defaults.get(k)))
            if changed:
                raise ConfigError(f"{what} {path.parent} holds a run with other settings ({changed}); "
                                  "use another --workdir, move that folder away, or restore those values")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, settings)

    def _check_workdir(self) -> None:
        phase_fields = self.FREE_FIELDS + self.SEARCH_FIELDS + self.FINETUNE_FIELDS
        settings = {k: v for k, v in self.cfg.to_dict().items() if k not in phase_fields}
        self._check_settings(self.workdir / "settings.json", settings, "workdir")

    def search_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.cfg.to_dict().items() if k in self.SEARCH_FIELDS}

    def finetune_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.cfg.to_dict().items() if k in self.FINETUNE_FIELDS}

    def _check_phase_folder(self, directory: Path, settings: dict[str, Any], what: str) -> None:
        path = directory / "settings.json"
        if directory.is_dir() and any(directory.iterdir()) and not path.exists():
            raise ConfigError(f"{what} {directory} has no settings.json (it predates recorded {what} settings): "
                              "move it away to run it again")
        self._check_settings(path, settings, what)

    # ----- initial parameters ----------------------------------------------------------------------------------
    def _task_models(self) -> tuple[list[Any], list[Any]]:
        """Every task's encoder and head: from its independent fine-tuned model (``independent_runs``), or pretrained
        copies and fresh heads when it is None."""
        encoders, heads = [], []
        for i, task in enumerate(self.tasks):
            if self.cfg.independent_runs is None:
                encoders.append(self.pretrained.params)
                heads.append(self.model.init_head(jax.random.PRNGKey(self.cfg.seed * 1000 + i)))
                continue
            path = Path(self.cfg.independent_runs) / task.name / "final_params.msgpack"
            if not path.is_file():
                raise ConfigError(f"{path} not found: fine-tune the independent {task.name} model first "
                                  f"(mgen finetune), or set independent_runs: null")
            tuned = restore_checkpoint(path, None)
            encoders.append(tuned["encoder"])
            heads.append(tuned["head"])
        return encoders, heads

    def initial_params(self) -> Any:
        """Trunk from the pretrained encoder; own units and heads from each task's independent fine-tuned model
        (``independent_runs``), or pretrained copies and fresh heads when it is None."""
        return self.model.from_encoders(self.pretrained.params, *self._task_models())

    def teachers(self) -> Any:
        """The independently fine-tuned models, whole (their own embeddings), as distillation teachers."""
        if self._teachers is None:
            self._teachers = self.model.separate_params(*self._task_models())
        return self._teachers

    # ----- a resumable loop ------------------------------------------------------------------------------------
    def _loop(self, directory: Path, state, total: int, stream: int, step: Callable, desc: str,
              log: Callable[[Any, Any], dict]):
        directory.mkdir(parents=True, exist_ok=True)
        checkpoint = directory / "checkpoint.msgpack"
        if checkpoint.exists():
            state = restore_checkpoint(checkpoint, state)
        clock = directory / "wall_clock.json"
        wall = json.loads(clock.read_text())["seconds"] if clock.exists() else 0.0
        start = time.perf_counter()
        bar = tqdm(total=total, initial=int(state.step), desc=desc, unit="step", disable=not self.progress)
        while int(state.step) < total:
            k = int(state.step)
            batch = {key: jnp.asarray(v) for key, v in self.data.mixed_batch(k, stream).items()}
            state, aux = step(state, batch, k)
            record = log(state, aux)
            if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
                raise TrainingError(f"{desc}: non-finite loss at step {k + 1} ({record}); last checkpoint {checkpoint}")
            bar.update(1)
            bar.set_postfix({k2.replace("loss_", ""): f"{v:.3f}" for k2, v in record.items()
                             if k2 != "loss" and isinstance(v, float)})  # E ratio, mean b, per-task losses
            if (k + 1) % 10 == 0 or k + 1 == total:
                append_jsonl(directory / "metrics.jsonl", {"step": k + 1, **record})
            if (k + 1) % self.cfg.checkpoint_every_steps == 0 or k + 1 == total or k + 1 == self.interrupt_at:
                save_checkpoint(checkpoint, state)
                write_json_atomic(clock, {"seconds": wall + time.perf_counter() - start})
            if k + 1 == self.interrupt_at and k + 1 < total:
                bar.close()
                raise Interrupted(f"{desc}: stopped at step {k + 1} of {total}")
        bar.close()
        return state, wall + time.perf_counter() - start

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

        def log(state, aux):
            losses, ratio, total = aux
            rec = {"loss": float(total), "energy_ratio": float(ratio),
                   "mean_b": float(np.mean(expected_branch_points(state.logits)))}
            rec.update({f"loss_{t.name}": float(l) for t, l in zip(self.tasks, np.asarray(losses))})
            return rec

        return self._loop(directory, state, steps, SEARCH if train_logits else WARMUP, step, desc, log)

    def warmup(self) -> Any:
        """Train the relaxed model's weights with the branch logits frozen (uniform): lambda-independent."""
        directory = self.workdir / "warmup"
        done = directory / "params.msgpack"
        params = self.initial_params()
        if done.exists():
            return restore_checkpoint(done, params)
        logits = jnp.zeros((len(self.tasks), self.num_units + 1))
        state, wall = self._relaxed(directory, params, logits, self.cfg.warmup_steps, 0.0, train_logits=False,
                                    desc="warm-up (logits frozen)")
        save_checkpoint(done, state.params)
        write_json_atomic(directory / "result.json", {"steps": self.cfg.warmup_steps, "wall_clock_s": wall})
        _drop_checkpoint(directory)
        return state.params

    def search(self, lam: float, warm_params) -> dict[str, Any]:
        """Joint search of weights and branch logits for one lambda; b_t = argmax of the logits."""
        directory = self.workdir / f"search_lambda_{_fmt(lam)}"
        result = directory / "result.json"
        self._check_phase_folder(directory, self.search_settings(), "search folder")
        if result.exists():
            return json.loads(result.read_text())
        logits = jnp.zeros((len(self.tasks), self.num_units + 1))
        state, wall = self._relaxed(directory, warm_params, logits, self.cfg.search_steps, lam, train_logits=True,
                                    desc=f"search lambda={lam:g}")
        logits = np.asarray(state.logits)
        record = {
            "lambda": lam, "logits": logits.tolist(), "branch_points": [int(b) for b in logits.argmax(axis=1)],
            "expected_branch_points": expected_branch_points(logits).tolist(), "steps": self.cfg.search_steps,
            "settings": self.search_settings(), "wall_clock_s": wall,
        }
        write_json_atomic(result, record)
        _drop_checkpoint(directory)
        return record

    # ----- budget selection ------------------------------------------------------------------------------------
    def loss_profile(self, params, batches: int) -> dict[str, Any]:
        """Every task's train loss at every branch point under ``params`` (dropout off), mean and standard error
        over ``batches`` mixed batches of a stream no phase trains on: {"mean_loss", "stderr"}, each [U + 1][T]."""
        if self._profile_fn is None:
            self._profile_fn = make_loss_profile(self.model, self.tasks)
        rows = np.stack([
            np.asarray(self._profile_fn(params, {k: jnp.asarray(v) for k, v in self.data.mixed_batch(i, PROFILE).items()}))
            for i in range(batches)])  # [batches, U + 1, T]
        return {"mean_loss": rows.mean(0).tolist(), "stderr": (rows.std(0) / np.sqrt(batches)).tolist()}

    def warmup_profile(self, warm_params) -> dict[str, Any]:
        """The loss profile of the warm-up's weights on ``profile_batches`` batches (cached in the warm-up folder)."""
        path = self.workdir / "warmup" / f"loss_profile_{self.cfg.profile_batches}.json"
        if path.exists():
            return json.loads(path.read_text())
        start = time.perf_counter()
        if self.progress:
            print(f"loss profile of the warm-up's weights on {self.cfg.profile_batches} batches", flush=True)
        record = self.loss_profile(warm_params, self.cfg.profile_batches) | {
            "batches": self.cfg.profile_batches, "tasks": [t.name for t in self.tasks],
            "wall_clock_s": time.perf_counter() - start}
        write_json_atomic(path, record)
        return record

    def select_within_budget(self, budget: float, warm_params) -> dict[str, Any]:
        """The tree of least estimated loss sum_t w_t (loss_t(b_t) - loss_t(0)) (w = search_task_weights, else 1;
        losses from the warm-up's profile) whose cost-model energy ratio is <= budget (search/select.py)."""
        profile = self.warmup_profile(warm_params)
        if self._tree_ratios is None:
            trees = all_branch_points(len(self.tasks), self.num_units)
            self._tree_ratios = trees, tree_energy_ratios(trees, self.energy.tables, self.energy.workload,
                                                          self.energy.independent_j)
        trees, ratios = self._tree_ratios
        weights = list(self.cfg.search_task_weights or [1.0] * len(self.tasks))
        loss = estimated_loss(np.asarray(profile["mean_loss"]), weights, trees)
        return select_within_budget(trees, ratios, loss, budget) | {
            "task_weights": weights, "profile_batches": profile["batches"],
            "profile_wall_clock_s": profile["wall_clock_s"]}

    # ----- discrete models -------------------------------------------------------------------------------------
    def finetune_and_evaluate(self, branch_points: Sequence[int], warm_params) -> dict[str, Any]:
        """Fine-tune the discrete model (from the weights ``finetune_init`` names); dev metrics; exact-simulator
        energy, area and latency."""
        b = [int(x) for x in branch_points]
        if len(b) != len(self.tasks) or any(not 0 <= x <= self.num_units for x in b):
            raise ConfigError(f"branch points {b} do not fit {len(self.tasks)} tasks and {self.num_units} units")
        directory = self.workdir / "models" / ("b_" + "-".join(map(str, b)))
        result = directory / "result.json"
        self._check_phase_folder(directory, self.finetune_settings(), "model folder")
        if result.exists():
            return json.loads(result.read_text())
        cfg = self.cfg
        if cfg.finetune_init == "independent":
            # the warm-up's embeddings and trunk; every task's own units and head as it was fine-tuned alone
            if self._initial_own_heads is None:
                initial = self.initial_params()
                self._initial_own_heads = {"own": initial["own"], "heads": initial["heads"]}
            warm_params = dict(warm_params) | self._initial_own_heads
        tx = adamw_warmup_linear(cfg.lr_finetune, max(cfg.finetune_steps, 1), warmup_ratio=cfg.warmup_ratio,
                                 weight_decay=cfg.weight_decay)
        if cfg.finetune_own_lr_scale != 1.0:  # own units and heads move slower than the trunk
            own_or_head = lambda params: {k: jax.tree.map(lambda _: k in ("own", "heads"), v) for k, v in params.items()}
            tx = optax.chain(tx, optax.masked(optax.scale(cfg.finetune_own_lr_scale), own_or_head))
        params = jax.tree.map(jnp.copy, warm_params)  # the step donates its state; the caller's weights stay
        state = DiscreteState(jnp.asarray(0, jnp.int32), params, tx.init(params))
        if self._discrete_step is None:
            self._discrete_step = make_discrete_step(self.model, self.tasks, tx, jax.random.PRNGKey(cfg.seed + 5),
                                                     distill_weight=cfg.distill_weight,
                                                     distill_temperature=cfg.distill_temperature,
                                                     task_weights=cfg.finetune_task_weights)
        fn = self._discrete_step
        b_arr = jnp.asarray(b, jnp.int32)
        teachers = self.teachers() if cfg.distill_weight > 0 else None

        def log(state, losses):
            losses = np.asarray(losses)
            return {"loss": float(losses.sum())} | {f"loss_{t.name}": float(l) for t, l in zip(self.tasks, losses)}

        state, wall = self._loop(directory, state, cfg.finetune_steps, FINETUNE,
                                 lambda s, batch, k: fn(s, batch, b_arr, teachers), f"fine-tune b={b}", log)
        save_checkpoint(directory / "params.msgpack", state.params)
        start = time.perf_counter()
        metrics = evaluate_discrete(self.predict, state.params, self.data, b)
        record = self.describe(b, metrics) | {"finetune_steps": cfg.finetune_steps, "finetune_init": cfg.finetune_init,
                                               "finetune_own_lr_scale": cfg.finetune_own_lr_scale,
                                               "distill_weight": cfg.distill_weight,
                                               "distill_temperature": cfg.distill_temperature,
                                               "finetune_task_weights": (None if cfg.finetune_task_weights is None
                                                                         else list(cfg.finetune_task_weights)),
                                               "finetune_wall_clock_s": wall,
                                               "eval_wall_clock_s": time.perf_counter() - start}
        write_json_atomic(result, record)
        _drop_checkpoint(directory)
        return record

    def describe(self, b: Sequence[int], metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Metrics, scores and the exact simulator's energy/area/latency of a discrete model."""
        tree = hw.SharingTree.from_branch_points(list(b), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        scores = {t.name: main_score(t, metrics[t.name]) for t in self.tasks}
        energy = sim.total_energy_j / sim.num_requests
        independent = self.independent_energy_j()
        return {
            "branch_points": list(b), "metrics": metrics, "scores": scores,
            "mean_score": float(np.mean(list(scores.values()))), "energy_per_request_j": energy,
            "energy_ratio": energy / independent, "efficiency": independent / energy,
            "crossbars": sim.footprint.crossbars, "area_mm2": sim.footprint.area_mm2,
            "latency_per_request_s": float(sim.latency_per_request_s.mean()),
        }

    def independent_energy_j(self) -> float:
        tree = hw.SharingTree.from_branch_points([0] * len(self.tasks), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        return sim.total_energy_j / sim.num_requests

    def independent_record(self) -> dict[str, Any] | None:
        """The separately fine-tuned models of ``independent_runs`` (the issue's baseline), with their energy."""
        if self.cfg.independent_runs is None:
            return None
        metrics, wall = {}, 0.0
        for task in self.tasks:
            path = Path(self.cfg.independent_runs) / task.name / "summary.json"
            if not path.is_file():
                return None
            summary = json.loads(path.read_text())
            metrics[task.name] = summary["metrics"]
            wall += summary["wall_clock_s"]
        return self.describe([0] * len(self.tasks), metrics) | {"training_wall_clock_s": wall}
