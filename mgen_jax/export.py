"""Export fine-tuned models as standard Hugging Face BERT directories (``mgen export``).

Input: a fine-tuning run folder (``mgen finetune``: final_params.msgpack + config.json) or a discrete multi-task model
folder of a sweep (``<workdir>/models/b_<...>``: params.msgpack + result.json; the sweep's settings.json two levels
up names the tasks). Output, per task: ``<out>/<TASK>/`` with

- ``config.json`` (a BertModel config) and ``model.safetensors`` (the task's encoder in Hugging Face's names: for a
  multi-task model the embeddings, the trunk's units before the task's branch point and the task's own units after
  it), loadable by ``transformers.BertModel.from_pretrained`` and by ``mgen_jax.model.load_pretrained``;
- the tokenizer files of the pretrained model the run started from;
- ``head.safetensors`` + ``head.json``: the task head, which is not Hugging Face's [CLS] pooler: mean pooling over
  the real tokens (attention mask), ``pooled = tanh(pooler.weight @ mean + pooler.bias)``, then
  ``logits = classifier.weight @ pooled + classifier.bias`` (weights stored (out, in) as in PyTorch); head.json holds
  the pooling, the labels and, for a multi-task model, the branch point.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError, MgenError
from mgen_jax.io import describe_value, prepare_output, read_json_file, write_bytes_atomic, write_json_atomic
from mgen_jax.model.bert import BertConfig
from mgen_jax.model.weights import params_to_hf

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()})


def head_tensors(head: dict[str, Any], num_labels: int) -> dict[str, np.ndarray]:
    """A head's weights in PyTorch layout (out, in); a padded multi-task head is cut to its task's labels."""
    kernel = np.asarray(head["classifier"]["kernel"], np.float32)[:, :num_labels]
    return {"pooler.weight": np.asarray(head["pooler"]["kernel"], np.float32).T,
            "pooler.bias": np.asarray(head["pooler"]["bias"], np.float32),
            "classifier.weight": kernel.T, "classifier.bias": np.asarray(head["classifier"]["bias"], np.float32)[
                :num_labels]}


def write_export(out: Path, *, encoder: Any, head: Any, bert: BertConfig, task: str, pooling: str, tokenizer_dir: Path,
                 extra: dict[str, Any]) -> Path:
    """One task's Hugging Face directory (see the module docstring)."""
    glue = get_task(task)
    prepare_output(out / "config.json", "export folder")
    config = bert.to_hf() | {"architectures": ["BertModel"], "torch_dtype": "float32"}
    write_json_atomic(out / "config.json", config)
    write_bytes_atomic(out / "model.safetensors", _safetensors_bytes(params_to_hf(encoder, bert)))
    write_bytes_atomic(out / "head.safetensors", _safetensors_bytes(head_tensors(head, glue.num_labels)))
    write_json_atomic(out / "head.json", {
        "task": glue.name, "pooling": pooling, "num_labels": glue.num_labels,
        "labels": None if glue.labels is None else list(glue.labels),
        "problem_type": "regression" if glue.is_regression else "single_label_classification",
        "formula": "pooled = tanh(pooler.weight @ pool(last_hidden_state) + pooler.bias); "
                   "logits = classifier.weight @ pooled + classifier.bias; pool = mean over attention_mask tokens"
                   if pooling == "mean" else "pool = the first ([CLS]) token",
    } | extra)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def export_run(run: str | Path, out: str | Path) -> list[Path]:
    """Export a fine-tuning run folder or a multi-task model folder; returns the task directories written."""
    from mgen_jax.model.pretrained import load_pretrained
    from mgen_jax.train.checkpoint import restore_checkpoint

    run, out = Path(run), Path(out)
    prepare_output(out / "export.check", "export folder")  # a bad --out fails first, as in every command
    try:
        return _export_run(run, out, load_pretrained, restore_checkpoint)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, MgenError):
            raise
        raise ConfigError(f"{run}: its records are not what mgen wrote ({type(exc).__name__}: "
                          f"{describe_value(str(exc), 120)})") from None


