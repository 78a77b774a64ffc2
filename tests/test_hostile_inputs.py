"""Hostile inputs (issue 35): every size that can blow up is refused before the work starts, no error message renders
an unbounded value, no name leaves its folder, every result is finite, malformed data is named, and no input ends in
a traceback or a silent wrong answer. One test per example of the issue; tests/test_hardening.py fuzzes the classes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mgen_jax import cli
from mgen_jax.errors import ConfigError, DataError

REPO = Path(__file__).parents[1]
QUICK_FT = str(REPO / "configs/finetune/quick.yaml")
QUICK_SEARCH = str(REPO / "configs/search/quick.yaml")


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """A YAML value that expands to width**levels elements ("billion laughs"), in a few hundred bytes."""
    items = ["&a0 [" + ", ".join(["x"] * width) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "[" + ", ".join(items) + "]"


def run(argv, capsys, *, limit_s: float = 60.0):
    """(exit code, stderr) of ``mgen argv``, which must end within ``limit_s`` and without a traceback; its stdout
    is left in ``run.out``."""
    start = time.perf_counter()
    code = cli.main(argv)
    took = time.perf_counter() - start
    captured = capsys.readouterr()
    run.out = captured.out
    assert took < limit_s, (argv, took)
    assert "Traceback" not in captured.err and len(captured.err) < 2000, captured.err[:3000]
    return code, captured.err


def hw_file(tmp_path, body: str) -> str:
    path = tmp_path / "hw.yaml"
    path.write_text(f"extends: {REPO / 'configs/hw/isaac.yaml'}\nname: variant\n{body}\n")
    return str(path)


# ----- bounded work -----------------------------------------------------------------------------------------------
def test_scheduler_orders_are_lazy_and_15_tasks_schedule_in_seconds(capsys):
    """The example of the issue: ``mgen schedule --tasks 15 --tokens 8 --hw isaac-half`` was killed at 18.6 GB."""
    from mgen_jax.hw import SharingTree
    from mgen_jax.hw.schedule import child_orders, count_child_orders

    tree = SharingTree.from_branch_points([0] * 15, 12)
    assert count_child_orders(tree) == 1_307_674_368_000  # 15!
    assert len(next(child_orders(tree))) == 1
    code, _ = run(["schedule", "--tasks", "15", "--tokens", "8", "--hw", "isaac-half", "--json"], capsys, limit_s=30)
    assert code == 0 and len(json.loads(run.out)["tasks"]) == 15


@pytest.mark.parametrize("argv, words", [
    (["simulate", "--tasks", "SST-2", "--tokens", "8", "--task-subsets", "SST-2:1", "--requests", "10000000000"],
     "--requests"),
    (["simulate", "--tasks", "1000000", "--tokens", "8"], "--tasks"),
    (["simulate", "--tasks", "2", "--tokens", "100000000000000000000000000"], "--tokens"),
    (["simulate", "--tasks", "2", "--tokens", "1" + "0" * 5000], "--tokens"),
    (["simulate", "--tasks", "2", "--tokens", "8", "--branch-points", "9" * 5000], "--branch-points"),
    (["cost", "--tasks", "2", "--tokens", "4096"], "positions"),
    (["schedule", "--tasks", "2", "--tokens", "8", "--task-subsets", "0:1", "--requests", "200000"], "schedule"),
    (["finetune", "--config", QUICK_FT, "--set", "seed=" + "9" * 30], "seed"),
    (["finetune", "--config", QUICK_FT, "--set", "max_length=" + "9" * 5000], "max_length"),
    (["finetune", "--config", QUICK_FT, "--seed", "9" * 30], "--seed"),
    (["finetune", "--config", QUICK_FT, "--set", "eval_batch_size=100000"], "eval_batch_size"),
    (["finetune", "--config", QUICK_FT, "--set", "buckets=[8, 100000000]"], "buckets"),
])
def test_sizes_and_integers_beyond_the_limits_exit_2(argv, words, capsys, tmp_path):
    if argv[0] == "finetune":
        argv = argv + ["--workdir", str(tmp_path / "w")]
    code, err = run(argv, capsys)
    assert code == 2 and words in err, err
    assert not (tmp_path / "w" / "checkpoint.msgpack").exists()


@pytest.mark.parametrize("where", ["finetune_file", "finetune_set", "search_file", "sweep_set", "hw_file", "hw_name"])
def test_yaml_alias_bombs_are_refused_quickly(where, tmp_path, capsys):
    """The example of the issue: a YAML alias bomb (9**10 elements) in any config field, --set included, exhausted
    memory while the type error formatted the value."""
    bomb = alias_bomb()
    work = ["--workdir", str(tmp_path / "w")]
    if where == "finetune_file":
        (tmp_path / "c.yaml").write_text(f"task: SST-2\nbuckets: {bomb}\n")
        argv = ["finetune", "--config", str(tmp_path / "c.yaml")] + work
    elif where == "finetune_set":
        argv = ["finetune", "--config", QUICK_FT, "--set", f"buckets={bomb}"] + work
    elif where == "search_file":
        (tmp_path / "s.yaml").write_text(f"extends: {QUICK_SEARCH}\nsearch:\n  lambdas: {bomb}\n")
        argv = ["sweep", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")] + work
    elif where == "sweep_set":
        argv = ["sweep", "--config", QUICK_SEARCH, "--set", f"tasks={bomb}", "--out", str(tmp_path / "o")] + work
    else:
        field = "cycle_ns" if where == "hw_file" else "name"
        path = tmp_path / "hw.yaml"
        path.write_text(f"extends: {REPO / 'configs/hw/isaac.yaml'}\n{field}: {bomb}\n")
        argv = ["simulate", "--hw", str(path), "--tasks", "2", "--tokens", "8"]
    code, err = run(argv, capsys, limit_s=30)
    assert code == 2 and "more than 100,000 elements" in err, err


@pytest.mark.parametrize("where", ["yaml_config", "set", "hw", "model_json", "plan_json", "density_json"])
def test_deep_nesting_is_refused(where, tmp_path, capsys):
    deep = "[" * 50_000 + "]" * 50_000
    if where == "yaml_config":
        (tmp_path / "c.yaml").write_text(f"task: SST-2\nbuckets: {deep}\n")
        argv = ["finetune", "--config", str(tmp_path / "c.yaml"), "--workdir", str(tmp_path / "w")]
    elif where == "set":
        argv = ["finetune", "--config", QUICK_FT, "--set", f"buckets={deep}", "--workdir", str(tmp_path / "w")]
    elif where == "hw":
        argv = ["simulate", "--hw", hw_file(tmp_path, f"cycle_ns: {deep}"), "--tasks", "2", "--tokens", "8"]
    else:
        (tmp_path / "x.json").write_text('{"a": ' + deep + "}")
        (tmp_path / "config.json").write_text('{"a": ' + deep + "}")
        flag = {"model_json": ["--model", str(tmp_path)], "plan_json": ["--compressed", str(tmp_path / "x.json")],
                "density_json": ["--input-densities", str(tmp_path / "x.json"), "--hw", "rram-32nm-sar"]}[where]
        argv = ["simulate", "--tasks", "2", "--tokens", "8"] + flag
    code, err = run(argv, capsys)
    assert code == 2 and "nested" in err, err


# ----- tracebacks the issue listed ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["5", "[a]", "{a: 1}", "null", "''"])
def test_hw_extends_that_is_not_a_name(value, tmp_path, capsys):
    (tmp_path / "hw.yaml").write_text(f"extends: {value}\nname: x\n")
    code, err = run(["simulate", "--hw", str(tmp_path / "hw.yaml"), "--tasks", "2", "--tokens", "8"], capsys)
    assert code == 2 and "'extends'" in err, err


@pytest.mark.parametrize("body, field", [("crossbar_rows: 100000000000000000000000000", "crossbar_rows"),
                                         ("tiles_per_chip: 100000000000000000000", "tiles_per_chip"),
                                         ("cell_bits: 64", "cell_bits"), ("buffer_bytes_per_tile: 1.0e+30", "buffer"),
                                         ("adc_conversion_energy_pj: 1.0e+308", "adc_conversion_energy_pj"),
                                         ("cycle_ns: 1.0e+300", "cycle_ns")])
def test_hardware_values_beyond_their_limits(body, field, tmp_path, capsys):
    """The example of the issue: an energy of 1e308 pJ gave Infinity and NaN in simulate --json, a matplotlib
    traceback in report and a NaN loss only after a sweep's warm-up: now every command refuses the spec."""
    path = hw_file(tmp_path, body)
    for argv in (["simulate", "--tasks", "2", "--tokens", "8", "--json"], ["cost", "--tasks", "2", "--tokens", "8"],
                 ["report", "--tasks", "SST-2,RTE", "--out", str(tmp_path / "out")]):
        code, err = run(argv + ["--hw", path], capsys)
        assert code == 2 and field in err, err
    assert not (tmp_path / "out").exists()
    from mgen_jax.search import load_search_config
    from mgen_jax.hw import load_spec

    with pytest.raises(ConfigError, match=field):
        load_spec(load_search_config(QUICK_SEARCH, hw=path).hw)


