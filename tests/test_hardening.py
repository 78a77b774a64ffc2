"""Bad input never gives a traceback or a silent wrong answer, and a kill leaves nothing behind (issue 18).

1. Property-based: every field of every shipped config and hardware preset is mutated (wrong type, negative, zero,
   NaN, infinity, null, missing, an unknown extra field, non-UTF-8 bytes) and loaded; every CLI command gets bad values
   for its flags. The loaders and ``mgen`` must either accept the value or raise a ConfigError/exit 2 whose message
   names the field (or the file), never another exception; mutations that can never be valid must be rejected.
2. The examples the issue lists, one test each.
3. Crash safety: a run killed (SIGKILL) inside a checkpoint write leaves a temporary file that the next run removes,
   and it resumes to the same result.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgen_jax import cli, hw
from mgen_jax.errors import ConfigError, DataError, MgenError
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.search.config import SearchConfig, load_search_config
from mgen_jax.search.config_file import SECTION_OF
from mgen_jax.train.config import FinetuneConfig, load_config

REPO = Path(__file__).parents[1]
KINDS = ("text", "mapping", "negative", "zero", "nan", "inf", "null", "missing", "extra", "non_utf8")
FUZZ = settings(max_examples=int(os.environ.get("MGEN_FUZZ_EXAMPLES", 120)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SHIPPED = {
    "finetune": (sorted((REPO / "configs/finetune").glob("*.yaml")), FinetuneConfig, load_config),
    "search": (sorted((REPO / "configs/search").rglob("*.yaml")), SearchConfig, load_search_config),
    "hw": (sorted((REPO / "configs/hw").glob("*.yaml")), HardwareSpec, hw.load_spec),
}


def _mutate(values: dict, field: str, kind: str):
    values = dict(values)
    if kind == "missing":
        values.pop(field, None)
    elif kind == "extra":
        values["no_such_field_xyz"] = 1
    elif kind != "non_utf8":
        values[field] = {"text": "abc", "mapping": {"a": 1}, "negative": -1, "zero": 0, "nan": float("nan"),
                         "inf": float("inf"), "null": None}[kind]
    return values


def _numeric(tp) -> bool:
    args = typing.get_args(tp) or (tp,)
    return any(a in (int, float) for a in args) and not any(typing.get_origin(a) in (tuple, dict) for a in args)


@FUZZ
@given(data=st.data())
def test_every_field_of_every_shipped_config(tmp_path_factory, data):
    group = data.draw(st.sampled_from(sorted(SHIPPED)))
    paths, cls, load = SHIPPED[group]
    path = data.draw(st.sampled_from(paths))
    values = yaml.safe_load(path.read_text()) or {}
    hints = typing.get_type_hints(cls)
    field = data.draw(st.sampled_from(sorted(hints)))
    kind = data.draw(st.sampled_from(KINDS))
    target = tmp_path_factory.mktemp("fuzz") / path.name
    section = SECTION_OF.get(field) if group == "search" else None  # a search config's fields are in sections
    if section is None:
        mutated = _mutate(values, field, kind)
    else:
        mutated = dict(values, **{section: _mutate(values.get(section) or {}, field, kind)})
    if "extends" in mutated:  # it names a file beside it (search) or a preset: point it at the shipped one
        mutated["extends"] = str(path.parent / mutated["extends"]) if group == "search" else \
            str(REPO / "configs/hw" / f"{mutated['extends']}.yaml")
    if kind == "non_utf8":
        target.write_bytes(yaml.safe_dump(mutated).encode() + b"# \xff\xfe broken\n")
    else:
        target.write_text(yaml.safe_dump(mutated, allow_unicode=True))
    try:
        load(target)
        accepted = True
    except (ConfigError, DataError) as exc:
        accepted = False
        message = str(exc)
        if kind == "non_utf8":
            assert "UTF-8" in message and str(target) in message, message
        elif kind == "extra":
            assert "no_such_field_xyz" in message, message
        else:
            assert f"'{field}'" in message or field in message, (field, kind, message)
    tp = hints[field]
    optional = type(None) in typing.get_args(tp)
    must_reject = kind in ("non_utf8", "extra") or (
        kind in ("nan", "inf", "negative") and _numeric(tp)) or (kind == "null" and not optional) or (
        kind == "mapping" and typing.get_origin(tp) is not dict and dict not in [typing.get_origin(a) for a in
                                                                               typing.get_args(tp)])
    assert not (must_reject and accepted), (path.name, field, kind)


FLAG_CASES = [
    (["simulate", "--tokens"], ["0", "-3", "abc", "nan", "1.5"]),
    (["simulate", "--max-length"], ["0", "-1", "x"]),
    (["simulate", "--seed"], ["-1", "abc", "2.5"]),
    (["simulate", "--requests"], ["0", "-4", "many"]),
    (["simulate", "--branch-points"], ["-1", "13", "a,b", "1,2,3", ""]),
    (["simulate", "--tasks"], ["0", "NOPE", ",", "-2"]),
    (["simulate", "--task-subsets"], ["SST-2:2", "SST-2", "X:0.5", "SST-2:abc", "SST-2:nan"]),
    (["simulate", "--hw"], ["no-such-preset", "/no/such/file.yaml"]),
    (["cost", "--model"], ["no-such-model"]),
    (["schedule", "--buffer-bytes"], ["nan", "-1", "inf", "abc"]),
    (["schedule", "--solver"], ["magic"]),
    (["report", "--max-length"], ["0", "abc"]),
    (["finetune", "--epochs"], ["0", "-1", "nan", "inf"]),
    (["finetune", "--learning-rate"], ["0", "-1e-4", "nan"]),
    (["finetune", "--batch-size"], ["0", "-8", "3.5"]),
    (["finetune", "--seed"], ["-1", "x"]),
    (["finetune", "--max-train-examples"], ["0", "-5"]),
    (["finetune", "--set"], ["learning_rate=5", "epochs=nan", "seed=-1", "buckets=[a, b]", "nofield=1", "novalue"]),
    (["search", "--lambda"], ["-1", "nan", "inf", "x"]),
    (["sweep", "--set"], ["max_dev_per_task=-5", "tasks=SST-2", "seed=abc", "lambdas=[nan]", "heldout_fraction=2"]),
    (["analyze", "--per-task"], ["0", "-1", "x"]),
]
EXTRA = {"finetune": ["--config", str(REPO / "configs/finetune/quick.yaml"), "--workdir", "/nonexistent/never"],
         "search": ["--config", str(REPO / "configs/search/quick.yaml"), "--workdir", "/nonexistent/never"],
         "sweep": ["--config", str(REPO / "configs/search/quick.yaml"), "--workdir", "/nonexistent/never"]}


@pytest.mark.parametrize("case", [(c, v) for c, values in FLAG_CASES for v in values], ids=lambda c: " ".join(c[0]) +
                         f"={c[1]}")
def test_bad_flags_exit_2_naming_the_flag(case, capsys):
    (command, flag), value = case
    argv = [command, f"{flag}={value}"] + EXTRA.get(command, [])
    if command == "search":
        argv += [] if flag == "--lambda" else ["--lambda", "1"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert "Traceback" not in err
    words = flag.lstrip("-").replace("-", "_")
    named = [value.split("=")[0]] if flag == "--set" else [flag, words, value]
    assert any(n and n in err for n in named), (argv, err)  # the flag, its field or the bad value itself


# ----- the examples of the issue ---------------------------------------------------------------------------------
def test_non_utf8_tsv_names_file_and_line(tmp_path):
    from mgen_jax.data.glue import get_task, read_tsv

    path = tmp_path / "dev.tsv"
    path.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff\t0\n")
    with pytest.raises(DataError, match=r"dev.tsv:3: not UTF-8"):
        read_tsv(get_task("SST-2"), path)


def test_header_only_dev_file_is_an_error_not_a_smaller_workload(tmp_path, glue_dir):
    from mgen_jax.workload.glue import glue_trace

    for task in ("SST-2", "RTE"):
        (tmp_path / task).mkdir()
        for name in ("train.tsv", "dev.tsv"):
            text = (Path(glue_dir) / task / name).read_text(encoding="utf-8")
            (tmp_path / task / name).write_text(text.splitlines()[0] + "\n" if (task, name) == ("RTE", "dev.tsv")
                                                else text, encoding="utf-8")
    with pytest.raises(DataError, match=r"RTE.dev.tsv: no data rows"):
        glue_trace(["SST-2", "RTE"], glue_dir=tmp_path)


@pytest.mark.parametrize("content", ["null", "42", "[1, 2]", '"text"', "{bad json", '{"hidden_size": "big", '
                                     '"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 8}'])
def test_model_config_json_that_is_not_an_object(tmp_path, content, capsys):
    (tmp_path / "config.json").write_text(content)
    assert cli.main(["simulate", "--model", str(tmp_path), "--tokens", "8"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "Traceback" not in err


@pytest.mark.parametrize("how", ["is_folder", "under_a_file", "parent_is_file"])
def test_output_paths_that_cannot_hold_a_file(tmp_path, how, capsys):
    (tmp_path / "afile").write_text("x")
    out = {"is_folder": tmp_path, "under_a_file": tmp_path / "afile" / "sub", "parent_is_file": tmp_path / "afile"}[how]
    if how == "is_folder":  # report writes <out>/breakdown_...; make that name a folder
        (tmp_path / "breakdown_isaac_minilm-l6_2tasks.json").mkdir()
    code = cli.main(["report", "--tasks", "SST-2,RTE", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(tmp_path) in err, err


def test_ctrl_c_and_a_closed_pipe_end_quietly(monkeypatch, capsys):
    def interrupt(args):
        raise KeyboardInterrupt

    def closed(args):
        raise BrokenPipeError

    monkeypatch.setattr(cli.hardware, "cmd_simulate", interrupt)
    assert cli.main(["simulate"]) == 130
    monkeypatch.setattr(cli.hardware, "cmd_simulate", closed)
    assert cli.main(["simulate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "interrupted" in err[0] and "pipe closed" in err[1]
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)


def test_simulate_closed_pipe_in_a_real_shell():
    result = subprocess.run(f"{sys.executable} -m mgen_jax.cli simulate --tasks 5 --tokens 64 | head -1", shell=True,
                            capture_output=True, text=True, cwd=REPO)
    assert "Traceback" not in result.stderr and result.stdout.startswith("mgen simulate")


def test_fixed_tokens_with_task_subsets_is_the_expectation(capsys):
    argv = ["--tasks", "SST-2,RTE", "--tokens", "64", "--task-subsets", "SST-2:0.7,SST-2+RTE:0.3", "--json"]
    assert cli.main(["simulate"] + argv) == 0
    sim = json.loads(capsys.readouterr().out)
    assert cli.main(["cost"] + argv) == 0
    cost = json.loads(capsys.readouterr().out)
    assert sim["energy_per_request_j"] == pytest.approx(cost["energy_per_request_j"], rel=1e-6)
    assert "10,000 requests" in sim["workload"]


def test_bad_uniform_branch_points_fail_before_any_training(tmp_path, glue_dir):
    from mgen_jax.search import ModelGenerator

    cfg = load_search_config(REPO / "configs/search/quick.yaml", uniform_branch_points=[0, 14])
    with pytest.raises(ConfigError, match=r"uniform_branch_points.*\[14\]"):
        ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    assert not (tmp_path / "w" / "warmup").exists()


def test_unwritable_sweep_out_fails_before_the_warmup(tmp_path, glue_dir, capsys):
    (tmp_path / "afile").write_text("x")
    code = cli.main(["sweep", "--config", str(REPO / "configs/search/quick.yaml"), "--workdir", str(tmp_path / "w"),
                     "--out", str(tmp_path / "afile" / "out"), "--glue-dir", str(glue_dir), "--no-progress"])
    assert code == 2 and "not writable" in capsys.readouterr().err
    assert not (tmp_path / "w" / "warmup").exists()


def test_override_errors_name_the_command_line(capsys):
    code = cli.main(["finetune", "--config", str(REPO / "configs/finetune/quick.yaml"), "--set", "learning_rate=5"])
    err = capsys.readouterr().err
    assert code == 2 and "command line" in err and "quick.yaml" not in err


def test_partial_phase_outputs_are_redone_not_trusted(tmp_path, glue_dir, tiny_bert_dir):
    """A warm-up folder holding params.msgpack but no result.json (killed between the two writes) is run again."""
    from mgen_jax.search import ModelGenerator
    from mgen_jax.train.checkpoint import save_checkpoint

    cfg = load_search_config(REPO / "configs/search/quick.yaml", model=str(tiny_bert_dir), warmup_steps=2,
                             max_train_per_task={"SST-2": 200, "MRPC": 200}, heldout_max_rows=64, max_length=32,
                             buckets=[32])
    gen = ModelGenerator(cfg, tmp_path / "w", glue_dir=glue_dir, progress=False)
    junk = gen.initial_params()
    save_checkpoint(tmp_path / "w" / "warmup" / "params.msgpack", junk)
    warm = gen.warmup()
    assert (tmp_path / "w" / "warmup" / "result.json").exists()
    lines = (tmp_path / "w" / "warmup" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2]
    assert not all(np.array_equal(a, b) for a, b in zip(__import__("jax").tree.leaves(warm),
                                                        __import__("jax").tree.leaves(junk)))


# ----- crash safety ------------------------------------------------------------------------------------------------
KILLER = """
import os, signal, sys
import mgen_jax.io as io
from mgen_jax.train import FinetuneConfig, train_and_evaluate
real = os.fsync
count = {"n": 0}
def fsync_then_die(fd):
    real(fd)
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".checkpoint"):
        count["n"] += 1
        if count["n"] == 2:  # inside the second checkpoint write: its temp file is complete, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
