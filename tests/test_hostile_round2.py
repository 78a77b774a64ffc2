"""Hostile inputs, second round (issue 35): the probes re-run over the restructured CLI (mgen_jax/cli/) and the search
configs in sections, one test per defect they found. Every test here is fast (no training, no GLUE-size data)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mgen_jax import cli
from mgen_jax.errors import ConfigError

REPO = Path(__file__).parents[1]
QUICK_SEARCH = str(REPO / "configs/search/quick.yaml")


def run(argv, capsys):
    """(exit code, stderr) of ``mgen argv``, which must end without a traceback in at most a few lines."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3 and len(err) < 1500, err[:3000]
    return code, err


# ----- 1. sizes -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("per_task_batch", 100_000), ("per_task_batch", 2**53),
                                          ("finetune_batch_size", 2**53), ("warmup_steps", 2**53),
                                          ("search_steps", 2**31), ("finetune_steps", 2**53),
                                          ("profile_batches", 2**53), ("max_length", 10**6),
                                          ("lambdas", [1.0, 1e308])])
def test_search_sizes_beyond_their_limits_are_refused_at_load(field, value):
    """They reached numpy (an allocation of 2 EiB), XLA (RESOURCE_EXHAUSTED after the warm-up) or optax (an int32
    overflow), each as a traceback; a lambda of 1e308 made the loss infinite at the first step."""
    from mgen_jax.search import load_search_config

    with pytest.raises(ConfigError, match=f"'{field}'"):
        load_search_config(QUICK_SEARCH, **{field: value})
    load_search_config(QUICK_SEARCH, per_task_batch=65_536, warmup_steps=2**31 - 1, lambdas=[1e6])


@pytest.mark.parametrize("budget, words", [({"epochs": 1e300}, r"'finetune_budget.SST-2' \(epochs: 1e\+300\)"),
                                           ({"examples": 2**53}, r"'finetune_budget.SST-2' \(examples: 9.0072e\+15\)")])
def test_equal_budget_steps_are_bounded_before_any_stream_is_built(budget, words):
    """``finetune_budget: {SST-2: {epochs: 1e300}}`` hung while the stream counted its examples epoch by epoch."""
    from mgen_jax.data.glue import get_task
    from mgen_jax.search.finetune import budget_streams

    rows = type("Rows", (), {"__len__": lambda self: 40, "lengths": np.full(40, 8)})()
    cfg = SimpleNamespace(finetune_budget={"SST-2": budget, "MRPC": {"epochs": 1}}, finetune_batch_size=4,
                          buckets=(32,))
    gen = SimpleNamespace(cfg=cfg, tasks=[get_task("SST-2"), get_task("MRPC")], data=SimpleNamespace(train=[rows, rows]))
    with pytest.raises(ConfigError, match=words + " makes .* more than the 1,000,000"):
        budget_streams(gen, 0)


def test_search_lambda_beyond_its_limit(capsys):
    code, err = run(["search", "--config", QUICK_SEARCH, "--lambda", "1e308", "--workdir", "/nonexistent/w"], capsys)
    assert code == 2 and "--lambda 1e+308 is more than 1e+06" in err, err


@pytest.mark.parametrize("error", ["numpy", "xla"])
def test_out_of_memory_ends_in_one_line(error, monkeypatch, capsys):
    """A size below every limit that still does not fit this machine: one line and exit 1, never a traceback."""
    class JaxRuntimeError(RuntimeError):
        pass

    def allocate(args):
        if error == "numpy":
            np.empty((2**53, 64), np.int32)
        raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 257642337536 bytes.\nmore")

    monkeypatch.setattr(cli.hardware, "cmd_simulate", allocate)
    code, err = run(["simulate"], capsys)
    assert code == 1 and "failed: out of memory" in err and len(err.strip().splitlines()) == 1, err


