import json

import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.pretrained import resolve_pretrained_dir


def test_presets():
    assert hw.load_arch("minilm-l6").num_units == 12
    base = hw.load_arch("bert-base")
    assert (base.num_layers, base.hidden, base.ffn, base.num_units) == (12, 768, 3072, 24)
    assert hw.load_arch("bert-large").num_units == 48


def test_units_alternate_attention_and_ffn(minilm):
    units = minilm.units()
    assert [u.name for u in units[:3]] == ["L1.attn", "L1.ffn", "L2.attn"]
    assert [u.index for u in units] == list(range(12))


def test_from_packaged_minilm_config_matches_preset(minilm):
    arch = hw.load_arch(resolve_pretrained_dir("minilm-l6"))
    for field in ("num_layers", "hidden", "num_heads", "ffn", "vocab_size"):
        assert getattr(arch, field) == getattr(minilm, field)


def test_bad_configs(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 100, "num_attention_heads": 3, "intermediate_size": 10}))
    with pytest.raises(ConfigError, match="divisible"):
        hw.load_arch(path)
    path.write_text(json.dumps({"hidden_size": 96}))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        hw.load_arch(tmp_path)
    with pytest.raises(ConfigError, match="minilm-l6"):
        hw.load_arch("gpt-7")
