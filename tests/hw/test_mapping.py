"""Mapping and event counts against hand computations (DESIGN.md section 3 sanity figures)."""

import dataclasses

import numpy as np
import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.energy import ACTION_INDEX
from mgen_jax.hw.ops import model_parts, op_counts, part_coefficients, part_crossbars


def _energy_nj(spec, events):
    return {
        "adc": events.adc_conversions * spec.adc_conversion_energy_pj / 1e3,
        "crossbar": events.crossbar_activations * spec.crossbar_activation_energy_pj / 1e3,
        "dac": events.dac_drives * spec.dac_drive_energy_pj / 1e3,
    }


def test_384x384_on_isaac(isaac):
    m = hw.map_matrix(isaac, 384, 384)
    assert (m.row_blocks, m.col_blocks, m.crossbars) == (3, 12, 36)
    e = hw.matrix_events(isaac, 384, 384)
    assert e.crossbar_activations == 288
    assert e.adc_conversions == 36_864
    assert e.dac_drives == 36_864
    nj = _energy_nj(isaac, e)
    assert nj["adc"] == pytest.approx(57.6)
    assert nj["crossbar"] == pytest.approx(8.64)
    assert nj["dac"] == pytest.approx(14.4)


def test_768x768_on_isaac(isaac):
    e = hw.matrix_events(isaac, 768, 768)
    assert hw.map_matrix(isaac, 768, 768).crossbars == 144
    assert e.adc_conversions == 147_456
    nj = _energy_nj(isaac, e)
    assert nj["adc"] == pytest.approx(230.4)
    assert nj["crossbar"] == pytest.approx(34.56)
    assert nj["dac"] == pytest.approx(57.6)


def test_partial_blocks_and_switches(isaac):
    # 100 x 50: 200 used columns -> 2 column blocks, the last with 72 columns; one row block.
    m = hw.map_matrix(isaac, 100, 50)
    assert (m.row_blocks, m.col_blocks, m.used_columns, m.last_block_columns) == (1, 2, 200, 72)
    e = hw.matrix_events(isaac, 100, 50)
    assert e.adc_conversions == 8 * 1 * 200
    assert e.dac_drives == 8 * 2 * 100
    assert e.shift_add_ops == 8 * 1 * 200 and e.partial_sum_adds == 0
    assert e.buffer_accesses == 4 + 2  # ceil(800/256) + ceil(400/256)
    every = dataclasses.replace(isaac, adc_convert_all_columns=True)
    assert hw.matrix_events(every, 100, 50).adc_conversions == 8 * 1 * 2 * 128
    diff = dataclasses.replace(isaac, signed_encoding="differential")
    assert hw.map_matrix(diff, 100, 50).col_blocks == 4
    # 300 inputs: 3 row blocks -> 2 partial-sum additions per output.
    assert hw.matrix_events(isaac, 300, 10).partial_sum_adds == 2 * 10


def test_one_bit_cells_double_columns():
    spec = hw.load_spec("isaac-1bit")
    assert hw.map_matrix(spec, 384, 384).crossbars == 72


@pytest.mark.parametrize("k, n", [(0, 4), (4, -1), (2.5, 3)])
def test_bad_dims(isaac, k, n):
    with pytest.raises(ConfigError, match="dimension"):
        hw.map_matrix(isaac, k, n)


def test_minilm_crossbar_budget(isaac, minilm):
    parts = model_parts(isaac, minilm, (2,))
    per_layer = part_crossbars(isaac, parts.units[0]) + part_crossbars(isaac, parts.units[1])
    assert per_layer == 432
    encoder = sum(part_crossbars(isaac, ops) for ops in parts.units)
    assert encoder == 2592 and 8 * encoder == 20_736 > isaac.chip_crossbars


def test_attention_unit_counts_by_hand(isaac, minilm):
    """One attention block at n = 10 tokens, every action counted by hand."""
    n, h, heads = 10, 384, 12
    ops = model_parts(isaac, minilm, (2,)).units[0]
    counts = sum(op_counts(isaac, op, np.array([n])) for op in ops)[0]
    e = hw.matrix_events(isaac, h, h)
    expect = {
        "crossbar_activation": 4 * n * e.crossbar_activations,
        "adc_conversion": 4 * n * 36_864,
        "dac_drive": 4 * n * 36_864,
        "digital_mac": 2 * n * n * h,  # Q K^T and A V
        "digital_op": n * n * heads * 1 + n * h * (1 + 5),  # softmax + residual + LayerNorm
        "buffer_access": 4 * n * (12 + 12),
    }
    for action, value in expect.items():
        assert counts[ACTION_INDEX[action]] == value, action
    coef = part_coefficients(isaac, ops)
    assert np.array_equal(coef[0] + coef[1] * n + coef[2] * n * n, counts)


def test_head_matrices_run_once_per_sequence(isaac, minilm):
    ops = model_parts(isaac, minilm, (3,)).heads[0]
    c5 = sum(op_counts(isaac, op, np.array([5])) for op in ops)[0]
    c50 = sum(op_counts(isaac, op, np.array([50])) for op in ops)[0]
    changed = [a for a in ACTION_INDEX if c5[ACTION_INDEX[a]] != c50[ACTION_INDEX[a]]]
    assert changed == ["digital_op"]  # only the mean pooling (n x H adds) grows with n
    assert c50[ACTION_INDEX["digital_op"]] - c5[ACTION_INDEX["digital_op"]] == 45 * 384
    assert part_crossbars(isaac, ops) == 36 + 3  # pooler 384x384, classifier 384x3
