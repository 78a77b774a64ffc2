"""Base + compressed delta nodes (hw/delta.py): block grids, events and storage against hand counts, the plan file,
and the simulator's footprint and counts of a base + delta model against hand counts."""

import dataclasses
import json

import numpy as np
import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import (
    DeltaMatrix, DeltaPlan, DeltaUnit, delta_counts, delta_grid, delta_storage, grid_fields, load_delta_plan,
    plan_from_dict,
)
from mgen_jax.hw.energy import ACTION_INDEX, energy_per_action_pj
from mgen_jax.sim import simulate
from mgen_jax.workload import fixed_trace


def _counts(spec, k, n, bits, kept):
    c = delta_counts(spec, k, n, bits, kept)
    return {a: c[i] for a, i in ACTION_INDEX.items() if c[i]}


def test_grid_is_one_crossbar_per_block(isaac):
    g8, g4, g2 = (delta_grid(isaac, 384, 1536, b) for b in (8, 4, 2))
    assert (g8.weights_per_block, g4.weights_per_block, g2.weights_per_block) == (32, 64, 128)
    assert (g8.num_blocks, g4.num_blocks, g2.num_blocks) == (3 * 48, 3 * 24, 3 * 12)
    assert g8.num_blocks == hw.map_matrix(isaac, 384, 1536).crossbars  # full bits: the matrix's own mapping
    g6 = delta_grid(isaac, 96, 200, 6)  # 3 slices: 42 weights (126 columns) per crossbar, a partial last block
    assert (g6.weights_per_block, g6.col_blocks, list(g6.block_weights())) == (42, 5, [42, 42, 42, 42, 32])
    diff = dataclasses.replace(isaac, signed_encoding="differential")
    assert delta_grid(diff, 8, 8, 4).columns_per_weight == 4
    mask = g6.block_mask([1, 4])
    assert mask.sum() == 96 * 42 + 96 * 32 and mask[:, 42:84].all() and not mask[:, :42].any()


def test_delta_pass_hand_counts(isaac):
    # 384 x 384 at 4 bits: 3 x 6 blocks of 128 rows x 64 weights; blocks 0, 7, 17 lie in three row blocks and three
    # column blocks (0, 1, 5): 8 input bits x 3 crossbars; 8 x 3 x 128 conversions and shift-adds; 8 x 384 drives;
    # no partial sums; buffer 384 x 8 / 256 = 12 words in, 192 x 8 / 256 = 6 out; 6 flits; merge 2 x 192 ops
    assert _counts(isaac, 384, 384, 4, [0, 7, 17]) == {
        "crossbar_activation": 24, "cell_read": 8 * 3 * 128 * 128, "adc_conversion": 3072, "dac_drive": 3072,
        "input_latch": 3072, "shift_add": 3072, "buffer_access": 18, "router_hop": 6, "digital_op": 384}
    assert delta_storage(isaac, 384, 384, 4, [0, 7, 17]) == (3, 3 * 128 * 128)
    # 8 bits, column block 0 in all three row blocks: two partial-sum adds per output, 32 outputs covered
    got = _counts(isaac, 384, 384, 8, [0, 12, 24])
    assert got["partial_sum_add"] == 64 and got["buffer_access"] == 12 + 1 and got["digital_op"] == 64
    # a partial block: 96 rows x 72 weights at 2 bits (1 slice)
    assert _counts(isaac, 96, 200, 2, [1]) == {
        "crossbar_activation": 8, "cell_read": 8 * 96 * 72, "adc_conversion": 576, "dac_drive": 768,
        "input_latch": 768, "shift_add": 576, "buffer_access": 3 + 3, "router_hop": 3, "digital_op": 144}
    assert delta_storage(isaac, 96, 200, 2, [1]) == (1, 96 * 72)
    assert not delta_counts(isaac, 96, 200, 2, []).any() and delta_storage(isaac, 96, 200, 2, []) == (0, 0)
    every = dataclasses.replace(isaac, adc_convert_all_columns=True)
    assert _counts(every, 96, 200, 2, [1])["adc_conversion"] == 8 * 128


def test_every_block_at_full_bits_counts_the_matrix_plus_the_merge(isaac):
    k, n = 384, 1536
    full = delta_counts(isaac, k, n, 8, range(delta_grid(isaac, k, n, 8).num_blocks))
    matrix = hw.mapping.matrix_events(isaac, k, n).as_counts()
    matrix[ACTION_INDEX["digital_op"]] += 2 * n
    np.testing.assert_array_equal(full, matrix)


