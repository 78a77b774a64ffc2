"""The model generator: what every phase of a search run shares (the config, the run folder, the model, the data,
the energy model, the device mesh, the resumable loop) and the phases' entry points.

Each phase is a function of (this generator, its inputs) in a module of its own, keeping its files in its own
folder of the run (search/rundir.py: the layout and the settings checks):

- relaxed.py: the warm-up and the lambda searches;
- selection.py: the warm-up's loss profile, the task-weight calibration and the budget picks;
- finetune.py: fine-tuning and evaluating one discrete model (every baseline alike);
- teachers.py: the distillation teachers and their outputs on the training rows;
- gradient.py: the gradient search in one run inside the training budget;
- independent.py: the independent models (the reference run's rows and budgets, and their record).

Every phase resumes from its checkpoint; a phase whose result file exists is not run again, and its checkpoint
(weights and optimizer state, about 3x the weights) is then deleted. The sweep (sweep.py) orchestrates the phases.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from mgen_jax import hw
from mgen_jax.data.glue import get_task
from mgen_jax.data.metrics import main_score
from mgen_jax.errors import ConfigError
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.search import finetune, independent, relaxed, selection, teachers
from mgen_jax.search.baselines import SWEEP_FIELDS
from mgen_jax.search.config import SearchConfig
from mgen_jax.search.data import MultiTaskData
from mgen_jax.search.gradient import GRADIENT_FIELDS
from mgen_jax.search.rundir import PhaseFields, RunDir
from mgen_jax.search.steps import energy_model, make_task_predict
from mgen_jax.sim import simulate
from mgen_jax.train.checkpoint import restore_checkpoint
from mgen_jax.train.loop import LoopHooks, LoopSettings, run_loop
from mgen_jax.train.parallel import check_batch, data_mesh, is_main_process, replicate, shard_batch
from mgen_jax.workload.glue import glue_trace

# The resumable loop: how often a checkpoint is written changes no result.
LOOP_FIELDS = PhaseFields(("checkpoint_every_steps",))
# Every declaration of fields that only one phase reads; every other config field is a run setting (rundir.py).
PHASES = (relaxed.SEARCH_FIELDS, finetune.FINETUNE_FIELDS, selection.SELECTION_FIELDS, SWEEP_FIELDS,
          GRADIENT_FIELDS, LOOP_FIELDS)


class Interrupted(Exception):
    """Raised by a phase stopped at ``interrupt_at`` (after its checkpoint), as a killed run would stop."""


class ModelGenerator:
    """One search run: ``cfg`` in the run folder ``workdir`` (its settings checked, rundir.RunDir.check_run), the
    model, its data (``data``, the held-out split included), the workload and energy model, the device mesh.
    ``interrupt_at``: stop every phase at that step (tests of resumption)."""

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
        self.bert = dataclasses.replace(self.pretrained.config, compute_dtype=cfg.compute_dtype)
        self.num_units = self.bert.num_units
        self.model = MultiTaskModel(self.bert, [t.num_labels for t in self.tasks], cfg.pooling)
        self.reference_runs = independent.reference_runs(cfg, self.tasks)
        self.data = MultiTaskData(
            [t.name for t in self.tasks], self.pretrained.tokenizer, max_length=cfg.max_length, buckets=cfg.buckets,
            per_task_batch=cfg.per_task_batch, length_window=cfg.length_window, seed=cfg.seed, glue_dir=glue_dir,
            max_dev_per_task=cfg.max_dev_per_task, heldout=cfg.heldout,
            max_train=independent.train_caps(cfg, self.tasks, self.reference_runs), data_seed=cfg.data_seed,
        )
        independent.check_reference_rows(self.tasks, self.data.train, self.reference_runs)
        self._check_depths()
        self.spec = hw.load_spec(cfg.hw)
        # The workload: every request runs every task, token lengths of the tasks' dev sets (DESIGN.md default).
        self.trace = glue_trace([t.name for t in self.tasks], glue_dir=glue_dir, max_length=cfg.max_length)
        self.energy = energy_model(self.bert, self.spec, [t.num_labels for t in self.tasks], self.trace, cfg.model)
        self.predict = make_task_predict(self.model)
        self.eval_batch = -(-64 // self.mesh.devices.size) * self.mesh.devices.size
        self._memo: dict[str, Any] = {}
        self.run.check_run(cfg, PHASES)

    def _check_depths(self) -> None:
        too_deep = [b for b in self.cfg.uniform_branch_points if b > self.num_units]
        if too_deep:
            raise ConfigError(f"search config field 'uniform_branch_points': {too_deep} exceed the model's "
                              f"{self.num_units} units")
        for i, tree in enumerate(self.cfg.trees):
            if max(tree["branch_points"]) > self.num_units:
                raise ConfigError(f"search config field 'trees[{i}].branch_points': {list(tree['branch_points'])} "
                                  f"exceed the model's {self.num_units} units")

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per generator (compiled steps, the trees' energies, the teachers' outputs)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    # ----- the phases (each in its own module) -----------------------------------------------------------------
    def warmup(self) -> Any:
        """The warm-up's weights (relaxed.warmup)."""
        return relaxed.warmup(self)

    def search(self, lam: float, warm_params) -> dict[str, Any]:
        """One lambda search's record (relaxed.search)."""
        return relaxed.search(self, lam, warm_params)

    def warmup_profile(self, warm_params) -> dict[str, Any]:
        """The warm-up's loss profile (selection.warmup_profile)."""
        return selection.warmup_profile(self, warm_params)

    def calibrate(self, full_sharing: dict[str, Any], warm_params) -> dict[str, Any]:
        """The held-out task-weight calibration (selection.calibrate)."""
        return selection.calibrate(self, full_sharing, warm_params)

    def finetune_and_evaluate(self, branch_points: Sequence[int], warm_params, *, seed: int | None = None
                              ) -> dict[str, Any]:
        """One discrete model's record, trained if it is not finished (finetune.finetune_and_evaluate)."""
        return finetune.finetune_and_evaluate(self, branch_points, warm_params, seed=seed)

    def budget_streams(self, seed: int) -> list:
        """Every task's training stream at the fine-tuning budget (finetune.budget_streams)."""
        return finetune.budget_streams(self, seed)

    def teachers(self) -> Any:
        """The distillation teachers (teachers.teachers)."""
        return teachers.teachers(self)

    def teacher_outputs(self) -> list[np.ndarray]:
        """The teachers' outputs on the training rows (teachers.teacher_outputs)."""
        return teachers.teacher_outputs(self)

    def independent_record(self) -> dict[str, Any] | None:
        """The independent models' record (independent.independent_record)."""
        return independent.independent_record(self)

    def model_dir(self, b: Sequence[int], seed: int | None = None) -> Path:
        return self.run.model(b, seed)

    # ----- initial parameters ----------------------------------------------------------------------------------
    def task_models(self, folder: str | None = None) -> tuple[list[Any], list[Any]]:
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
        return self.model.from_encoders(self.pretrained.params, *self.task_models())

    # ----- the resumable loop (train/loop.py) ------------------------------------------------------------------
    def loop(self, directory: Path, state, total: int, batches: int | Callable[[int], dict], step: Callable,
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

    def replicate(self, tree):
        """``tree`` on every device of the mesh."""
        return replicate(tree, self.mesh)

    def shard(self, batch):
        """``batch`` split over the mesh on its example axis."""
        return shard_batch(batch, self.mesh)

    # ----- what a discrete model costs -------------------------------------------------------------------------
    def describe(self, b: Sequence[int], metrics: dict[str, dict[str, float]],
                 heldout: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
        """Dev metrics and scores (reported), held-out metrics and scores (what the sweep chooses on), and the exact
        simulator's energy/area/latency of a discrete model."""
        tree = hw.SharingTree.from_branch_points(list(b), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        scores = {t.name: main_score(t, metrics[t.name]) for t in self.tasks}
        energy = sim.total_energy_j / sim.num_requests
        independent_j = self.independent_energy_j()
        record = {
            "branch_points": list(b), "metrics": metrics, "scores": scores,
            "mean_score": float(np.mean(list(scores.values()))), "energy_per_request_j": energy,
            "energy_ratio": energy / independent_j, "efficiency": independent_j / energy,
            "crossbars": sim.footprint.crossbars, "area_mm2": sim.footprint.area_mm2,
            "latency_per_request_s": float(sim.latency_per_request_s.mean()),
        }
        if heldout is not None:
            held = {t.name: main_score(t, heldout[t.name]) for t in self.tasks}
            record |= {"heldout_metrics": heldout, "heldout_scores": held,
                       "heldout_mean_score": float(np.mean(list(held.values())))}
        return record

    def independent_energy_j(self) -> float:
        """The exact simulator's energy per request of the independent models (b = 0 for every task)."""
        tree = hw.SharingTree.from_branch_points([0] * len(self.tasks), self.num_units)
        sim = simulate(self.spec, self.energy.arch, tree, self.trace, num_labels=[t.num_labels for t in self.tasks])
        return sim.total_energy_j / sim.num_requests
