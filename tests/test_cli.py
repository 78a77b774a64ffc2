import json

import pytest

from mgen_jax.cli import headline_line, main

REQUIRED = ("energy_per_request_j", "breakdown_per_request_j", "crossbars", "area_mm2", "latency_per_request_s")


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_and_cost_agree_on_fixed_length(capsys):
    args = ["--tasks", "3", "--branch-points", "2,6,12", "--tokens", "40", "--json"]
    code, out, _ = _run(capsys, "simulate", *args)
    assert code == 0
    sim = json.loads(out)
    code, out, _ = _run(capsys, "cost", *args)
    est = json.loads(out)
    for record in (sim, est):
        assert all(k in record for k in REQUIRED)
    assert est["energy_per_request_j"] == pytest.approx(sim["energy_per_request_j"], rel=1e-6)
    assert est["crossbars"] == sim["crossbars"] and est["area_mm2"] == pytest.approx(sim["area_mm2"])
    assert sum(sim["breakdown_per_request_j"].values()) == pytest.approx(sim["energy_per_request_j"])


def test_real_lengths_and_subsets(capsys, glue_dir):
    args = ["--tasks", "MRPC,RTE", "--glue-dir", str(glue_dir), "--task-subsets", "MRPC:0.5,MRPC+RTE:0.5", "--json"]
    code, out, _ = _run(capsys, "simulate", *args)
    sim = json.loads(out)
    assert code == 0 and sim["requests"] == 408 + 277
    code, out, _ = _run(capsys, "cost", *args)
    est = json.loads(out)
    # The simulator draws task sets per request; the cost model uses the distribution itself.
    assert est["energy_per_request_j"] == pytest.approx(sim["energy_per_request_j"], rel=0.05)


def test_human_readable_table(capsys):
    code, out, _ = _run(capsys, "simulate", "--tasks", "2", "--tokens", "16")
    assert code == 0 and "energy per request" in out and "adc" in out and "crossbars" in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["simulate", "--hw", "nochip", "--tokens", "8"], "not found"),
        (["cost", "--tasks", "2", "--branch-points", "1,2,3", "--tokens", "8"], "3 values for 2 tasks"),
        (["cost", "--tasks", "2", "--branch-points", "13", "--tokens", "8"], "out of range 0..12"),
        (["simulate", "--tasks", "2"], "give --tokens N"),
        (["simulate", "--tasks", "SST-2,SQuAD", "--tokens", "8"], "unknown GLUE task"),
        (["simulate", "--tasks", "2", "--tokens", "0"], "--tokens"),
    ],
)
def test_bad_inputs_exit_2_with_a_message(capsys, argv, words):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and words in err


def test_report_writes_json_and_png(tmp_path, capsys, glue_dir):
    code, out, _ = _run(capsys, "report", "--tasks", "MRPC,RTE", "--glue-dir", str(glue_dir), "--out", str(tmp_path))
    assert code == 0 and "independent / fully shared" in out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    rows = record["models"]
    assert rows["independent"]["energy_per_request_j"] > 1.9 * rows["fully shared"]["energy_per_request_j"]
    for row in rows.values():
        assert row["cost_model_energy_per_request_j"] == pytest.approx(row["energy_per_request_j"], rel=1e-6)
    assert next(tmp_path.glob("*.png")).stat().st_size > 10_000


def test_schedule_command_compares_solvers(capsys):
    args = ["schedule", "--tasks", "8", "--tokens", "32", "--branch-points", "0", "--hw", "isaac-half",
            "--solver", "all", "--json"]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    results = json.loads(out)
    assert set(results) == {"request-major", "task-major", "fast"}
    for r in results.values():
        assert all(k in r for k in REQUIRED) and r["schedule"]["loads"] > 0  # 8 encoders need swapping
        assert r["solver_cost"]["energy_j"] == pytest.approx(
            (r["breakdown_per_request_j"]["write"] + r["breakdown_per_request_j"]["dram"]) * r["requests"], rel=1e-9)
    assert results["fast"]["energy_per_request_j"] <= min(
        results[m]["energy_per_request_j"] for m in ("request-major", "task-major"))
    code, _, err = _run(capsys, "schedule", "--tasks", "2", "--tokens", "8", "--buffer-bytes", "0")
    assert code == 2 and "buffer" in err


def test_headline_line_says_above_or_below():
    claim = {"chosen_on": "heldout", "label": "budget 0.5000", "seeds": [0, 1, 2], "efficiency": 2.044,
             "independent_seeds": [0, 1, 2], "dev_mean_score": 69.79}
    goal = {"met": False}
    above = headline_line({"claim": claim | {"drop_points": -0.55}, "goal_3x_within_1_point": goal})
    below = headline_line({"claim": claim | {"drop_points": 1.25}, "goal_3x_within_1_point": goal})
    assert "2.04x at 0.55 points above" in above and "3 seeds" in above and "goal met: False" in above
    assert "1.25 points below" in below
    assert headline_line({"claim": claim | {"dev_mean_score": None}}) is None
    assert headline_line({"claim": None}) is None
