"""Task models to compress, their bases, their evaluation, and the compressed-delta file.

Two sources (``load_models``):

- **independent** fine-tuning runs (``mgen finetune``): a run folder (``final_params.msgpack``, ``config.json``) or a
  folder of them (``<dir>/<TASK>/``); every unit is the task's own (branch point 0); the base is the pretrained
  encoder the runs started from;
- a **multi-task** model folder of a sweep (``<workdir>/models/b_<...>``: ``params.msgpack``, ``result.json``; the
  sweep's ``settings.json`` two levels up names the tasks): task t runs the trunk's units 0..b_t-1 and its own units
  b_t..U-1 (the private ones); the base of a private unit is the pretrained unit or the trunk's unit.

A task model is what the task runs, as one classifier ({"encoder", "head"}, mgen_jax.model.SequenceClassifier), with
the units it owns (``private``) and the base weights per kind. Held-out rows come from the runs' own held-out split
(mgen_jax.data.splits, carved from train); dev is loaded separately and only for the report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from mgen_jax.data.glue import GlueTask, get_task, load_split
from mgen_jax.data.metrics import main_score, task_metrics
from mgen_jax.data.pipeline import EncodedSplit, encode_split
from mgen_jax.data.splits import HeldoutSpec, train_and_heldout
from mgen_jax.errors import ConfigError, MgenError
from mgen_jax.hw.arch import ATTENTION, FFN
from mgen_jax.io import describe_value, read_json_file
from mgen_jax.workfolder import read_state_json

EVAL_BUCKETS = (32, 64, 128)  # few shapes: one compiled forward pass each
# flax dense-layer names of a unit's crossbar matrices -> hw/ops.py op names
OP_NAMES = {ATTENTION: {"query": "query", "key": "key", "value": "value", "output": "output"},
            FFN: {"intermediate": "ffn_in", "output": "ffn_out"}}


def unit_kind(u: int) -> str:
    return ATTENTION if u % 2 == 0 else FFN


@dataclasses.dataclass
class TaskModel:
    """One task as a classifier: ``params`` {"encoder", "head"} (what it runs), ``private`` (its own units),
    ``bases`` {kind: {unit_u: unit params}} (the base weights available for its private units)."""

    task: GlueTask
    params: dict
    private: tuple[int, ...]
    bases: dict[str, dict]


@dataclasses.dataclass
class ModelSet:
    """The task models of one source, with what evaluating them needs."""

    kind: str  # "independent" or "multitask"
    source: str
    models: list[TaskModel]
    branch_points: tuple[int, ...]
    model_name: str  # the pretrained model the runs started from
    pooling: str
    max_length: int
    heldout: HeldoutSpec
    data_seed: int
    max_train: dict[str, int | None]
    stored_scores: dict[str, dict[str, float]]  # what the source recorded: {"dev": {task: score}, "heldout": ...}

    @property
    def tasks(self) -> tuple[GlueTask, ...]:
        return tuple(m.task for m in self.models)

    @property
    def base_kinds(self) -> tuple[str, ...]:
        return tuple(self.models[0].bases)


def _tree(x: Any) -> Any:
    return jax.tree.map(np.asarray, x)


def _pretrained_units(model_name: str) -> tuple[Any, Any]:
    from mgen_jax.model.pretrained import load_pretrained

    pre = load_pretrained(model_name)
    return pre, _tree(pre.params)


def _heldout_spec(record: dict, where: str) -> HeldoutSpec:
    try:
        return HeldoutSpec(float(record.get("heldout_fraction", 0.1)), int(record.get("heldout_max_rows", 1000)),
                           int(record.get("heldout_seed", 0)))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_independent(runs: Sequence[Path]) -> ModelSet:
    """Fine-tuning run folders (one task each)."""
    from mgen_jax.train.checkpoint import restore_checkpoint

    records, models, dev, held = [], [], {}, {}
    for run in runs:
        config = read_json_file(run / "config.json", "fine-tuning record")
        if not isinstance(config.get("config"), dict):
            raise ConfigError(f"{run / 'config.json'}: field 'config' (the run's settings) is missing")
        records.append((run, config["config"]))
    first = records[0][1]
    for run, cfg in records[1:]:
        for field in ("model", "pooling", "max_length", "heldout_fraction", "heldout_max_rows", "heldout_seed",
                      "data_seed"):
            if cfg.get(field) != first.get(field):
                raise ConfigError(f"{run / 'config.json'}: field '{field}' is {cfg.get(field)!r}, but "
                                  f"{records[0][0] / 'config.json'} has {first.get(field)!r}")
    pre, pre_params = _pretrained_units(first["model"])
    for run, cfg in records:
        path = run / "final_params.msgpack"
        if not path.is_file():
            raise ConfigError(f"{path} not found: the run has not finished (mgen finetune)")
        tuned = _tree(restore_checkpoint(path, None))
        task = get_task(cfg["task"])
        units = tuple(range(pre.config.num_units))
        models.append(TaskModel(task, {"encoder": tuned["encoder"], "head": tuned["head"]}, units,
                                {"pretrained": {f"unit_{u}": pre_params[f"unit_{u}"] for u in units}}))
        summary = run / "summary.json"
        if summary.is_file():
            s = read_state_json(summary)
            dev[task.name] = s.get("score")
            held[task.name] = s.get("heldout_score")
    return ModelSet("independent", ", ".join(str(r) for r, _ in records), models, (0,) * len(models), first["model"],
                    first.get("pooling", "mean"), int(first["max_length"]), _heldout_spec(first, str(records[0][0])),
                    int(first.get("data_seed", 0)), {cfg["task"]: cfg.get("max_train_examples") for _, cfg in records},
                    {"dev": dev, "heldout": held})


def load_multitask(folder: Path) -> ModelSet:
    """A discrete multi-task model folder of a sweep."""
    from mgen_jax.train.checkpoint import restore_checkpoint

    result = read_json_file(folder / "result.json", "multi-task model record")
    settings_path = folder.parent.parent / "settings.json"
    settings = read_json_file(settings_path, "sweep settings")
    for field, record, where in (("branch_points", result, folder / "result.json"), ("tasks", settings, settings_path)):
        if not isinstance(record.get(field), list):
            raise ConfigError(f"{where}: field '{field}' (a list) is missing")
    tasks = [get_task(name) for name in settings["tasks"]]
    b = [int(x) for x in result["branch_points"]]
    if len(b) != len(tasks):
        raise ConfigError(f"{folder / 'result.json'}: {len(b)} branch points for {len(tasks)} tasks")
    params = _tree(restore_checkpoint(folder / "params.msgpack", None))
    pre, pre_params = _pretrained_units(settings.get("model", "minilm-l6"))
    num_units = pre.config.num_units
    models = []
    for t, task in enumerate(tasks):
        take = lambda tree: jax.tree.map(lambda x: x[t], tree)
        encoder = {"embeddings": params["embeddings"]}
        for u in range(num_units):
            key = f"unit_{u}"
            encoder[key] = params["trunk"][key] if u < b[t] else take(params["own"][key])
        head = take(params["heads"])
        head = {"pooler": head["pooler"], "classifier": {"kernel": head["classifier"]["kernel"][:, :task.num_labels],
                                                         "bias": head["classifier"]["bias"][:task.num_labels]}}
        private = tuple(range(b[t], num_units))
        bases = {"pretrained": {f"unit_{u}": pre_params[f"unit_{u}"] for u in private},
                 "trunk": {f"unit_{u}": params["trunk"][f"unit_{u}"] for u in private}}
        models.append(TaskModel(task, {"encoder": encoder, "head": head}, private, bases))
    max_train = settings.get("max_train_per_task")
    return ModelSet("multitask", str(folder), models, tuple(b), settings.get("model", "minilm-l6"),
                    settings.get("pooling", "mean"), int(settings.get("max_length", 128)),
                    _heldout_spec(settings, str(settings_path)), int(settings.get("data_seed", 0)),
                    {t.name: max_train.get(t.name) if isinstance(max_train, dict) else max_train for t in tasks},
                    {"dev": result.get("scores", {}), "heldout": result.get("heldout_scores", {})})


def load_models(path: str | Path, tasks: Sequence[str] | None = None) -> ModelSet:
    """A fine-tuning run folder, a folder of run folders (``tasks``: which; default every finished one), or a
    multi-task model folder. ConfigError naming ``path`` when its records are not what mgen wrote."""
    path = Path(path)
    try:
        return _load_models(path, tasks)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, MgenError):
            raise
        raise ConfigError(f"{path}: its records are not what mgen wrote ({type(exc).__name__}: "
                          f"{describe_value(str(exc), 120)})") from None


def _load_models(path: Path, tasks: Sequence[str] | None) -> ModelSet:
    if tasks is not None:
        names = [get_task(t).name for t in tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"--tasks names a task twice: {names}")
    if (path / "params.msgpack").is_file() and (path / "result.json").is_file():
        if tasks:
            raise ConfigError(f"{path} is a multi-task model folder: its tasks come from the sweep, not --tasks")
        return load_multitask(path)
    if (path / "final_params.msgpack").is_file():
        return load_independent([path])
    if path.is_dir():
        names = [get_task(t).name for t in tasks] if tasks else sorted(
            p.name for p in path.iterdir() if (p / "final_params.msgpack").is_file())
        if names:
            return load_independent([path / n for n in names])
    raise ConfigError(f"{path}: not a fine-tuning run folder (final_params.msgpack), a folder of them, or a "
                      "multi-task model folder (params.msgpack + result.json)")


# ----- data and evaluation ---------------------------------------------------------------------------------------
def encoded_split(models: ModelSet, task: GlueTask, split: str, tokenizer, glue_dir=None) -> EncodedSplit:
    """The task's held-out rows (``split="heldout"``, as its runs carved them) or its dev rows, encoded."""
    if split == "heldout":
        _, rows = train_and_heldout(task.name, models.heldout, max_train_examples=models.max_train.get(task.name),
                                    data_seed=models.data_seed, glue_dir=glue_dir)
        if len(rows) == 0:
            raise ConfigError(f"{task.name}: the runs carved no held-out split (heldout_fraction 0): nothing to "
                              "choose the compression on")
    elif split == "dev":
        rows = load_split(task.name, "dev", glue_dir=glue_dir)
    else:
        raise ConfigError(f"split must be 'heldout' or 'dev', got {split!r}")
    return encode_split(rows, tokenizer, max_length=models.max_length)


class Evaluator:
    """Metrics of a task's classifier on encoded rows (one compiled forward pass per bucket and task)."""

    def __init__(self, bert_config, pooling: str, batch_size: int = 64):
        from mgen_jax.train.parallel import data_mesh

        self.bert, self.pooling, self.batch_size = bert_config, pooling, batch_size
        self.mesh = data_mesh()
        self._predict: dict[int, Any] = {}

    def outputs(self, task: GlueTask, params: dict, data: EncodedSplit) -> np.ndarray:
        from mgen_jax.model.bert import SequenceClassifier
        from mgen_jax.train.finetune import make_predict, predict

        if task.num_labels not in self._predict:
            self._predict[task.num_labels] = make_predict(SequenceClassifier(self.bert, task.num_labels, self.pooling))
        return predict(self._predict[task.num_labels], params, data, self.batch_size, EVAL_BUCKETS, self.mesh)

    def score(self, task: GlueTask, params: dict, data: EncodedSplit) -> tuple[float, dict[str, float]]:
        metrics = task_metrics(task, self.outputs(task, params, data), data.labels)
        return main_score(task, metrics), metrics
