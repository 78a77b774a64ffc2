"""Export fine-tuned models as standard Hugging Face BERT directories (``mgen export``), and load them back.

Input: a fine-tuning run folder (``mgen finetune``: final_params.msgpack + config.json) or a discrete multi-task model
folder of a sweep (``<workdir>/models/b_<...>``: params.msgpack + result.json; the sweep's settings.json two levels
up names the tasks). Output, per task: ``<out>/<TASK>/`` with

- ``config.json`` (a BertModel config) and ``model.safetensors`` (the task's encoder in Hugging Face's names: for a
  multi-task model the embeddings, the trunk's units before the task's branch point and the task's own units after
  it, and BertModel's pooler, which holds the head's pooler weights), loadable by
  ``transformers.BertModel.from_pretrained`` with nothing missing or newly initialized, and by
  ``mgen_jax.model.load_pretrained``;
- the tokenizer files of the pretrained model the run started from;
- ``head.safetensors`` + ``head.json``: the task head, which is not Hugging Face's [CLS] pooler: mean pooling over
  the real tokens (attention mask), ``pooled = tanh(pooler.weight @ mean + pooler.bias)``, then
  ``logits = classifier.weight @ pooled + classifier.bias`` (weights stored (out, in) as in PyTorch); head.json holds
  the pooling, the labels and, for a multi-task model, the branch point. BertModel's ``pooler_output`` applies the
  same pooler to the [CLS] token: it is the head's pooled vector only for ``"pooling": "cls"``.

``load_exported(directory)`` reads an export back and applies its head: ``logits`` of token ids, ``predict`` of
texts (labels, or scores for a regression task)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

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
    tensors = head_tensors(head, glue.num_labels)
    pooler = {"pooler.dense.weight": tensors["pooler.weight"], "pooler.dense.bias": tensors["pooler.bias"]}
    write_bytes_atomic(out / "model.safetensors", _safetensors_bytes(params_to_hf(encoder, bert) | pooler))
    write_bytes_atomic(out / "head.safetensors", _safetensors_bytes(tensors))
    write_json_atomic(out / "head.json", {
        "task": glue.name, "pooling": pooling, "num_labels": glue.num_labels,
        "labels": None if glue.labels is None else list(glue.labels),
        "problem_type": "regression" if glue.is_regression else "single_label_classification",
        "formula": "pooled = tanh(pooler.weight @ pool(last_hidden_state) + pooler.bias); "
                   "logits = classifier.weight @ pooled + classifier.bias; pool = mean over attention_mask tokens"
                   if pooling == "mean" else "pool = the first ([CLS]) token",
        "hf_pooler_output": "transformers' BertModel pooler_output is tanh(pooler.weight @ [CLS] + pooler.bias): "
                            + ("the head's pooled vector" if pooling == "cls" else "not the head's input (the head "
                               "pools the mean); use mgen_jax.export.load_exported or the formula above"),
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


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """An exported task model: its encoder (``encoder``, read with mgen's loader; call it for the last hidden state),
    its head's tensors (``head``) and head.json (``info``: task, labels, pooling, ...).

    >>> model = load_exported("exported/SST-2")  # doctest: +SKIP
    >>> model.predict(["a gripping, funny film", "two hours of nothing"])  # doctest: +SKIP
    ['1', '0']
    """

    encoder: Any  # mgen_jax.model.pretrained.PretrainedBert
    head: dict[str, np.ndarray]
    info: dict[str, Any]

    def logits(self, input_ids, attention_mask, token_type_ids=None) -> np.ndarray:
        """[B, num_labels] float64: the head of head.json on the encoder's last hidden state of a padded batch
        (token ids [B, L], attention mask [B, L] of 1 for real tokens and 0 for padding)."""
        hidden = np.asarray(self.encoder(input_ids, attention_mask, token_type_ids))
        return head_outputs(hidden, attention_mask, self.head, self.info["pooling"])

    def predict(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, *,
                max_length: int = 128) -> list:
        """The task's answer for each text (or text pair, for MRPC, RTE, ...): its label string for a
        classification task (label index when head.json has no names), its score for a regression task (STS-B)."""
        from mgen_jax.data.tokenize import encode_pairs

        ids, types = encode_pairs(self.encoder.tokenizer, texts, text_pairs, max_length=max_length)
        width = max((len(row) for row in ids), default=1)
        batch = np.zeros((3, len(ids), width), np.int32)  # ids, mask, types; 0 = [PAD]
        for i, (row, kinds) in enumerate(zip(ids, types)):
            batch[:, i, :len(row)] = row, np.ones(len(row)), kinds
        logits = self.logits(*batch)
        if self.info["problem_type"] == "regression":
            return [float(x) for x in logits[:, 0]]
        labels = self.info.get("labels")
        return [labels[k] if labels else int(k) for k in logits.argmax(axis=1)]


def load_exported(directory: str | Path) -> ExportedModel:
    """An export of ``mgen export`` (one ``<out>/<TASK>/`` folder), ready to apply: encoder, head and head.json."""
    encoder, head, info = load_export(directory)
    return ExportedModel(encoder, head, info)