os.fsync = fsync_then_die
cfg = FinetuneConfig(**eval(sys.argv[1]))
train_and_evaluate(cfg, sys.argv[2], glue_dir=sys.argv[3], progress=False)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to name the file being written")
def test_kill_during_checkpoint_write(tmp_path, glue_dir, tiny_bert_dir):
    from mgen_jax.io import is_partial_file
    from mgen_jax.train import train_and_evaluate
    from mgen_jax.train.checkpoint import restore_checkpoint

    values = dict(task="SST-2", model=str(tiny_bert_dir), max_train_examples=32, max_dev_examples=16, epochs=1,
                  batch_size=8, eval_batch_size=16, checkpoint_every_steps=1, max_length=64, buckets=(64,),
                  heldout_max_rows=16)
    killed = subprocess.run([sys.executable, "-c", KILLER, repr(values), str(tmp_path / "cut"), str(glue_dir)],
                            cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftovers = [p for p in (tmp_path / "cut").iterdir() if is_partial_file(p)]
    assert leftovers, "the kill should have left the checkpoint's temporary file"
    from mgen_jax.train import FinetuneConfig

    resumed = train_and_evaluate(FinetuneConfig(**values), tmp_path / "cut", glue_dir=glue_dir, progress=False)
    assert not [p for p in (tmp_path / "cut").iterdir() if is_partial_file(p)]
    whole = train_and_evaluate(FinetuneConfig(**values), tmp_path / "whole", glue_dir=glue_dir, progress=False)
    assert resumed["metrics"] == whole["metrics"]
    a = restore_checkpoint(tmp_path / "cut" / "final_params.msgpack", None)
    b = restore_checkpoint(tmp_path / "whole" / "final_params.msgpack", None)
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step logged twice after the resume


# ----- issue 35's classes, fuzzed: alias bombs, nesting, big integers, path names, corrupt state files, concurrency ----
HOSTILE = settings(max_examples=int(os.environ.get("MGEN_FUZZ_EXAMPLES", 120)) // 3, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _hostile_yaml(kind: str, size: int) -> str:
    """A YAML value of one hostile kind; ``size`` scales it (each is refused or accepted in bounded time)."""
    if kind == "bomb":
        width, levels = 2 + size % 9, 3 + size % 12
        items = [f"&a0 [{', '.join(['x'] * width)}]"]
        items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
        return "[" + ", ".join(items) + "]"
    if kind == "nest_list":
        return "[" * (size * 37) + "]" * (size * 37)
    if kind == "nest_map":
        return "{a: " * (size * 29) + "1" + "}" * (size * 29)
    if kind == "big_int":
        return "9" * (1 + size * 97)
    if kind == "long_text":
        return "'" + "x" * (size * 9_973) + "'"
    return "-" + "1" * (1 + size * 13)  # a negative big integer


@HOSTILE
@given(data=st.data())
def test_hostile_yaml_in_any_field_is_bounded(tmp_path_factory, data):
    """Any field of any shipped config (or a --set) holding an alias bomb, deep nesting, a huge integer or a huge
    string: the loader accepts it or raises ConfigError naming the field or file, in bounded time, with a message
    that never renders the whole value."""
    import time

    group = data.draw(st.sampled_from(sorted(SHIPPED)))
    paths, cls, load = SHIPPED[group]
    path = data.draw(st.sampled_from(paths))
    field = data.draw(st.sampled_from(sorted(typing.get_type_hints(cls))))
    kind = data.draw(st.sampled_from(["bomb", "nest_list", "nest_map", "big_int", "long_text", "neg_int"]))
    size = data.draw(st.integers(1, 100))
    text = path.read_text()
    if "extends:" in text:
        text = text.replace("extends: isaac", f"extends: {REPO / 'configs/hw/isaac.yaml'}")
    target = tmp_path_factory.mktemp("hostile") / path.name
    if group == "search":  # a config extending the shipped one, with the value in its field's section
        section = SECTION_OF.get(field)
        body = f"{field}: {_hostile_yaml(kind, size)}"
        target.write_text(f"extends: {path}\n" + (body if section is None else f"{section}:\n  {body}") + "\n")
    else:
        target.write_text(text + f"\n{field}: {_hostile_yaml(kind, size)}\n" if f"\n{field}:" not in text else
                          "\n".join(line for line in text.splitlines() if not line.startswith(f"{field}:")) +
                          f"\n{field}: {_hostile_yaml(kind, size)}\n")
    start = time.perf_counter()
    try:
        load(target)
    except (ConfigError, DataError) as exc:
        assert len(str(exc)) < 1500, (field, kind, len(str(exc)))
        assert field in str(exc) or str(target) in str(exc), (field, kind, str(exc)[:300])
    assert time.perf_counter() - start < 60, (field, kind, size)  # hangs took hours
    if group != "hw":  # the same value from the command line
        start = time.perf_counter()
        try:
            load(path, **cli.flags.overrides([f"{field}={_hostile_yaml(kind, size)}"]))
        except (ConfigError, DataError) as exc:
            assert len(str(exc)) < 1500 and field in str(exc), (field, kind, str(exc)[:300])
        assert time.perf_counter() - start < 60, (field, kind, size)  # hangs took hours


@FUZZ
@given(name=st.text(max_size=150) | st.sampled_from(["..", ".", "../x", "a/../../b", "/abs", "C:\\x", "a\x00b",
                                                        " lead", "trail ", "ok-name_1.2"]))
def test_a_name_never_leaves_its_folder(tmp_path_factory, name):
    from mgen_jax.io import check_name, path_inside

    folder = tmp_path_factory.mktemp("names")
    try:
        check_name(name, "name")
    except ConfigError as exc:
        assert len(str(exc)) < 600
        return
    path = path_inside(folder, name, "name")
    assert path.parent == folder and path.resolve().parent == folder.resolve() and name not in (".", "..")
    path.write_text("x")  # a plain name is one file in the folder
    assert [p.name for p in folder.iterdir()] == [name]


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=20)


@FUZZ
@given(content=st.binary(max_size=300) | _JSON.map(lambda v: json.dumps(v).encode()) |
       st.dictionaries(st.sampled_from(["seconds", "task", "x"]), _JSON, max_size=3).map(
           lambda v: json.dumps(v).encode()))
def test_corrupt_state_files_never_crash(tmp_path_factory, content):
    """Any bytes in a work folder's settings.json, wall_clock.json or checkpoint: the run either reads a valid
    record or stops with an error naming the file."""
    from mgen_jax.errors import MgenError
    from mgen_jax.train.checkpoint import restore_checkpoint
    from mgen_jax.train.loop import previous_wall_clock_s
    from mgen_jax.workfolder import check_settings

    folder = tmp_path_factory.mktemp("state")
    for name in ("settings.json", "wall_clock.json", "checkpoint.msgpack"):
        (folder / name).write_bytes(content)
    for name, read in (("settings.json", lambda: check_settings(folder, {"task": "SST-2"})),
                       ("wall_clock.json", lambda: previous_wall_clock_s(folder)),
                       ("checkpoint.msgpack", lambda: restore_checkpoint(folder / "checkpoint.msgpack",
                                                                         {"w": np.zeros(2), "step": 0}))):
        try:
            value = read()
        except MgenError as exc:
            assert name in str(exc) and len(str(exc)) < 1500, (name, str(exc)[:300])
            continue
        if name == "wall_clock.json":
            assert math.isfinite(value) and value >= 0


@FUZZ
@given(flag=st.sampled_from(["--tokens", "--tasks", "--branch-points", "--seed", "--max-length", "--requests"]),
       value=st.integers(-10**40, 10**40).map(str) | st.sampled_from(["9" * 5000, "1e9", "0x10", "", " 3", "٣"]))
def test_integer_flags_of_any_size(flag, value, capsys):
    """Integer flags with values of any size: exit 0 or 2 quickly, one line, no traceback (never an allocation of
    the value's size)."""
    import time

    base = {"--tokens": ["--tasks", "2"], "--tasks": ["--tokens", "8"], "--branch-points": ["--tasks", "2", "--tokens",
            "8"], "--seed": ["--tasks", "SST-2", "--task-subsets", "SST-2:1"], "--max-length": ["--tasks", "RTE"],
            "--requests": ["--tasks", "2", "--tokens", "8", "--task-subsets", "0:0.5,1:0.5"]}[flag]
    if flag == "--requests" and value.isdigit() and len(value) < 10 and 2 * 10**4 < int(value) <= 10**6:
        value = str(int(value) % 20_000)  # accepted sizes above this only cost time, not memory
    start = time.perf_counter()
    code = cli.main(["simulate", f"{flag}={value}"] + base)
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err and len(err) < 1000, (flag, value[:50], err[:300])
    assert time.perf_counter() - start < 30
    if code == 2:
        assert flag in err or flag.lstrip("-") in err, err


RACER = """
import sys, time
from mgen_jax.errors import ConfigError
from mgen_jax.workfolder import lock_work_folder
folder, log, me = sys.argv[1], sys.argv[2], sys.argv[3]
got = refused = 0
for attempt in range(20):
    try:
        with lock_work_folder(folder):
            with open(log, "a") as f:
                f.write(f"start {me}\\n")
            time.sleep(0.01)
            with open(log, "a") as f:
                f.write(f"end {me}\\n")
            got += 1
    except ConfigError as exc:
        assert "in use by another run" in str(exc)
        refused += 1
    time.sleep(0.003 * (attempt % 3))
print(got, refused)
"""


def test_racing_processes_hold_the_lock_one_at_a_time(tmp_path):
    """Four processes take and release one folder's lock 20 times each: every holder's start and end lines in the
    log are adjacent (no two runs at once), and a refusal is always the one-line 'in use' error."""
    log = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "w"), str(log), str(i)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * sum(int(out.split()[0]) for out, _ in outs) > 0
    for start, end in zip(lines[::2], lines[1::2]):
        assert start.startswith("start ") and end == "end " + start.split()[1], lines