def test_bad_bits_and_blocks_name_the_field(isaac):
    with pytest.raises(ConfigError, match="delta_bits"):
        delta_grid(isaac, 8, 8, 1)
    with pytest.raises(ConfigError, match="delta_bits"):
        delta_grid(isaac, 8, 8, 9)
    with pytest.raises(ConfigError, match="kept_blocks must lie in 0..2"):
        delta_counts(isaac, 384, 32, 8, [3])
    with pytest.raises(ConfigError, match="sorted, unique"):
        delta_counts(isaac, 384, 32, 8, [1, 0])
    with pytest.raises(ConfigError, match="'base'"):
        DeltaUnit("finetuned", ())


def _minilm_plan(spec, branch_points, entries):
    """entries: {(t, u): (base, bits, kept fraction)} -> a plan keeping the first fraction of every matrix's blocks."""
    arch = hw.load_arch("minilm-l6")
    parts = hw.ops.model_parts(spec, arch, (2,) * len(branch_points))
    units = {}
    for (t, u), (base, bits, frac) in entries.items():
        mats = []
        for op in parts.units[u]:
            if isinstance(op, hw.ops.MatrixOp):
                blocks = delta_grid(spec, op.k, op.n, bits).num_blocks
                mats.append(DeltaMatrix(op.name, bits, tuple(range(int(frac * blocks)))))
        units[(t, u)] = DeltaUnit(base, tuple(mats))
    return DeltaPlan(tuple(branch_points), units, grid_fields(spec))


def test_footprint_of_base_plus_delta_models_by_hand(isaac, minilm):
    # MiniLM unit crossbars: attention 4 x 36 = 144, FFN 2 x 144 = 288; an independent task 6 x 432 = 2,592.
    # Task 0 stores unit 0 over the pretrained base with 1/4 of its blocks at 2 bits: 4 matrices x 9 blocks (384 x
    # 384 at 2 bits: 3 x 3 blocks of 128 x 128) x 1/4 -> 2 blocks each = 8 crossbars; task 1 the same at unit 0 and
    # at unit 1 (FFN: 384 x 1536 -> 3 x 12 = 36 blocks, 1536 x 384 -> 12 x 3 = 36; a quarter: 9 + 9 = 18).
    plan = _minilm_plan(isaac, (0, 0), {(0, 0): ("pretrained", 2, 0.25), (1, 0): ("pretrained", 2, 0.25),
                                        (1, 1): ("pretrained", 2, 0.25)})
    tree = hw.SharingTree.from_branch_points([0, 0], 12)
    plain = simulate(isaac, minilm, tree, fixed_trace(2, 10))
    got = simulate(isaac, minilm, tree, fixed_trace(2, 10), compression=plan)
    fp = got.footprint
    assert fp.delta_crossbars == 8 + 8 + 18
    assert fp.base_crossbars == 144 + 288  # each pretrained base stored once
    assert fp.crossbars == plain.footprint.crossbars - 2 * 144 - 288 + 34 + 144 + 288
    assert fp.crossbars_by_unit[0] == 8 + 8 + 144 and fp.crossbars_by_unit[1] == 288 + 18 + 288
    assert got.summary()["compressed_nodes"] == 3
    # a trunk base where the tree has a trunk node is that node (nothing more stored); where it has none, once
    plan = _minilm_plan(isaac, (2, 0), {(0, 3): ("trunk", 2, 0.25), (1, 0): ("trunk", 2, 0.25),
                                        (1, 3): ("trunk", 2, 0.25)})
    tree = hw.SharingTree.from_branch_points([2, 0], 12)
    fp = simulate(isaac, minilm, tree, fixed_trace(2, 10), compression=plan).footprint
    assert fp.base_crossbars == 288  # unit 3: no trunk node (b < 4); unit 0: the trunk node serves as base
    assert fp.delta_crossbars == 8 + 18 + 18
    plain = simulate(isaac, minilm, tree, fixed_trace(2, 10)).footprint
    assert fp.crossbars == plain.crossbars - 144 - 2 * 288 + 44 + 288