def _export_run(run: Path, out: Path, load_pretrained, restore_checkpoint) -> list[Path]:
    if (run / "final_params.msgpack").is_file():  # one task, fine-tuned alone
        cfg = read_json_file(run / "config.json", "fine-tuning record")["config"]
        pretrained = load_pretrained(cfg["model"])
        tuned = restore_checkpoint(run / "final_params.msgpack", None)
        task = get_task(cfg["task"]).name
        return [write_export(out / task, encoder=tuned["encoder"], head=tuned["head"], bert=pretrained.config,
                             task=task, pooling=cfg.get("pooling", "mean"), tokenizer_dir=pretrained.directory,
                             extra={"source": "independent fine-tuning", "seed": cfg.get("seed")})]
    if (run / "params.msgpack").is_file() and (run / "result.json").is_file():  # a discrete multi-task model
        result = read_json_file(run / "result.json", "model record")
        settings = read_json_file(run.parent.parent / "settings.json", "sweep settings")
        tasks = [get_task(t).name for t in settings["tasks"]]
        b = [int(x) for x in result["branch_points"]]
        pretrained = load_pretrained(settings.get("model", "minilm-l6"))
        params = restore_checkpoint(run / "params.msgpack", None)
        units = pretrained.config.num_units
        if len(b) != len(tasks) or len(params["trunk"]) != units:
            raise ConfigError(f"{run}: {len(b)} branch points for {len(tasks)} tasks, or a trunk of "
                              f"{len(params['trunk'])} units for a {units}-unit model")
        written = []
        for t, task in enumerate(tasks):
            encoder = {"embeddings": params["embeddings"]}
            for u in range(units):
                key = f"unit_{u}"
                encoder[key] = params["trunk"][key] if u < b[t] else _take(params["own"][key], t)
            written.append(write_export(
                out / task, encoder=encoder, head=_take(params["heads"], t), bert=pretrained.config, task=task,
                pooling=settings.get("pooling", "mean"), tokenizer_dir=pretrained.directory,
                extra={"source": "discrete multi-task model", "branch_point": b[t], "branch_points": b,
                       "tasks": tasks, "shared_units": f"units 0..{b[t] - 1} are the trunk shared with the tasks "
                       "whose branch point is at least as deep" if b[t] else "none (independent)"}))
        return written
    raise ConfigError(f"{run} is neither a fine-tuning run (final_params.msgpack) nor a multi-task model folder "
                      "(params.msgpack + result.json)")


def _take(tree: Any, index: int) -> Any:
    if isinstance(tree, dict):
        return {k: _take(v, index) for k, v in tree.items()}
    return np.asarray(tree)[index]


def load_export(directory: str | Path):
    """(encoder params, BertConfig, head tensors, head.json) of an export, read back with our own loaders."""
    from safetensors.numpy import load_file

    from mgen_jax.model.pretrained import load_pretrained

    directory = Path(directory)
    pretrained = load_pretrained(directory)
    return pretrained, load_file(str(directory / "head.safetensors")), json.loads((directory / "head.json").read_text())


def head_outputs(hidden: np.ndarray, mask: np.ndarray, head: dict[str, np.ndarray], pooling: str = "mean") -> np.ndarray:
    """The exported head applied to an encoder's last hidden state [B, L, H] (numpy; the formula of head.json)."""
    hidden = np.asarray(hidden, np.float64)
    if pooling == "mean":
        weights = np.asarray(mask, np.float64)[:, :, None]
        pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1.0)
    else:
        pooled = hidden[:, 0]
    pooled = np.tanh(pooled @ head["pooler.weight"].T + head["pooler.bias"])
    return pooled @ head["classifier.weight"].T + head["classifier.bias"]