# ----- 2. configs: extends, front configs -------------------------------------------------------------------------
def test_a_path_too_long_for_the_file_system_exits_2(tmp_path, capsys):
    """``extends: <5000 characters>`` (or such a --config) ended as 'failed: File name too long' with exit 1."""
    (tmp_path / "s.yaml").write_text(f"extends: {'x' * 5000}\n")
    code, err = run(["sweep", "--config", tmp_path / "s.yaml", "--workdir", tmp_path / "w"], capsys)
    assert code == 2 and "field 'extends' names no readable file" in err and "5,000 characters" in err, err
    code, err = run(["sweep", "--config", "y" * 5000, "--workdir", tmp_path / "w"], capsys)
    assert code == 2 and "cannot be read" in err, err
    (tmp_path / "hw.yaml").write_text(f"extends: {'z' * 5000}\nname: n\n")
    code, err = run(["simulate", "--hw", tmp_path / "hw.yaml", "--tasks", "2", "--tokens", "8"], capsys)
    assert code == 2 and "'extends'" in err, err


CANDIDATES = "[{{label: c, config: {search}, branch_points: [1, 1]}}]"
BUDGETS = "[{{label: x, energy_ratio: 0.9, candidates: %s}}]" % CANDIDATES


@pytest.mark.parametrize("body, words", [
    ("budgets: 5", "budgets must be a list, got 5"),
    ("budgets: [{{label: x, energy_ratio: 0.9, candidates: 7}}]", r"budgets\[0\].candidates must be a list, got 7"),
    (f"budgets: {BUDGETS}\nbaselines: 7", "baselines must be a list, got 7"),
    (f"budgets: {BUDGETS}\nname: ../../escape", "front config field 'name' '../../escape' is not a plain name"),
    (f"budgets: {BUDGETS}\nname: a/b", "front config field 'name' 'a/b'"),
])
def test_malformed_front_configs_are_named_at_load(body, words, tmp_path):
    """A list field holding a number was a TypeError traceback; a front ``name: ../../escape`` was accepted and
    would have written the record outside --out."""
    from mgen_jax.search.front import load_front_config

    (tmp_path / "f.yaml").write_text(f"reference: {QUICK_SEARCH}\n" + body.format(search=QUICK_SEARCH) + "\n")
    with pytest.raises(ConfigError, match=words):
        load_front_config(tmp_path / "f.yaml")


# ----- 3. state files in a search run folder ----------------------------------------------------------------------
@pytest.mark.parametrize("content, words", [(b"{bad", "not valid JSON"), (b"[]", "expected a JSON object"),
                                            (b"{}", "lacks field"), (b'{"steps": 1}', r"lacks field\(s\) \['wall")])
def test_corrupt_phase_results_are_named(content, words, tmp_path):
    """A warm-up, search or model folder whose result.json is corrupt or foreign was a JSONDecodeError or KeyError
    traceback."""
    from mgen_jax.search.relaxed import warmup_record
    from mgen_jax.search.rundir import RunDir

    run = RunDir(tmp_path, seed=0)
    run.warmup.mkdir()
    (run.warmup / "result.json").write_bytes(content)
    with pytest.raises(ConfigError, match=f"phase result {run.warmup / 'result.json'}.*{words}"):
        warmup_record(run)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_corrupt_run_settings_are_named(content, tmp_path):
    from mgen_jax.search import load_search_config
    from mgen_jax.search.rundir import RunDir

    (tmp_path / "settings.json").write_bytes(content)
    with pytest.raises(ConfigError, match="run settings .*settings.json"):
        RunDir(tmp_path, seed=0).check_run(load_search_config(QUICK_SEARCH), ())


def test_corrupt_records_read_by_the_search_phases(tmp_path):
    """The loss profile, task weights, the redundancy file and an independent run's records were read with a bare
    json.loads."""
    from mgen_jax.search.independent import _seed_record, reference_runs

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "summary.json").write_text("{broken")
    (tmp_path / "SST-2" / "config.json").write_text("[]")
    cfg = SimpleNamespace(independent_dirs=(str(tmp_path),), finetune_budget="independent")
    gen = SimpleNamespace(cfg=cfg, tasks=[SimpleNamespace(name="SST-2")])
    with pytest.raises(ConfigError, match="SST-2/config.json: expected a JSON object"):
        reference_runs(cfg, gen.tasks)
    with pytest.raises(ConfigError, match="SST-2/summary.json: not valid JSON"):
        _seed_record(gen, str(tmp_path))


