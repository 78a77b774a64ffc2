"""mgen compress, and mgen simulate / cost / schedule --compressed, on the tiny runs (conftest.py)."""

import json

import pytest

from mgen_jax.cli import main


@pytest.fixture(scope="module")
def compressed_dir(tiny_runs, tmp_path_factory, tiny_bert_dir, glue_dir):
    out = tmp_path_factory.mktemp("compressed") / "model"
    code = main(["compress", "--source", str(tiny_runs), "--out", str(out), "--model", str(tiny_bert_dir),
                 "--budgets", "0.5", "--calibration-rows", "8", "--refine-steps", "0", "--tolerance", "100",
                 "--glue-dir", str(glue_dir)])
    assert code == 0
    return out


def _json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_cost_schedule_take_the_compressed_model(compressed_dir, tiny_bert_dir, capsys):
    report = json.loads((compressed_dir / "report.json").read_text())
    common = ["--tasks", "RTE,STS-B", "--model", str(tiny_bert_dir), "--tokens", "16", "--json",
              "--compressed", str(compressed_dir)]
    sim = _json(capsys, ["simulate"] + common)
    assert sim["crossbars"] == report["hardware"]["compressed"]["crossbars"]
    assert sim["compressed_nodes"] == len(report["plan"]["deltas"])
    est = _json(capsys, ["cost"] + common)
    assert est["crossbars"] == sim["crossbars"]
    assert est["energy_per_request_j"] == pytest.approx(sim["energy_per_request_j"], rel=1e-6)
    assert est["latency_per_request_s"] == pytest.approx(sim["latency_per_request_s"], rel=1e-6)
    plain = _json(capsys, ["simulate"] + common[:-2])
    kept = sum(len(m["kept_blocks"]) for d in report["plan"]["deltas"] for m in d["matrices"].values())
    assert kept > 0 and plain["energy_per_request_j"] < sim["energy_per_request_j"]  # base pass + delta pass
    sched = _json(capsys, ["schedule"] + common)
    assert sched["schedule"]["loads"] == 0 and sched["compressed_nodes"] == sim["compressed_nodes"]


def test_mismatches_exit_2_naming_the_flag(compressed_dir, tiny_bert_dir, capsys):
    base = ["simulate", "--model", str(tiny_bert_dir), "--tokens", "16", "--compressed", str(compressed_dir)]
    assert main(base + ["--tasks", "RTE,STS-B,MRPC"]) == 2
    assert "holds 2 tasks" in capsys.readouterr().err
    assert main(base + ["--tasks", "RTE,STS-B", "--branch-points", "1,1"]) == 2
    assert "--branch-points" in capsys.readouterr().err
    assert main(["compress", "--source", str(compressed_dir), "--out", str(compressed_dir / "x")]) == 2
    assert "not a fine-tuning run folder" in capsys.readouterr().err


def test_a_plan_is_checked_against_the_model_and_tasks(compressed_dir, tiny_runs, tiny_bert_dir, tmp_path, capsys):
    """The example of issue 35: a plan made for one model and task list was accepted with --model bert-base or other
    --tasks (rc 0, numbers of nothing)."""
    report = json.loads((compressed_dir / "report.json").read_text())
    assert report["plan"]["model"]["hidden"] == 32 and report["plan"]["tasks"] == ["RTE", "STS-B"]
    base = ["simulate", "--tokens", "16", "--compressed", str(compressed_dir)]
    for argv, words in ((["--model", "minilm-l6", "--tasks", "RTE,STS-B"], "made for another model"),
                        (["--model", "bert-base", "--tasks", "RTE,STS-B"], "made for another model"),
                        (["--model", str(tiny_bert_dir), "--tasks", "STS-B,RTE"], "made for tasks ['RTE', 'STS-B']"),
                        (["--model", str(tiny_bert_dir), "--tasks", "MRPC,RTE"], "made for tasks")):
        capsys.readouterr()
        assert main(base + argv) == 2, argv
        assert words in capsys.readouterr().err
    legacy = dict(report["plan"])
    del legacy["model"], legacy["tasks"]
    (tmp_path / "plan.json").write_text(json.dumps(legacy))
    capsys.readouterr()
    assert main(["simulate", "--model", str(tiny_bert_dir), "--tasks", "RTE,STS-B", "--tokens", "16", "--compressed",
                 str(tmp_path / "plan.json")]) == 2
    assert "does not record the model" in capsys.readouterr().err
    assert main(["compress", "--source", str(tiny_runs), "--out", str(tmp_path / "c"), "--model", "minilm-l6"]) == 2
    assert "fine-tuned from" in capsys.readouterr().err
