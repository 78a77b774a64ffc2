"""The committed glue5 records are rebuilt, equal, from the committed run records: experiments/run_records.py
restore, then `mgen sweep --report-only` on configs/search/glue5.yaml and `mgen front --report-only` on
configs/front/glue5.yaml (train nothing), compared with experiments/results/search_glue5.json, front_glue5.json and
front_glue5_head_to_head.json except wall-clock fields. They guard every change of the search wing against changing a reported number, and the front
record against drifting from its run records (save both together: experiments/run_records.py save, then the front's
--report-only)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def _without_wall_clock(x):
    if isinstance(x, dict):
        return {k: _without_wall_clock(v) for k, v in x.items() if "wall_clock" not in k}
    if isinstance(x, list):
        return [_without_wall_clock(v) for v in x]
    return x


@pytest.mark.parametrize("config", ["glue5"])
def test_report_only_rebuilds_the_committed_record(tmp_path, glue_dir, monkeypatch, config):
    subprocess.run([sys.executable, str(REPO / "experiments" / "run_records.py"), "restore", "--runs",
                    str(tmp_path / "runs"), "--records", str(REPO / "experiments" / "run_records")], check=True,
                   capture_output=True)
    (tmp_path / "experiments" / "results").mkdir(parents=True)
    shutil.copy(REPO / "experiments" / "results" / "redundancy_glue5.json", tmp_path / "experiments" / "results")
    monkeypatch.chdir(tmp_path)
    from mgen_jax.cli import main

    assert main(["sweep", "--config", str(REPO / "configs" / "search" / f"{config}.yaml"), "--report-only",
                 "--out", str(tmp_path / "out"), "--no-progress", "--glue-dir", str(glue_dir)]) == 0
    committed = json.loads((REPO / "experiments" / "results" / f"search_{config}.json").read_text())
    rebuilt = json.loads((tmp_path / "out" / f"search_{config}.json").read_text())
    assert _without_wall_clock(rebuilt) == _without_wall_clock(committed)


def test_front_report_only_rebuilds_the_committed_front(tmp_path, glue_dir, monkeypatch):
    """The same for the front (configs/front/glue5.yaml): every finished run's record and the independent models'
    come from the committed run records, the candidates' choice, seeds, intervals and headline are rebuilt equal."""
    subprocess.run([sys.executable, str(REPO / "experiments" / "run_records.py"), "restore", "--runs",
                    str(tmp_path / "runs"), "--records", str(REPO / "experiments" / "run_records")], check=True,
                   capture_output=True)
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "experiments" / "results").mkdir(parents=True)
    for name in ("search_glue5.json", "bench_gradient_run.json"):
        if (REPO / "experiments" / "results" / name).is_file():
            shutil.copy(REPO / "experiments" / "results" / name, tmp_path / "experiments" / "results")
    monkeypatch.chdir(tmp_path)
    from mgen_jax.cli import main

    assert main(["front", "--config", "configs/front/glue5.yaml", "--report-only", "--out", str(tmp_path / "out"),
                 "--no-progress", "--glue-dir", str(glue_dir)]) == 0
    for name in ("front_glue5.json", "front_glue5_head_to_head.json"):  # the front and its gradient-vs-enumeration
        committed = json.loads((REPO / "experiments" / "results" / name).read_text())
        rebuilt = json.loads((tmp_path / "out" / name).read_text())
        assert _without_wall_clock(rebuilt) == _without_wall_clock(committed), name


def test_readme_front_table_is_the_committed_record():
    """The README's table of every front point is what `mgen front` prints for the committed record."""
    from mgen_jax.cli.search import front_table

    text = (REPO / "README.md").read_text()
    start, end = "<!-- front_glue5 table", "<!-- end of front_glue5 table -->"
    block = text[text.index(start):text.index(end)].split("\n", 1)[1].strip()
    record = json.loads((REPO / "experiments" / "results" / "front_glue5.json").read_text())
    assert block == front_table(record)