@pytest.mark.parametrize("content, words", [(b"nope", "not valid JSON"), (b"{}", "holds no 'mean_loss' list")])
def test_a_corrupt_loss_profile_is_named(content, words, tmp_path):
    """A loss profile without 'mean_loss' was a KeyError traceback in the sweep's budget selection."""
    from mgen_jax.search.rundir import RunDir
    from mgen_jax.search.selection import warmup_profile

    cfg = SimpleNamespace(heldout_fraction=0.1, profile_batches=24, profile_metric="loss")
    gen = SimpleNamespace(cfg=cfg, run=RunDir(tmp_path, seed=0), data=SimpleNamespace(has_heldout=True))
    gen.run.warmup.mkdir()
    (gen.run.warmup / "loss_profile_heldout.json").write_bytes(content)
    with pytest.raises(ConfigError, match=f"loss profile .*loss_profile_heldout.json.*{words}"):
        warmup_profile(gen, None)


# ----- 6. a model that does not fit the workload ------------------------------------------------------------------
def test_the_default_max_length_is_checked_against_the_models_positions(tmp_path, capsys):
    """A model of 64 positions simulated on real dev lengths used the default --max-length 128 silently (rc 0); the
    same value given explicitly was refused."""
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 384, "num_hidden_layers": 6,
                                                      "num_attention_heads": 12, "intermediate_size": 1536,
                                                      "max_position_embeddings": 64}))
    code, err = run(["simulate", "--tasks", "RTE", "--model", tmp_path], capsys)
    assert code == 2 and "--max-length 128 (its default) exceeds the 64 positions" in err, err
    code, err = run(["simulate", "--tasks", "2", "--tokens", "8", "--model", tmp_path], capsys)
    assert code == 0, err


# ----- residual findings: a flag against --set, the gradient section under --set, what 'extends' names ---------------
QUICK_FINETUNE = str(REPO / "configs/finetune/quick.yaml")


@pytest.mark.parametrize("argv, words", [
    (["finetune", "--config", QUICK_FINETUNE, "--set", "task=CoLA", "--task", "RTE"], "--task 'RTE' and --set task="),
    (["finetune", "--config", QUICK_FINETUNE, "--set", "learning_rate=1e-3", "--learning-rate", "2e-4"],
     "--learning-rate 0.0002 and --set learning_rate="),
    (["finetune", "--config", QUICK_FINETUNE, "--set", "seed=1", "--seed", "2"], "--seed 2 and --set seed=1"),
    (["search", "--config", QUICK_SEARCH, "--energy-target", "0.5", "--set", "seed=1", "--seed", "2"],
     "--seed 2 and --set seed=1"),
])
def test_a_flag_and_a_set_of_the_same_field_must_agree(argv, words, tmp_path, capsys):
    """``mgen finetune --set task=CoLA --task RTE`` trained RTE: the flag silently won over the --set."""
    code, err = run(argv + ["--workdir", tmp_path / "w"], capsys)
    assert code == 2 and words in err and "contradict each other" in err, err
    assert not (tmp_path / "w").exists()


def test_a_flag_and_a_set_that_agree_are_one_value():
    from mgen_jax.cli.flags import with_flags

    given = {"learning_rate": ("--learning-rate", 1e-4), "task": ("--task", "RTE"), "seed": ("--seed", None)}
    assert with_flags({"learning_rate": "1e-4", "task": "RTE", "seed": 3}, given) == {
        "learning_rate": 1e-4, "task": "RTE", "seed": 3}


def _gradient_config(tmp_path) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(f"extends: {QUICK_SEARCH}\ngradient: {{energy_targets: [0.6, 0.8], seeds: [0, 1], "
                    "logit_rows: 4}\n")
    return path