def test_every_result_is_finite_or_names_its_field():
    from mgen_jax.io import check_finite

    check_finite({"a": [1, 2.5, {"b": 3}]}, "result")
    with pytest.raises(ConfigError, match=r"result field 'breakdown\.adc\[1\]' is inf"):
        check_finite({"breakdown": {"adc": [1.0, float("inf")]}}, "result")
    with pytest.raises(ConfigError, match="'x' is nan"):
        check_finite({"x": float("nan")}, "result")


def test_truncated_weights_file(tmp_path, tiny_bert_dir, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 3])
    code, err = run(["finetune", "--config", QUICK_FT, "--model", str(model), "--workdir", str(tmp_path / "w")],
                    capsys)
    assert code == 2 and "model.safetensors" in err, err


def test_closed_stdout_fails_in_one_line():
    """The example of the issue: ``mgen simulate --json >&-`` ended in a traceback."""
    result = subprocess.run(f"{sys.executable} -m mgen_jax.cli simulate --tasks 2 --tokens 8 --json >&-", shell=True,
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "standard output is closed" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


CTRL_C = """
import os, signal, sys, threading, time
from mgen_jax import cli

signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal starts it (a background job inherits SIG_IGN)

def busy(args):
    def more():  # the user presses Ctrl-C twice more while the run winds down
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=more, daemon=True).start()
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)

cli.hardware.cmd_simulate = busy
sys.argv = ["mgen", "simulate"]
code = cli.main()
time.sleep(0.3)  # the two later interrupts arrive now
sys.exit(code)
"""


def test_three_quick_ctrl_c_end_quietly():
    result = subprocess.run([sys.executable, "-c", CTRL_C], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("interrupted") == 1, result.stderr


# ----- names that would escape their folder -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".hidden", "x" * 200, "a\\b", "bad\nname", ""])
def test_names_that_leave_their_folder_are_refused(name, tmp_path, capsys):
    """The example of the issue: a search config ``name: ../../../x`` wrote a whole run outside runs/, and
    ``mgen analyze --stem ../../x`` wrote outside --out."""
    from mgen_jax.search import load_search_config

    with pytest.raises(ConfigError, match="'name'"):
        load_search_config(QUICK_SEARCH, name=name)
    code, err = run(["analyze", "--tasks", "SST-2,RTE", "--stem", name, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "--stem" in err, err
    for command in (["simulate", "--tasks", "2", "--tokens", "8"], ["report", "--out", str(tmp_path / "out")]):
        code, err = run(command + ["--hw", _named_hw(tmp_path, name)], capsys)
        assert code == 2 and "'name'" in err, err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hw.yaml"]


def _named_hw(tmp_path, name: str) -> str:
    path = tmp_path / "hw.yaml"
    path.write_text(f"extends: {REPO / 'configs/hw/isaac.yaml'}\nname: {json.dumps(name)}\n")
    return str(path)


# ----- malformed data --------------------------------------------------------------------------------------------
def _glue_copy(tmp_path, glue_dir, task: str, rows: list[str] | None = None, header: str | None = None) -> Path:
    folder = tmp_path / "glue"
    (folder / task).mkdir(parents=True, exist_ok=True)
    lines = (Path(glue_dir) / task / "dev.tsv").read_text(encoding="utf-8").splitlines()
    out = [header if header is not None else lines[0]] + (rows if rows is not None else lines[1:])
    (folder / task / "dev.tsv").write_text("\n".join(out) + "\n", encoding="utf-8")
    return folder


def test_a_header_naming_a_column_twice(tmp_path, glue_dir):
    """The example of the issue: a dev.tsv whose header names ``sentence`` twice was read from the wrong column."""
    from mgen_jax.data.glue import load_split

    rows = [f"x\t{line}" for line in (Path(glue_dir) / "SST-2/dev.tsv").read_text().splitlines()[1:]]
    folder = _glue_copy(tmp_path, glue_dir, "SST-2", rows, header="sentence\tsentence\tlabel")
    with pytest.raises(DataError, match=r"dev.tsv:1: header names column\(s\) \['sentence'\] more than once"):
        load_split("SST-2", "dev", glue_dir=folder)


@pytest.mark.parametrize("task, row, words", [
    ("SST-2", "   \t1", r"dev.tsv:2: blank text in column 'sentence'"),
    ("RTE", "0\tA premise.\t \tentailment", r"dev.tsv:2: blank text in column 'sentence2'"),
    ("STS-B", "0\tg\tf\t2012\t0\tn\tn\tA man.\tA man.\t99", r"dev.tsv:2: score '99' is outside STS-B's range"),
    ("STS-B", "0\tg\tf\t2012\t0\tn\tn\tA man.\tA man.\t-7", r"dev.tsv:2: score '-7' is outside STS-B's range"),
])
def test_blank_text_and_scores_out_of_range_name_file_and_line(task, row, words, tmp_path, glue_dir):
    from mgen_jax.data.glue import load_split

    rows = (Path(glue_dir) / task / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    folder = _glue_copy(tmp_path, glue_dir, task, [row] + rows[1:])
    with pytest.raises(DataError, match=words):
        load_split(task, "dev", glue_dir=folder)


def test_a_workload_smaller_than_asked_for_says_so(tmp_path, glue_dir, capsys):
    """The example of the issue: a 3-row file became a 1-request workload with no word."""
    rows = (Path(glue_dir) / "QNLI/dev.tsv").read_text(encoding="utf-8").splitlines()[1:4]
    folder = _glue_copy(tmp_path, glue_dir, "QNLI", rows)
    code, err = run(["simulate", "--tasks", "QNLI", "--glue-dir", str(folder), "--json"], capsys)
    assert code == 0, err
    out = json.loads(run.out)
    assert "1 requests" in out["workload"] and "smaller than documented" in out["workload"]
    rows = rows[:1]
    folder = _glue_copy(tmp_path, glue_dir, "QNLI", rows)
    code, err = run(["simulate", "--tasks", "QNLI", "--glue-dir", str(folder)], capsys)
    assert code == 2 and "too few to split" in err, err


# ----- small silent answers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--task-subsets", "SST-2:0.5,SST-2+RTE:0.5", "--requests", "1"],
     "--requests"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--task-subsets", "SST-2:0.3333,SST-2+RTE:0.6667", "--requests", "3"],
     "--requests"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--input-densities",
      str(REPO / "experiments/results/input_density_minilm-l6_glue5.json")], "--input-densities"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--seed", "5"], "--seed"),
    (["--tasks", "SST-2,RTE", "--seed", "5"], "--seed"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--requests", "5"], "--requests"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--max-length", "64"], "--max-length"),
    (["--tasks", "SST-2,RTE", "--tokens", "64", "--length-tasks", "CoLA"], "--length-tasks"),
    (["--tasks", "SST-2,SST-2", "--tokens", "64"], "more than once"),
    (["--tasks", "SST-2,sst2", "--tokens", "64"], "more than once"),
    (["--tasks", "SST-2", "--tokens", "600"], "positions"),
    (["--tasks", "SST-2", "--max-length", "600"], "positions"),
])
def test_flags_that_would_be_ignored_or_give_a_wrong_answer(argv, words, capsys):
    for command in ("simulate", "cost"):
        code, err = run([command] + argv, capsys)
        assert code == 2 and words in err, err


def test_requests_in_exact_proportion_are_still_accepted(capsys):
    code, _ = run(["simulate", "--tasks", "SST-2,RTE", "--tokens", "64", "--task-subsets", "SST-2:0.5,SST-2+RTE:0.5",
                   "--requests", "2", "--json"], capsys)
    assert code == 0 and "2 requests with task sets in exact proportion" in json.loads(run.out)["workload"]


def test_analyze_with_one_task_is_refused(tmp_path, capsys):
    """The example of the issue: ``mgen analyze`` with one task reported a pairwise CKA of 1.0."""
    code, err = run(["analyze", "--tasks", "SST-2", "--out", str(tmp_path)], capsys)
    assert code == 2 and "at least two tasks" in err, err
    code, err = run(["analyze", "--tasks", "SST-2,sst2", "--out", str(tmp_path)], capsys)
    assert code == 2 and "twice" in err, err


def test_the_same_bad_output_path_exits_2_in_every_command(tmp_path, capsys):
    """The example of the issue: the same bad output path exited 2 in one command and 1 in another."""
    (tmp_path / "afile").write_text("x")
    bad = str(tmp_path / "afile" / "sub")
    for argv in (["report", "--tasks", "SST-2,RTE", "--out", bad],
                 ["analyze", "--tasks", "SST-2,RTE", "--out", bad],
                 ["export", "--run", str(tmp_path), "--out", bad],
                 ["compress", "--source", str(tmp_path), "--out", bad],
                 ["finetune", "--config", QUICK_FT, "--workdir", bad],
                 ["sweep", "--config", QUICK_SEARCH, "--workdir", str(tmp_path / "w"), "--out", bad]):
        code, err = run(argv, capsys)
        assert code == 2 and str(tmp_path / "afile") in err, (argv, err)


@pytest.mark.parametrize("model, words", [("bert-base", "36 missing"), ("tiny", "24 extra")])
def test_densities_measured_on_another_model(model, words, tiny_bert_dir, capsys):
    densities = str(REPO / "experiments/results/input_density_minilm-l6_glue5.json")
    argv = ["simulate", "--hw", "rram-32nm-sar", "--tasks", "2", "--tokens", "8", "--input-densities", densities]
    code, err = run(argv + ["--model", str(tiny_bert_dir) if model == "tiny" else model], capsys)
    assert code == 2 and "measured on another model" in err and words in err, err
    code, err = run(argv, capsys)
    assert code == 0, err


def test_a_fifo_as_a_config_file_does_not_block(tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "c.yaml")
    code, err = run(["finetune", "--config", str(tmp_path / "c.yaml"), "--workdir", str(tmp_path / "w")], capsys,
                    limit_s=20)
    assert code == 2 and "not a regular file" in err, err


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["sources"]["mean"]["encodings"]["offset"].update({"L1.attn/key": "x"}), "not a record"),
    (lambda d: d.update(input_bits="eight"), "'input_bits'"),
    (lambda d: d["sources"].update(mean=[1]), "no 'encodings'"),
    (lambda d: d["sources"]["mean"]["encodings"]["offset"]["L1.attn/key"].update(density=float("nan")), "[0, 1]"),
])
def test_malformed_density_files(edit, words, tmp_path, capsys):
    data = json.loads((REPO / "experiments/results/input_density_minilm-l6_glue5.json").read_text())
    edit(data)
    (tmp_path / "d.json").write_text(json.dumps(data))
    code, err = run(["simulate", "--hw", "rram-32nm-sar", "--tasks", "2", "--tokens", "8", "--input-densities",
                     str(tmp_path / "d.json")], capsys)
    assert code == 2 and words in err, err


