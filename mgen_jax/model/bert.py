"""BERT encoder in Flax (linen): embeddings, attention units, FFN units (post-LayerNorm, exact-erf GELU), heads.

The encoder is a sequence of U = 2L *units* (DESIGN.md section 2): unit 2l is layer l's attention block, unit 2l+1
its FFN block, each a module of its own (parameters ``unit_<u>``) so that a multi-task model can run, share or stack
them unit by unit. Parameters are plain pytrees: ``{"embeddings": ..., "unit_0": ..., ..., "unit_<U-1>": ...}``.
Kernels are stored (in, out), Flax's convention; Hugging Face stores (out, in) (see ``weights.py``).

Compute dtype (``BertConfig.compute_dtype``): "float32", or "bfloat16" for accelerators (mixed precision): parameters
stay float32 (so gradients and optimizer states are float32); the encoder's matmuls and activations run in bfloat16,
with the attention softmax and the LayerNorm statistics in float32; the embedding sum and its LayerNorm run in
float32 and are cast; the head (pooling, pooler, classifier: under 0.5 % of the FLOPs) runs in float32 and returns
float32 outputs, so losses are float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mgen_jax.errors import ConfigError

COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Dims and regularisation of a BERT encoder, as in a Hugging Face config.json, and the compute dtype (a training
    choice, not part of the pretrained model: ``from_hf`` and ``to_hf`` leave it out)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    compute_dtype: str = "float32"  # of matmuls and activations (module docstring); parameters are float32

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position",
                     "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"BERT config field '{name}' must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"BERT config: hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        for name in ("hidden_dropout", "attention_dropout", "layer_norm_eps", "initializer_range"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"BERT config field '{name}' must be a finite number, got {value!r}")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"BERT config field '{name}' must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"BERT config field 'layer_norm_eps' must be > 0, got {self.layer_norm_eps!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"BERT config field 'compute_dtype' must be one of {list(COMPUTE_DTYPES)}, "
                              f"got {self.compute_dtype!r}")

    @property
    def dtype(self) -> jnp.dtype:
        """The compute dtype as a numpy dtype."""
        return jnp.dtype(self.compute_dtype)

    @property
    def num_units(self) -> int:
        return 2 * self.num_layers

    @classmethod
    def from_hf(cls, config: Mapping[str, Any], *, source: str = "config.json") -> "BertConfig":
        act = config.get("hidden_act", "gelu")
        if act != "gelu":
            raise ConfigError(f"{source}: hidden_act {act!r} unsupported (the encoder uses exact-erf GELU)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{source}: only absolute position embeddings are supported")
        keys = {
            "vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size",
            "max_position": "max_position_embeddings", "type_vocab_size": "type_vocab_size",
            "layer_norm_eps": "layer_norm_eps", "hidden_dropout": "hidden_dropout_prob",
            "attention_dropout": "attention_probs_dropout_prob", "initializer_range": "initializer_range",
        }
        missing = [hf for hf in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
                   if hf not in config]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {missing}")
        try:
            return cls(**{ours: config[hf] for ours, hf in keys.items() if hf in config})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_hf(self) -> dict[str, Any]:
        """The Hugging Face config.json fields of this encoder (what ``mgen_jax.hw.arch_from_hf_config`` reads)."""
        return {
            "model_type": "bert", "hidden_act": "gelu", "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size, "max_position_embeddings": self.max_position,
            "type_vocab_size": self.type_vocab_size, "layer_norm_eps": self.layer_norm_eps,
            "hidden_dropout_prob": self.hidden_dropout, "attention_probs_dropout_prob": self.attention_dropout,
            "initializer_range": self.initializer_range,
        }


def _dense(features: int, cfg: BertConfig, name: str, dtype=None) -> nn.Dense:
    """A dense layer computing in ``dtype`` (default: the compute dtype) with float32 parameters."""
    return nn.Dense(features, kernel_init=nn.initializers.normal(cfg.initializer_range), name=name,
                    dtype=cfg.dtype if dtype is None else dtype)


def _layer_norm(cfg: BertConfig, dtype=None) -> nn.LayerNorm:
    """LayerNorm with float32 statistics and parameters, output in ``dtype`` (default: the compute dtype)."""
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=cfg.dtype if dtype is None else dtype, name="LayerNorm")


def _bit_generator_key(key: jax.Array) -> jax.Array:
    """An "rbg" key (XLA's RngBitGenerator) derived from a threefry key (typed, or the legacy uint32[2] form): the
    threefry key is split in two and the halves' 4 words become the rbg key's state."""
    halves = jax.random.split(key)
    words = jax.random.key_data(halves) if jnp.issubdtype(halves.dtype, jax.dtypes.prng_key) else halves
    return jax.random.wrap_key_data(words.reshape(4), impl="rbg")


class Dropout(nn.Module):
    """Inverted dropout (flax.linen.Dropout's semantics: zero each element with probability ``rate``, scale the rest by
    1 / (1 - rate); identity when deterministic), its mask drawn by XLA's RngBitGenerator from an "rbg" key derived
    from the module's "dropout" rng, not by threefry as flax does. Why: a MiniLM training step draws about 19 million
    mask bits; threefry took about 250 ms of a 1.23 s step on 2 CPU cores (experiments/results/bench_train_step.json)
    and the generator about half of that. The masks are reproducible for a seed on one backend and under any sharding,
    but differ between backends (CPU, GPU, TPU) and possibly between XLA versions: a run resumed on another backend
    draws different masks from there on (its results stay valid, not bit-identical to an uninterrupted run)."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep_prob = 1.0 - self.rate
        keep = jax.random.bernoulli(_bit_generator_key(self.make_rng("dropout")), keep_prob, x.shape)
        return lax.select(keep, x / keep_prob, jnp.zeros_like(x))


class Embeddings(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array, *, deterministic: bool = True) -> jax.Array:
        init = nn.initializers.normal(self.cfg.initializer_range)
        h = self.cfg.hidden_size
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = (
            nn.Embed(self.cfg.vocab_size, h, embedding_init=init, name="word")(input_ids)
            + nn.Embed(self.cfg.max_position, h, embedding_init=init, name="position")(positions)
            + nn.Embed(self.cfg.type_vocab_size, h, embedding_init=init, name="token_type")(token_type_ids)
        )
        x = _layer_norm(self.cfg, jnp.float32)(x).astype(self.cfg.dtype)
        return Dropout(self.cfg.hidden_dropout)(x, deterministic=deterministic)


def attention_bias(attention_mask: jax.Array, dtype=jnp.float32) -> jax.Array:
    """[B, 1, 1, L] additive bias: 0 for tokens, the dtype's minimum for padding (as Hugging Face does)."""
    return ((1.0 - attention_mask[:, None, None, :].astype(dtype)) * jnp.finfo(dtype).min).astype(dtype)


class AttentionUnit(nn.Module):
    """Multi-head self-attention + output projection + residual + LayerNorm (one sharing unit)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array, *, deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        b, length, h = x.shape
        heads, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        split = lambda t: t.reshape(b, length, heads, d)
        q = split(_dense(h, cfg, "query")(x))
        k = split(_dense(h, cfg, "key")(x))
        v = split(_dense(h, cfg, "value")(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.asarray(d, jnp.float32)) + bias.astype(jnp.float32)
        probs = jax.nn.softmax(scores, axis=-1).astype(cfg.dtype)  # softmax in float32
        probs = Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
        context = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, h)
        out = Dropout(cfg.hidden_dropout)(_dense(h, cfg, "output")(context), deterministic=deterministic)
        return _layer_norm(cfg)(out + x)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU as PyTorch computes it (Hugging Face's "gelu"): x / 2 x (1 + erf(x / sqrt 2)). jax.nn.gelu's exact
    form, x / 2 x erfc(-x / sqrt 2), is the same function up to float rounding (under 1e-6 absolute for |x| < 10), but
    XLA computes erfc on CPU about 5x slower than erf: 3 % of a MiniLM training step."""
    return x * 0.5 * (1.0 + lax.erf(x * (1.0 / math.sqrt(2.0))))


class FFNUnit(nn.Module):
    """Dense (H -> F), exact-erf GELU, dense (F -> H), residual, LayerNorm (one sharing unit)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array | None = None, *, deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        y = gelu(_dense(cfg.intermediate_size, cfg, "intermediate")(x))
        y = Dropout(cfg.hidden_dropout)(_dense(cfg.hidden_size, cfg, "output")(y), deterministic=deterministic)
        return _layer_norm(cfg)(y + x)


def make_unit(cfg: BertConfig, u: int, name: str | None = None) -> nn.Module:
    """The module of unit u (attention for even u, FFN for odd u)."""
    return (AttentionUnit if u % 2 == 0 else FFNUnit)(cfg, name=name)


class BertEncoder(nn.Module):
    """Embeddings then units 0..U-1. Returns the last hidden state [B, L, H]; with ``output_hidden_states`` also the
    tuple (embeddings output, output of each layer), L + 1 arrays like Hugging Face's hidden_states; with
    ``output_unit_states`` instead the output of every unit (U arrays)."""

    cfg: BertConfig

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array | None = None, *,
        deterministic: bool = True, output_hidden_states: bool = False, output_unit_states: bool = False,
    ):
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = Embeddings(self.cfg, name="embeddings")(input_ids, token_type_ids, deterministic=deterministic)
        bias = attention_bias(attention_mask, x.dtype)
        layer_states, unit_states = [x], []
        for u in range(self.cfg.num_units):
            x = make_unit(self.cfg, u, name=f"unit_{u}")(x, bias, deterministic=deterministic)
            unit_states.append(x)
            if u % 2 == 1:
                layer_states.append(x)
        if output_unit_states:
            return x, tuple(unit_states)
        return (x, tuple(layer_states)) if output_hidden_states else x


def pool(hidden: jax.Array, attention_mask: jax.Array, pooling: str) -> jax.Array:
    """[B, H]: the [CLS] token's state ("cls") or the mean over real tokens ("mean")."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        weights = attention_mask.astype(hidden.dtype)[:, :, None]
        return jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    raise ConfigError(f"pooling must be 'cls' or 'mean', got {pooling!r}")


class ClassificationHead(nn.Module):
    """Pooling ([CLS] or mean over tokens), a pooler (dense + tanh), then a classifier (a regressor when
    num_labels == 1). all-MiniLM-L6-v2 was trained with mean pooling and ships an untrained pooler, so "mean" is the
    default and the pooler is fresh."""

    cfg: BertConfig
    num_labels: int
    pooling: str = "mean"

    @nn.compact
    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, *, deterministic: bool = True) -> jax.Array:
        hidden = hidden.astype(jnp.float32)  # the head runs in float32 (module docstring)
        pooler = _dense(self.cfg.hidden_size, self.cfg, "pooler", jnp.float32)
        pooled = jnp.tanh(pooler(pool(hidden, attention_mask, self.pooling)))
        pooled = Dropout(self.cfg.hidden_dropout)(pooled, deterministic=deterministic)
        return _dense(self.num_labels, self.cfg, "classifier", jnp.float32)(pooled)


class SequenceClassifier(nn.Module):
    """Encoder + head: logits [B, num_labels]. Parameters: {"encoder": ..., "head": ...}."""

    cfg: BertConfig
    num_labels: int
    pooling: str = "mean"

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids=None, *, deterministic: bool = True):
        hidden = BertEncoder(self.cfg, name="encoder")(
            input_ids, attention_mask, token_type_ids, deterministic=deterministic
        )
        return ClassificationHead(self.cfg, self.num_labels, self.pooling, name="head")(
            hidden, attention_mask, deterministic=deterministic
        )