def test_set_merges_into_the_gradient_section(tmp_path):
    """``--set gradient={estimator: straight-through}`` replaced the whole section (its targets and seeds fell back
    to the defaults, silently), and ``--set gradient.seeds=[1]`` was refused as an unknown field."""
    from mgen_jax.search import load_search_config

    path = _gradient_config(tmp_path)
    got = load_search_config(path, gradient={"estimator": "straight-through"}).gradient
    assert (got.estimator, got.energy_targets, got.seeds, got.logit_rows) == ("straight-through", (0.6, 0.8), (0, 1), 4)
    got = load_search_config(path, **{"gradient.seeds": [1]}).gradient
    assert (got.seeds, got.energy_targets, got.logit_rows) == ((1,), (0.6, 0.8), 4)
    got = load_search_config(path, **{"gradient.seeds": [2], "gradient.logit_rows": 2})
    assert (got.gradient.seeds, got.gradient.logit_rows, got.gradient.energy_targets) == ((2,), 2, (0.6, 0.8))
    assert load_search_config(path, **{"data.max_length": 32}).max_length == 32


@pytest.mark.parametrize("field, value, words", [
    ("gradient.bogus", 1, "--set 'gradient.bogus': unknown field 'bogus' in section 'gradient:'"),
    ("gradient", {"bogus": 1}, r"field 'gradient': unknown field\(s\) \['bogus'\].*from the command line"),
    ("gradient.seeds", [-1], r"'gradient.seeds' must hold distinct integers >= 0.*from the command line"),
    ("data.lambdas", [1.0], "--set 'data.lambdas': unknown field 'lambdas' in section 'data:'"),
    ("nosuch.x", 1, "--set 'nosuch.x': unknown section 'nosuch'"),
])
def test_unknown_or_bad_gradient_fields_under_set_are_named(field, value, words, tmp_path):
    from mgen_jax.search import load_search_config

    with pytest.raises(ConfigError, match=words):
        load_search_config(_gradient_config(tmp_path), **{field: value})


def test_set_gradient_field_on_the_command_line(tmp_path, capsys):
    path = _gradient_config(tmp_path)
    code, err = run(["search", "--config", path, "--set", "gradient.bogus=1", "--workdir", tmp_path / "w"], capsys)
    assert code == 2 and "unknown field 'bogus' in section 'gradient:'" in err, err


@pytest.mark.parametrize("base, words", [("folder.yaml", "is a folder, not a file"),
                                         ("/dev/zero", "is not a regular file"), ("none.yaml", "not found")])
def test_extends_says_what_it_names_when_that_is_no_file(base, words, tmp_path):
    """``extends:`` naming a folder or /dev/zero said 'not found'."""
    from mgen_jax.hw.spec import load_spec
    from mgen_jax.search import load_search_config

    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "s.yaml").write_text(f"extends: {base}\n")
    with pytest.raises(ConfigError, match=f"search config .*{'zero' if 'dev' in base else base} {words} "
                                          r"\(named by 'extends'"):
        load_search_config(tmp_path / "s.yaml")
    (tmp_path / "hw.yaml").write_text(f"extends: {base}\nname: n\n")
    hw_words = {"folder.yaml": "is a folder, not a file", "/dev/zero": "is no preset name, and a spec file's name "
                "ends in .yaml", "none.yaml": "not found"}[base]
    with pytest.raises(ConfigError, match=hw_words):
        load_spec(tmp_path / "hw.yaml")


def test_set_null_is_a_value_not_a_missing_flag(tmp_path):
    """``--set max_train_examples=null`` (every row) kept the config's 512 rows, and ``--set redundancy_file=null``
    the config's file, silently: a null from --set was dropped as if no flag had been given."""
    from mgen_jax.cli.flags import overrides
    from mgen_jax.search import load_search_config
    from mgen_jax.train import load_config

    assert load_config(QUICK_FINETUNE, set_values=overrides(["max_train_examples=null"])).max_train_examples is None
    assert load_config(QUICK_FINETUNE, max_train_examples=None).max_train_examples == 512  # a flag not given
    path = tmp_path / "r.yaml"
    path.write_text(f"extends: {QUICK_SEARCH}\nsweep: {{redundancy_file: mine.json}}\n")
    assert load_search_config(path, set_values=overrides(["redundancy_file=null"])).redundancy_file is None
    assert load_search_config(path, redundancy_file=None).redundancy_file == "mine.json"


