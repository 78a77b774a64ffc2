"""The run folder (search/rundir.py): its layout keeps the names existing run folders use, and the config fields
that each phase declares give exactly the settings files the former hand-kept field lists gave, so that every run
folder made before resumes."""

import dataclasses
import doctest
import json
from pathlib import Path

import pytest

from mgen_jax.errors import ConfigError
from mgen_jax.io import write_json_atomic
from mgen_jax.search.config import SearchConfig, load_search_config
from mgen_jax.search.finetune import FINETUNE_FIELDS
from mgen_jax.search.generator import PHASES
from mgen_jax.search.relaxed import SEARCH_FIELDS
from mgen_jax.search.rundir import RunDir, number_tag, run_settings

REPO = Path(__file__).parents[2]
RECORDS = REPO / "experiments" / "run_records" / "search"
# ModelGenerator's field lists at a34963a, before each phase declared its own: the settings they gave are what every
# existing run folder holds
FORMER_FREE = ("name", "lambdas", "uniform_branch_points", "heuristic_thresholds", "redundancy_file",
               "checkpoint_every_steps", "energy_budgets", "budgets_at_baselines", "profile_batches",
               "uniform_at_budgets", "claim_seeds", "task_weight_min_drop", "profile_metric", "trees",
               "full_sharing", "gradient", "claim_margin")
FORMER_SEARCH = ("search_steps", "lr_logits", "temperature_start", "temperature_end", "sampling",
                 "search_task_weights")
FORMER_FINETUNE = ("finetune_steps", "lr_finetune", "finetune_init", "finetune_own_lr_scale", "distill_weight",
                   "distill_temperature", "distill_anneal", "finetune_task_weights", "finetune_budget",
                   "finetune_batch_size", "teacher_run")


def _former_run_settings(cfg):
    settings = {k: v for k, v in cfg.to_dict().items() if k not in FORMER_FREE + FORMER_SEARCH + FORMER_FINETUNE}
    settings["independent_runs"] = cfg.independent_dirs[0] if cfg.independent_dirs else None
    return settings


def _bytes(tmp_path, settings) -> bytes:
    path = write_json_atomic(tmp_path / "settings.json", settings)
    return Path(path).read_bytes()


def test_every_field_is_declared_at_most_once():
    declared = [f for phase in PHASES for f in phase.fields]
    assert len(declared) == len(set(declared))
    assert set(declared) <= {f.name for f in dataclasses.fields(SearchConfig)}


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "search").rglob("*.yaml")), ids=lambda p: p.stem)
def test_settings_files_are_the_former_ones(path, tmp_path):
    cfg = load_search_config(path)
    assert _bytes(tmp_path, run_settings(cfg, PHASES)) == _bytes(tmp_path, _former_run_settings(cfg))
    assert SEARCH_FIELDS.settings(cfg) == {k: v for k, v in cfg.to_dict().items() if k in FORMER_SEARCH}
    assert FINETUNE_FIELDS.settings(cfg) == {k: v for k, v in cfg.to_dict().items() if k in FORMER_FINETUNE}


@pytest.mark.parametrize("name", ["glue5", "glue5_bam3x", "glue5_gradient"])
def test_committed_run_folders_hold_these_settings_byte_for_byte(name, tmp_path):
    cfg = load_search_config(REPO / "configs" / "search" / f"{name}.yaml")
    assert _bytes(tmp_path, run_settings(cfg, PHASES)) == (RECORDS / name / "settings.json").read_bytes()


def test_docstring_examples():
    import mgen_jax.search.points as points
    import mgen_jax.search.rundir as rundir

    assert doctest.testmod(rundir).failed == 0 and doctest.testmod(points).failed == 0


def test_layout_names():
    run = RunDir("w", seed=0)
    assert run.search(0.25) == Path("w/search_lambda_0p25") and run.search(20.0) == Path("w/search_lambda_20")
    assert run.model([12, 4, 12], 0) == Path("w/models/b_12-4-12") and run.model([1, 2]) == Path("w/models/b_1-2")
    assert run.model([1, 2], 2) == Path("w/models/b_1-2_seed2")
    assert run.gradient(0.334, 1) == Path("w/gradient/r0p334_seed1")
    assert run.gradient(0.5, 0, "estimator-straight-through") == Path("w/gradient/r0p5_estimator-straight-through_seed0")
    assert run.teachers(None) == Path("w/teachers") and run.teachers("runs/baseline_seed1/") == Path(
        "w/teachers/runs_baseline_seed1")
    assert run.loss_profile(heldout=True, batches=24) == Path("w/warmup/loss_profile_heldout.json")
    assert run.loss_profile(heldout=False, batches=24) == Path("w/warmup/loss_profile_24.json")
    assert run.task_weights == Path("w/task_weights_heldout.json") and number_tag(1e-4) == "0p0001"


def test_phase_folder_settings_are_checked(tmp_path):
    run = RunDir(tmp_path, seed=0)
    folder = run.search(1.0)
    run.check_phase(folder, {"sampling": "hard"}, "search folder")
    run.check_phase(folder, {"sampling": "hard"}, "search folder")
    with pytest.raises(ConfigError, match=r"search folder .*search_lambda_1 .*\['sampling'\]"):
        run.check_phase(folder, {"sampling": "soft"}, "search folder")
    # a field the file predates counts as its default
    run.check_phase(folder, {"sampling": "hard", "lr_logits": SearchConfig.__dataclass_fields__["lr_logits"].default},
                    "search folder")
    old = run.model([1, 1])
    old.mkdir(parents=True)
    (old / "result.json").write_text(json.dumps({}))
    with pytest.raises(ConfigError, match="no settings.json"):
        run.check_phase(old, {}, "model folder")


def test_a_phase_finished_by_another_process_before_the_lock_is_read_not_trained(tmp_path, monkeypatch):
    """Check, then lock: a model folder that another process finishes between this process's check and its lock is
    read back once the lock is held (it was trained again from scratch, over the other's result)."""
    import json
    import types

    from mgen_jax.search import finetune
    from mgen_jax.search.config import SearchConfig
    from mgen_jax.search.rundir import RunDir

    cfg = SearchConfig(name="race", tasks=("SST-2", "MRPC"), independent_runs=None)
    gen = types.SimpleNamespace(cfg=cfg, run=RunDir(tmp_path, seed=0), tasks=[0, 1], num_units=4)
    folder = gen.run.model([2, 2])
    record = dict.fromkeys(finetune.MODEL_RECORD, 1.0) | {"branch_points": [2, 2]}
    checks = []

    def finished(path):  # the first check sees nothing; the other process writes its result meanwhile
        checks.append(path)
        if len(checks) == 1:
            return False
        (path / "result.json").write_text(json.dumps(record))
        return True

    monkeypatch.setattr(RunDir, "finished", staticmethod(finished))
    monkeypatch.setattr(finetune, "_train_and_record", lambda *a: pytest.fail("trained a finished model again"))
    monkeypatch.setattr(finetune, "check_branch_points", lambda gen, b: list(b))
    assert finetune.finetune_and_evaluate(gen, [2, 2], None) == record
    assert checks == [folder, folder]
