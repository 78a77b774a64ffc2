"""bfloat16 compute (BertConfig.compute_dtype): parameters stay float32, the encoder computes in bfloat16, the head
and the losses in float32; all-MiniLM-L6-v2 in bfloat16 stays within the stated tolerance of the PyTorch float32
reference; the equal-budget step trains in bfloat16 with float32 weights and moments."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError
from mgen_jax.model import load_pretrained
from mgen_jax.model.bert import BertConfig, BertEncoder, SequenceClassifier
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.search.budget import budget_optimizer, init_budget_state, make_budget_step

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz"
# bfloat16 keeps 8 significant bits: the last hidden state of MiniLM-L6 is about 1 % off float32 (Frobenius norm
# over real tokens), every token's direction within cosine 0.9999; the stated bounds leave a 2x margin
REL_TOLERANCE = 0.02
MIN_COSINE = 0.999
TINY = BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48, max_position=32,
                  compute_dtype="bfloat16")


def test_compute_dtype_is_validated():
    with pytest.raises(ConfigError, match="compute_dtype"):
        dataclasses.replace(TINY, compute_dtype="float16")
    assert TINY.dtype == jnp.bfloat16 and BertConfig().dtype == jnp.float32
    assert "compute_dtype" not in TINY.to_hf()  # a training choice, not part of the model's config.json


def test_parameters_float32_activations_bfloat16_outputs_float32():
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, (2, 6)), jnp.int32)
    mask = jnp.ones_like(ids)
    module = SequenceClassifier(TINY, 3)
    params = module.init(jax.random.PRNGKey(0), ids, mask)["params"]
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    hidden, units = BertEncoder(TINY).apply({"params": params["encoder"]}, ids, mask, output_unit_states=True)
    assert hidden.dtype == jnp.bfloat16 and all(u.dtype == jnp.bfloat16 for u in units)
    outputs = module.apply({"params": params}, ids, mask)
    assert outputs.dtype == jnp.float32
    grads = jax.grad(lambda p: jnp.sum(module.apply({"params": p}, ids, mask) ** 2))(params)
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("case", ["single", "pair", "padded_batch"])
def test_minilm_in_bfloat16_within_tolerance_of_the_float32_reference(case):
    reference = np.load(FIXTURE)
    model = load_pretrained("minilm-l6")
    ids, mask, types = reference[f"{case}/inputs"]
    expected = reference[f"{case}/last_hidden_state"]
    encoder = BertEncoder(dataclasses.replace(model.config, compute_dtype="bfloat16"))
    hidden = encoder.apply({"params": model.params}, ids, mask, types)
    assert hidden.dtype == jnp.bfloat16
    hidden = np.asarray(hidden, np.float32)
    real = mask.astype(bool)
    error = np.linalg.norm((hidden - expected)[real]) / np.linalg.norm(expected[real])
    cosine = (hidden * expected).sum(-1) / np.linalg.norm(hidden, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert 1e-4 < error <= REL_TOLERANCE  # above 1e-4: the computation did run in bfloat16 (float32 is ~1e-6 off)
    assert cosine[real].min() >= MIN_COSINE


def test_equal_budget_step_learns_in_bfloat16():
    """A tiny random BERT in bfloat16 fits a fixed batch of each of two tasks with the equal-budget step; weights and
    Adam moments stay float32; the first loss is that of the float32 model up to bfloat16 rounding."""
    tasks = [get_task("SST-2"), get_task("STS-B")]
    rng = np.random.default_rng(0)
    batches = [{"input_ids": jnp.asarray(rng.integers(1, 64, (8, 6)), jnp.int32),
                "token_type_ids": jnp.zeros((8, 6), jnp.int32), "attention_mask": jnp.ones((8, 6), jnp.int32),
                "labels": jnp.asarray(labels, jnp.float32), "weights": jnp.ones(8)}
               for labels in (rng.integers(0, 2, 8), rng.random(8) * 5)]
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = dataclasses.replace(TINY, compute_dtype=dtype, hidden_dropout=0.0, attention_dropout=0.0)
        model = MultiTaskModel(cfg, [t.num_labels for t in tasks])
        enc = BertEncoder(cfg).init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32))
        heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(2)]
        params = model.from_encoders(enc["params"], [enc["params"]] * 2, heads)
        tx = budget_optimizer(0.01)
        step, state = make_budget_step(model, tasks, tx), init_budget_state(params, tx)
        curve = []
        for k in range(40):
            t = k % 2
            state, loss = step(state, batches[t], jnp.int32(t), jnp.int32(2), jnp.float32(3e-3), jax.random.PRNGKey(0))
            curve.append(float(loss))
        losses[dtype] = np.asarray(curve)
        leaves = jax.tree.leaves((state.params, state.shared_opt, state.task_opt))
        assert {x.dtype for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
    bf16 = losses["bfloat16"]
    assert np.all(np.isfinite(bf16))
    np.testing.assert_allclose(bf16[:2], losses["float32"][:2], rtol=0.05)
    for t in range(2):  # each task's loss falls to under a third of its first value
        assert bf16[-2 + t] < bf16[t] / 3
