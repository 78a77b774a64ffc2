"""Hugging Face BERT weights (model.safetensors, kernels stored (out, in)) <-> our encoder parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.model.bert import BertConfig

# Keys a BERT checkpoint may hold that the encoder does not use.
_IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*|classifier\..*|qa_outputs\..*)$")


def _layer_map(layer: int) -> dict[str, tuple[str, ...]]:
    hf = f"encoder.layer.{layer}."
    attn, ffn = f"unit_{2 * layer}", f"unit_{2 * layer + 1}"
    return {
        hf + "attention.self.query": (attn, "query"),
        hf + "attention.self.key": (attn, "key"),
        hf + "attention.self.value": (attn, "value"),
        hf + "attention.output.dense": (attn, "output"),
        hf + "attention.output.LayerNorm": (attn, "LayerNorm"),
        hf + "intermediate.dense": (ffn, "intermediate"),
        hf + "output.dense": (ffn, "output"),
        hf + "output.LayerNorm": (ffn, "LayerNorm"),
    }


def _module_map(cfg: BertConfig) -> dict[str, tuple[str, ...]]:
    mapping = {
        "embeddings.word_embeddings": ("embeddings", "word"),
        "embeddings.position_embeddings": ("embeddings", "position"),
        "embeddings.token_type_embeddings": ("embeddings", "token_type"),
        "embeddings.LayerNorm": ("embeddings", "LayerNorm"),
    }
    for layer in range(cfg.num_layers):
        mapping.update(_layer_map(layer))
    return mapping


def _normalise(name: str) -> str:
    for prefix in ("bert.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace(".gamma", ".weight").replace(".beta", ".bias")


def params_from_hf(tensors: Mapping[str, np.ndarray], cfg: BertConfig, *, source: str = "checkpoint") -> dict[str, Any]:
    """Encoder parameters from a Hugging Face BERT state dict; raises ConfigError on missing or misshapen tensors."""
    tensors = {_normalise(k): np.asarray(v) for k, v in tensors.items()}
    params: dict[str, Any] = {}
    used = set()
    for hf, path in _module_map(cfg).items():
        node = params
        for key in path:
            node = node.setdefault(key, {})
        is_embedding = path[0] == "embeddings" and path[1] != "LayerNorm"
        is_norm = path[-1] == "LayerNorm"
        for suffix in ("weight",) if is_embedding else ("weight", "bias"):
            name = f"{hf}.{suffix}"
            if name not in tensors:
                raise ConfigError(f"{source}: tensor {name!r} is missing")
            value = tensors[name].astype(np.float32)
            used.add(name)
            if is_embedding:
                node["embedding"] = value
            elif is_norm:
                node["scale" if suffix == "weight" else "bias"] = value
            else:
                node["kernel" if suffix == "weight" else "bias"] = value.T if suffix == "weight" else value
    leftovers = sorted(k for k in tensors if k not in used and not _IGNORED.match(k))
    if leftovers:
        raise ConfigError(f"{source}: tensors not used by a {cfg.num_layers}-layer BERT encoder: {leftovers[:5]}")
    _check_shapes(params, cfg, source)
    return params


def params_to_hf(params: Mapping[str, Any], cfg: BertConfig) -> dict[str, np.ndarray]:
    """The Hugging Face BertModel state dict (names without a ``bert.`` prefix, kernels (out, in)) of encoder
    parameters: the inverse of ``params_from_hf``."""
    tensors: dict[str, np.ndarray] = {}
    for hf, path in _module_map(cfg).items():
        node = params
        for key in path:
            node = node[key]
        if path[0] == "embeddings" and path[1] != "LayerNorm":
            tensors[f"{hf}.weight"] = np.asarray(node["embedding"], np.float32)
        elif path[-1] == "LayerNorm":
            tensors[f"{hf}.weight"] = np.asarray(node["scale"], np.float32)
            tensors[f"{hf}.bias"] = np.asarray(node["bias"], np.float32)
        else:
            tensors[f"{hf}.weight"] = np.ascontiguousarray(np.asarray(node["kernel"], np.float32).T)
            tensors[f"{hf}.bias"] = np.asarray(node["bias"], np.float32)
    return tensors


def _check_shapes(params: dict[str, Any], cfg: BertConfig, source: str) -> None:
    h, f = cfg.hidden_size, cfg.intermediate_size
    expected = {
        ("embeddings", "word", "embedding"): (cfg.vocab_size, h),
        ("embeddings", "position", "embedding"): (cfg.max_position, h),
        ("embeddings", "token_type", "embedding"): (cfg.type_vocab_size, h),
        ("unit_0", "query", "kernel"): (h, h),
        ("unit_1", "intermediate", "kernel"): (h, f),
        ("unit_1", "output", "kernel"): (f, h),
    }
    for path, shape in expected.items():
        node = params
        for key in path:
            node = node[key]
        if tuple(node.shape) != shape:
            raise ConfigError(f"{source}: {'/'.join(path)} has shape {tuple(node.shape)}, config says {shape}")


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise ConfigError(f"weights file {path} not found")
    try:
        return load_file(str(path))
    except OSError as exc:
        raise ConfigError(f"weights file {path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors' own error type (a truncated or foreign file), or a wrong dtype
        raise ConfigError(f"weights file {path}: not a readable safetensors file ({type(exc).__name__}: "
                          f"{str(exc)[:200]})") from None