def test_an_extends_chain_is_bounded(tmp_path, capsys):
    (tmp_path / "c0.yaml").write_text(f"extends: {REPO / 'configs/hw/isaac.yaml'}\nname: c0\n")
    for i in range(1, 200):
        (tmp_path / f"c{i}.yaml").write_text(f"extends: c{i - 1}.yaml\nname: c{i}\n")
    code, err = run(["simulate", "--hw", str(tmp_path / "c199.yaml"), "--tasks", "2", "--tokens", "8"], capsys)
    assert code == 2 and "'extends' chain is longer than 32" in err, err
    code, err = run(["simulate", "--hw", str(tmp_path / "c20.yaml"), "--tasks", "2", "--tokens", "8"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("text, words", [("0:0.5," * 5000, "at most 4,096"), ("0:0.5,0:0.5", "listed twice"),
                                         ("0:0.5,task0:0.5", "listed twice"), ("x" * 100_000 + ":1", "unknown task"),
                                         ("0:0.2,1:0.2,0+1:0.2" + "," * 100_000, "must sum to 1")])
def test_task_subsets_are_bounded_and_never_merged_silently(text, words, capsys):
    code, err = run(["simulate", "--tasks", "2", "--tokens", "8", "--task-subsets", text], capsys)
    assert code == 2 and words in err, err


def test_a_config_naming_a_key_twice(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("task: SST-2\nepochs: 1\ntask: CoLA\n")
    code, err = run(["finetune", "--config", str(tmp_path / "c.yaml"), "--workdir", str(tmp_path / "w")], capsys)
    assert code == 2 and "found the key 'task' twice" in err, err
    from mgen_jax.io import parse_yaml

    assert parse_yaml("b: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "merge")["c"] == {"x": 3, "y": 2}


def test_control_characters_are_blank_text(tmp_path, glue_dir):
    from mgen_jax.data.glue import load_split

    folder = _glue_copy(tmp_path, glue_dir, "SST-2", ["\x01\x02\u200b\t1", "good\t0"])
    with pytest.raises(DataError, match=r"dev.tsv:2: blank text"):
        load_split("SST-2", "dev", glue_dir=folder)


@pytest.mark.parametrize("flag, value, words", [("--budgets", "0.5," * 1000, "'budgets'"),
                                                ("--refine-steps", str(2**53), "'refine_steps'"),
                                                ("--calibration-rows", str(2**40), "'calibration_rows'"),
                                                ("--bit-levels", "2," * 100, "'bit_levels'")])
def test_compress_settings_are_bounded(flag, value, words, tmp_path, capsys):
    code, err = run(["compress", "--source", str(tmp_path), "--out", str(tmp_path / "o"), f"{flag}={value}"], capsys)
    assert code == 2 and words in err, err


def test_epochs_beyond_any_run_are_refused_without_printing_the_step_count(tmp_path, glue_dir, tiny_bert_dir,
                                                                            capsys):
    code, err = run(["finetune", "--config", QUICK_FT, "--model", str(tiny_bert_dir), "--epochs", "1e300",
                     "--workdir", str(tmp_path / "w"), "--glue-dir", str(glue_dir)], capsys)
    assert code == 2 and "'epochs' (1e+300) makes more than" in err and len(err) < 300, err


@pytest.mark.parametrize("config", ['{"nope": 1}', '{"config": [1]}', '{"config": {"task": 5, "model": "x"}}',
                                    '{"config": {"task": "SST-2"}}'])
@pytest.mark.parametrize("command", ["export", "compress"])
def test_run_folders_with_foreign_records(config, command, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(config)
    (tmp_path / "run" / "final_params.msgpack").write_bytes(b"\x80")  # an empty msgpack map
    argv = {"export": ["export", "--run", str(tmp_path / "run")],
            "compress": ["compress", "--source", str(tmp_path / "run")]}[command]
    code, err = run(argv + ["--out", str(tmp_path / "out")], capsys)
    assert code == 2 and (str(tmp_path / "run") in err or "pretrained model 'x' not found" in err), err


def test_compress_tasks_named_twice(tmp_path, capsys):
    code, err = run(["compress", "--source", str(tmp_path), "--out", str(tmp_path / "o"), "--tasks", "SST-2,sst2"],
                    capsys)
    assert code == 2 and "twice" in err, err


def test_every_error_message_is_cut(capsys):
    """A validation that quotes a value whole (here a search config's string field) still prints a bounded line."""
    code, err = run(["sweep", "--config", QUICK_SEARCH, "--set", "pooling=" + "x" * 400_000, "--workdir", "/nonexistent"],
                    capsys)
    assert code == 2 and "'pooling'" in err and "characters cut" in err and len(err) < 1200, err[:2000]
    from mgen_jax.io import cut_message

    assert cut_message("x" * 10) == "x" * 10 and len(cut_message("y" * 10**6)) < 1100
