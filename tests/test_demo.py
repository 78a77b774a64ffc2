"""`mgen demo` (the README's first command): the live run of configs/search/demo.yaml (on a tiny BERT and a small
budget here), then the committed glue5 front, each with how to read it; nothing written outside runs/."""

import json
import shutil
from pathlib import Path

from mgen_jax.cli import main
from mgen_jax.search import load_search_config

REPO = Path(__file__).parents[1]
CONFIG, FRONT = "configs/search/demo.yaml", "experiments/results/front_glue5.json"


def test_demo_runs_the_live_search_then_reads_the_committed_front(tmp_path, tiny_bert_dir, glue_dir, monkeypatch,
                                                                   capsys):
    for name in (CONFIG, FRONT):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    tasks = list(load_search_config(REPO / CONFIG).tasks)
    budget = "{" + ", ".join(f"{t}: {{examples: 64}}" for t in tasks) + "}"
    monkeypatch.chdir(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(["demo", "--no-progress", "--glue-dir", str(glue_dir), "--set", f"model={tiny_bert_dir}",
                 "--set", f"finetune_budget={budget}", "--set", "max_dev_per_task=32"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "runs" / "results" / "search_demo.json").read_text())
    [searched] = [p for p in record["points"] if p.get("method") == "gradient"]
    assert {p["kind"] for p in record["points"]} == {"search", "full sharing", "uniform"}
    assert searched["examples_seen"] == {t: 64 for t in tasks}
    assert out.index("1. A live run") < out.index("How to read it") < out.index("2. What sharing does")
    assert f"chose b = {','.join(map(str, searched['branch_points']))}" in out
    front = json.loads((REPO / FRONT).read_text())
    assert front["headline"]["sentence"] in out and "| independent |" in out
    written = [p for p in tmp_path.rglob("*") if p not in before and p.is_file()]
    assert written and all(p.relative_to(tmp_path).parts[0] == "runs" for p in written)


def test_demo_outside_the_repository_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 2
    assert "configs/search/demo.yaml" in capsys.readouterr().err
