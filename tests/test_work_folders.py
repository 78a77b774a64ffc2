"""Work folders belong to one run (issue 35): a lock against a second process, a settings guard against a different
run (fine-tuning here; mgen_jax.workfolder is the reusable piece), a temporary-file cleaner that deletes only the
tool's own names, and state files that are checked, never trusted blindly."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgen_jax import cli
from mgen_jax.errors import ConfigError, MgenError
from mgen_jax.io import clean_partial_files, is_partial_file, write_bytes_atomic
from mgen_jax.workfolder import (LOCK_FILE, check_settings, claim_work_folder, lock_work_folder, read_settings,
                                 read_state_json)

REPO = Path(__file__).parents[1]
TINY = dict(task="SST-2", max_train_examples=32, max_dev_examples=16, epochs=1, batch_size=8, eval_batch_size=16,
            checkpoint_every_steps=1, max_length=64, buckets=(64,), heldout_max_rows=16)

HOLDER = """
import sys, time
from mgen_jax.workfolder import lock_work_folder
lock = lock_work_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def held_elsewhere(tmp_path):
    """A folder whose lock another process holds (it sleeps until the test ends)."""
    folder = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    yield folder
    proc.kill()
    proc.wait()


# ----- the lock ----------------------------------------------------------------------------------------------------
def test_a_second_process_is_refused_naming_the_folder_and_holder(held_elsewhere):
    with pytest.raises(ConfigError, match=r"is in use by another run \(process \d+\)") as info:
        lock_work_folder(held_elsewhere)
    assert str(held_elsewhere) in str(info.value)


def test_the_lock_is_released_at_the_end_and_when_its_process_dies(tmp_path):
    with lock_work_folder(tmp_path / "w"):
        pass
    with lock_work_folder(tmp_path / "w"):  # taken again after the release
        pass
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "w")], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock with the process
    proc.wait()
    with lock_work_folder(tmp_path / "w"):
        pass