def test_energy_of_a_base_plus_delta_node_is_base_plus_delta_pass(isaac, minilm):
    """One compressed FFN copy: the simulator's energy grows by exactly n x the delta passes' counts x energy."""
    plan = _minilm_plan(isaac, (0,), {(0, 5): ("pretrained", 4, 0.5)})
    tree = hw.SharingTree.from_branch_points([0], 12)
    n = 37
    plain = simulate(isaac, minilm, tree, fixed_trace(1, n))
    got = simulate(isaac, minilm, tree, fixed_trace(1, n), compression=plan)
    entry = plan.units[(0, 5)]
    g_in, g_out = delta_grid(isaac, 384, 1536, 4), delta_grid(isaac, 1536, 384, 4)
    delta = delta_counts(isaac, 384, 1536, 4, entry.matrix("ffn_in").kept_blocks) + delta_counts(
        isaac, 1536, 384, 4, entry.matrix("ffn_out").kept_blocks)
    assert len(entry.matrix("ffn_in").kept_blocks) == g_in.num_blocks // 2 == 36
    assert len(entry.matrix("ffn_out").kept_blocks) == g_out.num_blocks // 2 == 36
    expected = plain.total_energy_j + n * float(delta @ energy_per_action_pj(isaac)) * 1e-12
    assert got.total_energy_j == pytest.approx(expected, rel=1e-12)
    assert got.energy_by_part_j["L3.ffn"] > plain.energy_by_part_j["L3.ffn"]
    assert got.energy_by_part_j["L3.attn"] == plain.energy_by_part_j["L3.attn"]
    # latency: one pass per weight set, nothing time-shared
    np.testing.assert_allclose(got.latency_per_request_s, plain.latency_per_request_s, rtol=1e-12)


def test_time_shared_base_latency(isaac, minilm):
    """Three tasks over one pretrained base at unit 0 stream 3 n tokens through it; the other units run in
    parallel copies (n tokens each)."""
    plan = _minilm_plan(isaac, (0, 0, 0), {(t, 0): ("pretrained", 2, 0.1) for t in range(3)})
    tree = hw.SharingTree.from_branch_points([0, 0, 0], 12)
    n = 20
    plain = simulate(isaac, minilm, tree, fixed_trace(3, n)).latency_per_request_s[0]
    got = simulate(isaac, minilm, tree, fixed_trace(3, n), compression=plan).latency_per_request_s[0]
    l0, l1 = hw.ops.part_latency_coefficients(isaac, hw.ops.model_parts(isaac, minilm, (2,)).units[0])
    assert got - plain == pytest.approx(2 * n * l1 * 1e-9, rel=1e-9)


def test_inert_entries_and_mismatched_trees(isaac, minilm):
    plan = _minilm_plan(isaac, (4, 4), {(0, 1): ("pretrained", 2, 0.5)})  # task 0 runs the trunk at unit 1
    tree = hw.SharingTree.from_branch_points([4, 4], 12)
    a = simulate(isaac, minilm, tree, fixed_trace(2, 9), compression=plan)
    b = simulate(isaac, minilm, tree, fixed_trace(2, 9))
    assert a.total_energy_j == b.total_energy_j and a.footprint.crossbars == b.footprint.crossbars
    with pytest.raises(ConfigError, match="branch points"):
        simulate(isaac, minilm, hw.SharingTree.from_branch_points([0, 0], 12), fixed_trace(2, 9), compression=plan)
    other = dataclasses.replace(isaac, name="isaac-1bit-cells", cell_bits=1)
    with pytest.raises(ConfigError, match="cell_bits"):
        simulate(other, minilm, tree, fixed_trace(2, 9), compression=plan)


def test_plan_file_round_trip_and_errors(isaac, tmp_path, random_plan, tiny_arch):
    plan = random_plan(isaac, tiny_arch, (1, 0, 3), seed=2)
    data = plan.to_dict()
    again = plan_from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data and again.branch_points == (1, 0, 3)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"plan": data}))
    assert load_delta_plan(path).to_dict() == data
    bad = json.loads(json.dumps(data))
    bad["deltas"][0]["base"] = "other"
    with pytest.raises(ConfigError, match=r"x.json: deltas\[0\].*'base'"):
        plan_from_dict(bad, source="x.json")
    bad = dict(data, format="something else")
    with pytest.raises(ConfigError, match="field 'format'"):
        plan_from_dict(bad, source="x.json")
    bad = json.loads(json.dumps(data))
    bad["deltas"].append(dict(bad["deltas"][0]))
    with pytest.raises(ConfigError, match="listed twice"):
        plan_from_dict(bad, source="x.json")