# ----- 4. work folders: nested locks --------------------------------------------------------------------------------
HOLDER = """
import sys, time
from mgen_jax.workfolder import lock_work_folder
lock = lock_work_folder(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_a_recursive_clean_never_enters_another_locked_folder(tmp_path):
    """``teachers/`` (the reference run's teacher folder) holds ``teachers/<teacher run>/``, another phase's folder
    with its own lock: the recursive clean of the first deleted the in-flight temporary file of a second process
    computing the other teachers."""
    import subprocess
    import sys

    from mgen_jax.search.rundir import RunDir

    run = RunDir(tmp_path, seed=0)
    inner = run.teachers("runs/other")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(inner)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "locked"
        in_flight = inner / ".SST-2.npy.mgen-partial-abcd1234.npy"
        in_flight.write_bytes(b"half an array")
        (run.teachers(None) / "own").mkdir()
        left = run.teachers(None) / "own" / ".x.json.mgen-partial-abcd1234.json"  # a kill's leftover, no lock there
        left.write_text("{")
        with run.phase_folder(run.teachers(None), "teacher folder"):
            assert in_flight.exists() and not left.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_new_finetune_run_never_writes_over_someone_elses_files(tmp_path, capsys):
    """``mgen finetune --workdir .`` in a repository root trained there and wrote its run record over the
    repository's own config.json. A folder that holds no run (no settings.json, checkpoint or results) and holds other
    files is refused, naming them, before anything is read or written."""
    (tmp_path / "config.json").write_text('{"mine": 1}')
    (tmp_path / "README.md").write_text("mine")
    code, err = run(["finetune", "--config", QUICK_FINETUNE, "--workdir", tmp_path, "--no-progress"], capsys)
    assert code == 2 and f"fine-tuning work folder {tmp_path} holds files that no fine-tuning run wrote" in err, err
    assert "README.md" in err and "config.json" in err, err
    assert (tmp_path / "config.json").read_text() == '{"mine": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mgen.lock", "README.md", "config.json"]


def test_a_new_finetune_folder_may_hold_what_a_killed_start_left(tmp_path):
    """Its lock, a kill's temporary file, and an older version's config.json record are not someone else's."""
    from mgen_jax.train.finetune import _check_new_folder

    (tmp_path / ".mgen.lock").write_text("1\n")
    (tmp_path / ".config.json.mgen-partial-abcd1234.json").write_text("{")
    (tmp_path / "config.json").write_text(json.dumps({"config": {"task": "SST-2"}, "task": "SST-2"}))
    _check_new_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"\['notes.txt'\]"):
        _check_new_folder(tmp_path)
    (tmp_path / "settings.json").write_text("{}")  # a run's folder: the user's notes beside it are kept, not refused
    _check_new_folder(tmp_path)


def test_a_phase_folder_killed_while_its_settings_were_first_written_resumes(tmp_path):
    """A sweep killed while it wrote a model folder's first settings.json left only the temporary file there; the
    resume was refused ('has no settings.json (it predates recorded model folder settings)')."""
    from mgen_jax.search.rundir import RunDir

    run = RunDir(tmp_path, seed=0)
    folder = run.model([4, 4])
    folder.mkdir(parents=True)
    (folder / ".settings.json.mgen-partial-odefj7sg.json").write_text('{"finetune')
    (folder / ".mgen.lock").write_text("1\n")
    run.check_phase(folder, {"finetune_steps": 2}, "model folder")
    assert json.loads((folder / "settings.json").read_text()) == {"finetune_steps": 2}
    other = run.model([1, 1])
    other.mkdir()
    (other / "params.msgpack").write_bytes(b"x")  # results without settings: still refused
    with pytest.raises(ConfigError, match="has no settings.json"):
        run.check_phase(other, {"finetune_steps": 2}, "model folder")


def test_a_search_workdir_that_is_a_file_exits_2(tmp_path, capsys):
    """It was 'failed: File exists' with exit 1."""
    (tmp_path / "afile").write_text("x")
    code, err = run(["sweep", "--config", QUICK_SEARCH, "--workdir", tmp_path / "afile", "--out", tmp_path / "o"],
                    capsys)
    assert code == 2 and f"workdir {tmp_path / 'afile'} is a file, not a folder" in err, err