def test_finetune_on_a_locked_folder_exits_2_and_deletes_nothing(held_elsewhere, tmp_path, capsys):
    """The example of the issue: a second run's start-up cleaner deleted the first run's in-flight checkpoint temp
    file. Now the second run stops at the lock, before it cleans or writes anything."""
    in_flight = held_elsewhere / ".checkpoint.msgpack.mgen-partial-abcd1234.msgpack"
    in_flight.write_bytes(b"half a checkpoint")
    code = cli.main(["finetune", "--config", str(REPO / "configs/finetune/quick.yaml"), "--workdir",
                     str(held_elsewhere), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "in use by another run" in err and str(held_elsewhere) in err, err
    assert in_flight.exists()
    assert sorted(p.name for p in held_elsewhere.iterdir()) == sorted([LOCK_FILE, in_flight.name])


def test_claim_is_released_when_its_settings_differ(tmp_path):
    claim_work_folder(tmp_path, {"a": 1}).release()
    with pytest.raises(ConfigError, match=r"other settings \(a: 1 there, 2 now; recorded in its settings.json\)"):
        claim_work_folder(tmp_path, {"a": 2})
    with claim_work_folder(tmp_path, {"a": 1}):  # the refused claim left the lock free
        pass


# ----- temporary files ---------------------------------------------------------------------------------------------
def test_the_cleaner_deletes_only_the_tools_own_temporary_names(tmp_path):
    """The example of the issue: ``W/notes/.thesis.partial-final.tex`` was lost to the cleaner."""
    mine = []
    for name in ("checkpoint.msgpack", "summary.json", "plot.png"):  # a temporary file of each kind, left by a kill
        target = tmp_path / name
        import tempfile

        fd, tmp = tempfile.mkstemp(dir=tmp_path, prefix=f".{target.name}.mgen-partial-", suffix=target.suffix)
        os.close(fd)
        mine.append(Path(tmp))
    (tmp_path / "notes").mkdir()
    users = [tmp_path / "notes" / ".thesis.partial-final.tex", tmp_path / ".x.partial-abc", tmp_path / "a.mgen-partial-",
             tmp_path / ".draft.mgen-partial-final-version.tex", tmp_path / "notes" / "keep.txt"]
    for path in users:
        path.write_text("a user's file")
    os.symlink(tmp_path / "notes" / "keep.txt", tmp_path / ".link.mgen-partial-abcd1234.txt")
    assert all(is_partial_file(p) for p in mine) and not any(is_partial_file(p) for p in users)
    removed = clean_partial_files(tmp_path)
    assert sorted(removed) == sorted(mine)
    assert all(p.exists() for p in users) and (tmp_path / ".link.mgen-partial-abcd1234.txt").is_symlink()


def test_an_atomic_write_leaves_no_temporary_file(tmp_path):
    write_bytes_atomic(tmp_path / "x.bin", b"1")
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# ----- settings and state files ------------------------------------------------------------------------------------
def test_settings_guard_records_then_compares(tmp_path):
    check_settings(tmp_path, {"lr": 1e-4, "buckets": (8, 16)})
    assert read_settings(tmp_path) == {"lr": 1e-4, "buckets": [8, 16]}
    check_settings(tmp_path, {"lr": 1e-4, "buckets": [8, 16]})  # a tuple and a list are the same value
    check_settings(tmp_path, {"lr": 1e-4, "buckets": [8, 16], "new": 3}, defaults={"new": 3})
    with pytest.raises(ConfigError, match=r"other settings \(lr: 0.0001 there, 0.0002 now; recorded"):
        check_settings(tmp_path, {"lr": 2e-4, "buckets": [8, 16]})


@pytest.mark.parametrize("content", [b"", b"{", b"[1, 2]", b"\xff\xfe", b'"text"', b"1e999999", b"[" * 100_000])
def test_corrupt_state_files_are_named(tmp_path, content):
    from mgen_jax.train.loop import previous_wall_clock_s

    for name in ("settings.json", "wall_clock.json", "result.json"):
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match="settings.json"):
        check_settings(tmp_path, {"a": 1})
    with pytest.raises(ConfigError, match="wall_clock.json"):
        previous_wall_clock_s(tmp_path)
    with pytest.raises(ConfigError, match="result.json"):
        read_state_json(tmp_path / "result.json", ("wall_clock_s",))


@pytest.mark.parametrize("record", [{}, {"seconds": "x"}, {"seconds": -1}, {"seconds": None}, {"seconds": 1e309}])
def test_wall_clock_with_a_wrong_field(tmp_path, record):
    from mgen_jax.train.loop import previous_wall_clock_s

    (tmp_path / "wall_clock.json").write_text(json.dumps(record).replace("Infinity", "1e999"))
    with pytest.raises(ConfigError, match="wall_clock.json"):
        previous_wall_clock_s(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\x93garbage", b"{}"])
def test_corrupt_checkpoint_is_named(tmp_path, content):
    import numpy as np

    from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.msgpack"
    if content == b"{}":  # a checkpoint of another shape
        save_checkpoint(path, {"w": np.zeros(3)})
    else:
        path.write_bytes(content)
    with pytest.raises(MgenError, match="checkpoint.msgpack"):
        restore_checkpoint(path, {"w": np.zeros(4)})


# ----- fine-tuning: a different run never resumes another's folder ---------------------------------------------------
def test_finetune_work_folder_refuses_a_different_run(tmp_path, glue_dir, tiny_bert_dir):
    """The example of the issue: the same --workdir with --task CoLA (or another learning rate, or seed) exited 0
    without training, kept the SST-2 weights and wrote a summary that claimed CoLA."""
    import dataclasses

    from mgen_jax.train import FinetuneConfig, train_and_evaluate

    cfg = FinetuneConfig(**TINY, model=str(tiny_bert_dir))
    work = tmp_path / "w"
    train_and_evaluate(cfg, work, glue_dir=glue_dir, progress=False, stop_at_step=1)
    for change, field in (({"task": "CoLA"}, "task"), ({"learning_rate": 2e-4}, "learning_rate"), ({"seed": 1}, "seed"),
                          ({"max_train_examples": 24}, "max_train_examples")):
        with pytest.raises(ConfigError, match=rf"{re.escape(str(work))} holds a run with other settings \({field}: "):
            train_and_evaluate(dataclasses.replace(cfg, **change), work, glue_dir=glue_dir, progress=False)
    (work / "settings.json").unlink()  # a folder written before settings.json: its config.json is the record
    with pytest.raises(ConfigError, match=r"other settings \(task: 'SST-2' there, 'CoLA' now"):
        train_and_evaluate(dataclasses.replace(cfg, task="CoLA"), work, glue_dir=glue_dir, progress=False)
    summary = train_and_evaluate(dataclasses.replace(cfg, checkpoint_every_steps=3), work, glue_dir=glue_dir,
                                 progress=False)  # the same run resumes (checkpoint frequency is free)
    assert summary["task"] == "SST-2" and summary["steps"] == 4
    assert not (work / "summary.json").read_text().count("CoLA")


def test_finetune_folder_with_results_but_no_record_is_refused(tmp_path, glue_dir, tiny_bert_dir):
    from mgen_jax.train import FinetuneConfig, train_and_evaluate

    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match="no record of the run"):
        train_and_evaluate(FinetuneConfig(**TINY, model=str(tiny_bert_dir)), tmp_path, glue_dir=glue_dir,
                           progress=False)


def test_finetune_batch_larger_than_the_data_is_refused(tmp_path, glue_dir, tiny_bert_dir, capsys):
    """The example of the issue: --batch-size 100000 on 64 rows allocated a batch of 100,000 padded rows."""
    argv = ["finetune", "--config", str(REPO / "configs/finetune/quick.yaml"), "--workdir", str(tmp_path), "--model",
            str(tiny_bert_dir), "--max-train-examples", "64", "--glue-dir", str(glue_dir), "--no-progress"]
    for size, words in (("100000", "'batch_size' must be <= 65,536, got 100,000"),
                        ("128", "'batch_size' (128) exceeds the 64 training rows")):
        code = cli.main(argv + ["--batch-size", size])
        err = capsys.readouterr().err
        assert code == 2 and words in err, err
    assert not (tmp_path / "checkpoint.msgpack").exists()


def test_finetune_with_corrupt_settings_exits_2(tmp_path, glue_dir, tiny_bert_dir, capsys):
    (tmp_path / "settings.json").write_text('{"task": ')
    code = cli.main(["finetune", "--config", str(REPO / "configs/finetune/quick.yaml"), "--workdir", str(tmp_path),
                     "--model", str(tiny_bert_dir), "--glue-dir", str(glue_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "settings.json" in err and "Traceback" not in err, err


def test_concurrent_finetune_runs_one_wins_one_exits_2(tmp_path, glue_dir, tiny_bert_dir):
    """Two processes started together on one folder: exactly one trains; the other exits 2 naming the folder; the
    metrics log holds each step once."""
    values = dict(TINY, model=str(tiny_bert_dir))
    script = ("import sys; from mgen_jax.cli import main; sys.exit(main(sys.argv[1:]))")
    argv = ["finetune", "--config", str(REPO / "configs/finetune/quick.yaml"), "--workdir", str(tmp_path / "w"),
            "--glue-dir", str(glue_dir), "--no-progress", "--model", values["model"]]
    argv += [f"--set={k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in TINY.items()
             if k not in ("task",)]
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append((proc.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another run" in loser and "Traceback" not in loser
    steps = [json.loads(x)["step"] for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
