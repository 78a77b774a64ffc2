import json

import pytest

from mgen_jax.cli import build_parser, main

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


def test_report_writes_json_and_png(tmp_path, capsys, glue_dir, monkeypatch):
    """Its --json prints the record it writes; the files go to runs/results by default (never the committed
    experiments/results); the "wrote" line is on stderr, as in every command."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "report", "--tasks", "MRPC,RTE", "--glue-dir", str(glue_dir), "--json")
    assert code == 0
    written = tmp_path / "runs/results/breakdown_isaac_minilm-l6_2tasks.json"
    record = json.loads(written.read_text())
    assert json.loads(out) == record and "wrote" not in out
    png = written.with_suffix(".png")
    assert err.strip() == f"wrote {written.relative_to(tmp_path)} and {png.relative_to(tmp_path)}"
    rows = record["models"]
    assert rows["independent"]["energy_per_request_j"] > 1.9 * rows["fully shared"]["energy_per_request_j"]
    for row in rows.values():
        assert row["cost_model_energy_per_request_j"] == pytest.approx(row["energy_per_request_j"], rel=1e-6)
    assert png.stat().st_size > 10_000
    code, out, err = _run(capsys, "report", "--tasks", "MRPC,RTE", "--glue-dir", str(glue_dir), "--out", "elsewhere")
    assert code == 0 and "independent / fully shared" in out and err.startswith("wrote elsewhere/breakdown_")


def test_schedule_command_compares_solvers(capsys):
    args = ["schedule", "--tasks", "8", "--tokens", "32", "--branch-points", "0", "--hw", "isaac-half",
            "--solver", "all", "--json"]
    code, out, _ = _run(capsys, *args)
    assert code == 0
    results = json.loads(out)
    assert list(results) == ["request-major", "task-major", "fast", "exact"]
    assert "8 tasks" in results.pop("exact")["skipped"]  # over the exact solver's limits: the output says so
    for r in results.values():
        assert all(k in r for k in REQUIRED) and r["schedule"]["loads"] > 0  # 8 encoders need swapping
        assert r["solver_cost"]["energy_j"] == pytest.approx(
            (r["breakdown_per_request_j"]["write"] + r["breakdown_per_request_j"]["dram"]) * r["requests"], rel=1e-9)
    assert results["fast"]["energy_per_request_j"] <= min(
        results[m]["energy_per_request_j"] for m in ("request-major", "task-major"))
    code, _, err = _run(capsys, "schedule", "--tasks", "2", "--tokens", "8", "--buffer-bytes", "0")
    assert code == 2 and "buffer" in err


def test_schedule_all_runs_exact_where_it_can(capsys):
    """--solver all is all of them: exact too on a 2-task instance (its optimum no worse than any other's), and
    where the instance is too large for exact, the output says so."""
    code, out, _ = _run(capsys, "schedule", "--tasks", "2", "--tokens", "8", "--task-subsets", "0:0.5,0+1:0.5",
                        "--requests", "4", "--hw", "isaac-half", "--solver", "all", "--json")
    results = json.loads(out)
    assert code == 0 and list(results) == ["request-major", "task-major", "fast", "exact"]
    assert results["exact"]["schedule_plan"] and results["exact"]["candidates_evaluated"] >= 4
    assert results["exact"]["solver_cost"]["energy_j"] <= min(r["solver_cost"]["energy_j"] for r in results.values())
    code, out, _ = _run(capsys, "schedule", "--tasks", "2", "--tokens", "8", "--task-subsets", "0:0.5,0+1:0.5",
                        "--requests", "20", "--solver", "all")
    assert code == 0 and "mgen schedule: exact: not run (exact solver: instance too large" in out
    assert out.count("energy per request") == 3


def _flag_actions(parser, seen):
    """Every option string in the parser tree -> the ids of the argparse actions that declare it."""
    for action in parser._actions:
        for flag in action.option_strings:
            seen.setdefault(flag, set()).add(id(action))
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict):
                _flag_actions(action.choices[sub], seen)
    return seen


def test_no_flag_is_declared_twice():
    """A flag that several commands take is one declaration (a shared parent parser), not a copy per command."""
    parser = build_parser()
    seen = _flag_actions(parser, {})
    twice = {flag: len(ids) for flag, ids in seen.items() if len(ids) > 1 and flag not in ("-h", "--help")}
    assert not twice, twice
    commands = parser._subparsers._group_actions[0].choices
    assert len(commands) == 12 and all(c in seen for c in ("--glue-dir", "--json", "--out", "--seed", "--tasks"))
    takes = lambda flag: sorted(name for name, p in commands.items() if flag in p._option_string_actions)
    assert takes("--json") == sorted(commands)
    assert takes("--glue-dir") == ["analyze", "compress", "cost", "demo", "finetune", "front", "report", "schedule", "search",
                                   "simulate", "sweep"]


@pytest.mark.parametrize("argv", [["export", "--run"], ["compress", "--source"]])
def test_export_and_compress_need_out(capsys, tmp_path, argv):
    code, _, err = _run(capsys, *argv, str(tmp_path))
    assert code == 2 and "required: --out" in err and "Traceback" not in err
