"""Input-bit statistics of a model's crossbar matrices (mgen_jax/input_stats.py) against a plain numpy recount."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from mgen_jax.errors import ConfigError
from mgen_jax.hw.density import densities_of, quantize
from mgen_jax.input_stats import classifier_apply, dense_key, measure_input_bits
from mgen_jax.model.bert import BertConfig, SequenceClassifier


def test_dense_keys():
    assert dense_key(("encoder", "unit_0", "query")) == "L1.attn/query"
    assert dense_key(("encoder", "unit_3", "intermediate")) == "L2.ffn/ffn_in"
    assert dense_key(("unit_3", "output")) == "L2.ffn/ffn_out"
    assert dense_key(("encoder", "unit_2", "output")) == "L2.attn/output"
    assert dense_key(("head", "classifier")) == "head/classifier"
    with pytest.raises(ConfigError, match="not a crossbar matrix"):
        dense_key(("encoder", "embeddings", "word"))


def _batch(rng, rows, length, real_rows):
    lengths = rng.integers(2, length + 1, rows)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    weights = (np.arange(rows) < real_rows).astype(np.float32)
    ids = rng.integers(1, 100, (rows, length)).astype(np.int32) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids), "weights": weights}


def test_measure_matches_a_numpy_recount():
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=48, max_position=32)
    module = SequenceClassifier(cfg, 3)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, 4, 16, 4), _batch(rng, 4, 16, 3)]  # the second has a padding row
    params = jax.jit(module.init)(jax.random.PRNGKey(0), batches[0]["input_ids"], batches[0]["attention_mask"])
    params = params["params"]
    encodings = ("offset", "sign_magnitude")  # two's complement: hand-checked in tests/hw/test_density.py
    got = measure_input_bits(classifier_apply(cfg, 3), params, batches, scales=("max",), encodings=encodings)
    assert got["examples"] == 7 and got["tokens"] == int(sum((b["attention_mask"] * b["weights"][:, None]).sum()
                                                             for b in batches))

    @jax.jit
    def dense_inputs(b):
        seen = {}

        def grab(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.Dense):
                seen[dense_key(context.module.path)] = args[0]
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(grab):
            module.apply({"params": params}, b["input_ids"], b["attention_mask"], b["token_type_ids"])
        return seen

    # numpy recount: every dense input, the real tokens / rows only, one max-abs scale per matrix
    inputs: dict[str, list[np.ndarray]] = {}
    for b in batches:
        for key, x in dense_inputs(b).items():
            x, keep = np.asarray(x), b["weights"] > 0
            if x.ndim == 3:
                keep = (b["attention_mask"] > 0) & keep[:, None]
            inputs.setdefault(key, []).append(x[keep])
    assert sorted(inputs) == sorted(got["densities"]["max"]["offset"]) and len(inputs) == 4 + 2 + 2
    for key, parts in inputs.items():
        x = np.concatenate(parts)
        scale = np.abs(x).max() / 127
        assert got["scales"]["max"][key] == pytest.approx(scale, rel=1e-6)
        for enc in encodings:
            want = densities_of(quantize(x, scale, 8), 8, enc)
            mine = got["densities"]["max"][enc][key]
            assert mine["density"] == pytest.approx(want["density"], abs=2e-3), (key, enc)
            np.testing.assert_allclose(mine["per_bit"], want["per_bit"], atol=2e-3)
