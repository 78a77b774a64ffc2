"""Several processes (jax.distributed on localhost, CPU collectives through gloo): a tiny fine-tuning run on two
processes of one CPU device each matches one process; only process 0 writes; the environment variables are checked."""

import json

import jax
import numpy as np
import pytest

from mgen_jax.errors import ConfigError
from mgen_jax.train.parallel import distributed_settings


SCRIPT = """
import json, sys, jax
from mgen_jax.train import FinetuneConfig, train_and_evaluate
cfg = FinetuneConfig(**json.loads(sys.argv[1]))
s = train_and_evaluate(cfg, sys.argv[2], glue_dir=sys.argv[3], progress=False)
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": len(jax.devices()),
                  "metrics": s["metrics"], "heldout": s["heldout_metrics"]}))
"""


def test_two_processes_match_one(tmp_path, tiny_bert_dir, glue_dir, run_processes):
    from mgen_jax.train import FinetuneConfig, train_and_evaluate
    from mgen_jax.train.checkpoint import restore_checkpoint

    values = dict(task="SST-2", model=str(tiny_bert_dir), max_train_examples=48, max_dev_examples=32, epochs=1,
                  batch_size=8, eval_batch_size=16, learning_rate=1e-3, checkpoint_every_steps=2, eval_every_steps=3,
                  max_length=64, buckets=[64], heldout_max_rows=16)
    outs = run_processes(["-c", SCRIPT, json.dumps(values), str(tmp_path / "two"), str(glue_dir)], 2)
    two = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    assert [(r["process"], r["processes"], r["devices"]) for r in two] == [(0, 2, 2), (1, 2, 2)]
    assert two[0]["metrics"] == two[1]["metrics"]  # evaluation gathered: both processes see every row
    one = train_and_evaluate(FinetuneConfig(**values), tmp_path / "one", glue_dir=glue_dir, progress=False)
    for name in ("config.json", "summary.json"):
        assert json.loads((tmp_path / "two" / name).read_text())["devices"] == 2
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2
    # one writer: every metrics line once (evaluations at steps 3, 6), as in the one-process run
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6]
    assert [r["step"] for r in map(json.loads, (tmp_path / "one" / "metrics.jsonl").read_text().splitlines())] == [3, 6]
    a = restore_checkpoint(tmp_path / "one" / "final_params.msgpack", None)
    b = restore_checkpoint(tmp_path / "two" / "final_params.msgpack", None)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, atol=2e-4)
    for kind, ours in (("metrics", one["metrics"]), ("heldout", one["heldout_metrics"])):
        assert abs(two[0][kind]["accuracy"] - ours["accuracy"]) <= 1 / 16 + 1e-9  # at most one example flips
    assert not list((tmp_path / "two").glob(".*partial*"))


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"MGEN_DISTRIBUTED": "off", "MGEN_COORDINATOR": "h:1"}, None),
    ({"MGEN_DISTRIBUTED": "auto"}, {}),
    ({"MGEN_COORDINATOR": "10.0.0.1:1234", "MGEN_NUM_PROCESSES": "4", "MGEN_PROCESS_ID": "3"},
     {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}),
])
def test_distributed_settings(env, expected):
    assert distributed_settings(env) == expected


@pytest.mark.parametrize("env, words", [
    ({"MGEN_COORDINATOR": "nohost", "MGEN_NUM_PROCESSES": "2", "MGEN_PROCESS_ID": "0"}, "host:port"),
    ({"MGEN_COORDINATOR": "h:1", "MGEN_PROCESS_ID": "0"}, "MGEN_NUM_PROCESSES must be an integer"),
    ({"MGEN_COORDINATOR": "h:1", "MGEN_NUM_PROCESSES": "2", "MGEN_PROCESS_ID": "2"}, "MGEN_PROCESS_ID must be >= 0 and < 2"),
    ({"MGEN_DISTRIBUTED": "yes"}, "MGEN_DISTRIBUTED"),
])
def test_bad_distributed_settings(env, words):
    with pytest.raises(ConfigError, match=words):
        distributed_settings(env)


def test_joining_after_jax_started_is_a_clear_error():
    from mgen_jax.train.parallel import init_distributed

    jax.devices()  # JAX has started in this process
    with pytest.raises(ConfigError, match="already started"):
        init_distributed({"MGEN_COORDINATOR": "127.0.0.1:1", "MGEN_NUM_PROCESSES": "2", "MGEN_PROCESS_ID": "0"})
