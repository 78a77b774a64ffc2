"""Our Flax BERT vs Hugging Face transformers' PyTorch BertModel on the same all-MiniLM-L6-v2 weights.

Two references: the committed fixture (tests/fixtures/minilm_reference.npz, written by
experiments/bert/make_bert_reference.py from PyTorch), and a live PyTorch run when torch is installed (CI installs it).
"""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from mgen_jax.model import load_pretrained

FIXTURE = Path(__file__).parents[1] / "fixtures" / "minilm_reference.npz"
CASES = ("single", "pair", "padded_batch")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def minilm_model():
    return load_pretrained("minilm-l6")


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


def _ours(model, inputs, params=None):
    return np.asarray(model(inputs[0], inputs[1], inputs[2], params=params))


@pytest.mark.parametrize("case", CASES)
def test_matches_pytorch_reference_fixture(minilm_model, reference, case):
    inputs, expected = reference[f"{case}/inputs"], reference[f"{case}/last_hidden_state"]
    assert np.abs(_ours(minilm_model, inputs) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("case", CASES)
def test_fixture_inputs_match_our_tokenizer(minilm_model, reference, case):
    from mgen_jax.data import encode_pairs

    a, b = list(reference[f"{case}/texts_a"]), list(reference[f"{case}/texts_b"]) or None
    ids, types = encode_pairs(minilm_model.tokenizer, a, b)
    inputs = reference[f"{case}/inputs"]
    for i, (row, row_types) in enumerate(zip(ids, types)):
        assert list(inputs[0, i, : len(row)]) == row and inputs[1, i].sum() == len(row)
        assert list(inputs[2, i, : len(row)]) == row_types


def test_fails_on_a_perturbed_weight(minilm_model, reference):
    params = jax.tree.map(lambda x: x, minilm_model.params)
    params["unit_7"]["output"]["kernel"] = params["unit_7"]["output"]["kernel"].at[0, 0].add(0.05)
    inputs, expected = reference["pair/inputs"], reference["pair/last_hidden_state"]
    assert np.abs(_ours(minilm_model, inputs, params) - expected).max() > TOLERANCE


def test_hidden_states_of_every_layer(minilm_model, reference):
    inputs = reference["single/inputs"]
    last, states = minilm_model(inputs[0], inputs[1], inputs[2], output_hidden_states=True)
    assert len(states) == minilm_model.config.num_layers + 1
    np.testing.assert_array_equal(np.asarray(states[-1]), np.asarray(last))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None,
                    reason="torch and transformers not installed (the 'reference' extra; CI installs both)")
@pytest.mark.parametrize("case", CASES)
def test_matches_live_pytorch(minilm_model, reference, case):
    import torch
    from transformers import BertModel

    torch_model = BertModel.from_pretrained(str(minilm_model.directory)).eval()
    inputs = reference[f"{case}/inputs"]
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.tensor(inputs[0]), attention_mask=torch.tensor(inputs[1]),
            token_type_ids=torch.tensor(inputs[2]),
        ).last_hidden_state.numpy()
    assert np.abs(_ours(minilm_model, inputs) - expected).max() <= TOLERANCE
