import jax
import numpy as np
import pytest

from mgen_jax.analysis import analyze, linear_cka, relative_weight_change
from mgen_jax.model import load_pretrained


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)  # rotation, scale and shift invariant
    assert linear_cka(x, rng.normal(size=(500, 20))) < 0.1


def test_relative_weight_change_by_hand():
    base = {"unit_0": {"k": np.array([3.0, 4.0])}, "unit_1": {"k": np.array([1.0, 0.0])}}
    tuned = {"unit_0": {"k": np.array([3.0, 4.0])}, "unit_1": {"k": np.array([1.0, 1.0])}}
    assert relative_weight_change(base, tuned, 2).tolist() == [0.0, 1.0]


def test_analysis_sees_an_untouched_and_a_perturbed_model(glue_dir):
    params = load_pretrained("minilm-l6").params
    noisy = jax.tree.map(lambda x: x + 0.05 * np.random.default_rng(0).normal(size=x.shape).astype(x.dtype), params)
    record = analyze({"SST-2": params, "MRPC": noisy}, per_task=4, glue_dir=glue_dir)
    assert record["relative_weight_change"]["SST-2"] == [0.0] * 12
    assert min(record["relative_weight_change"]["MRPC"]) > 0.01
    assert record["cka_to_pretrained"]["SST-2"] == pytest.approx([1.0] * 12)
    assert record["cka_to_pretrained"]["MRPC"][-1] < 0.99
    assert len(record["pairwise_cka"]) == 12 and record["units"][0] == "L1.attn"
