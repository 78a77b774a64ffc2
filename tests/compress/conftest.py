"""Tiny task models for the compression tests: fine-tuning run folders and a searched model folder of the tiny
random BERT (tests/conftest.py), 'fine-tuned' by adding noise to its weights (the real weights are not the point)."""

import json

import jax
import numpy as np
import pytest

from mgen_jax.train.checkpoint import save_checkpoint

RUN_FIELDS = dict(pooling="mean", max_length=64, heldout_fraction=0.1, heldout_max_rows=40, heldout_seed=0,
                  data_seed=0, max_train_examples=None)


def _tiny_classifier(tiny_bert_dir, num_labels, seed, scale=0.05):
    """The tiny pretrained encoder plus noise (a stand-in for fine-tuning) and a random head."""
    import jax.numpy as jnp

    from mgen_jax.model.bert import SequenceClassifier
    from mgen_jax.model.pretrained import load_pretrained

    pre = load_pretrained(tiny_bert_dir)
    module = SequenceClassifier(pre.config, num_labels, "mean")
    ones = jnp.ones((1, 4), jnp.int32)
    head = module.init(jax.random.PRNGKey(seed), ones, ones, ones)["params"]["head"]
    rng = np.random.default_rng(seed)
    encoder = jax.tree.map(lambda w: np.asarray(w) + scale * rng.normal(size=np.shape(w)).astype(np.float32),
                           jax.device_get(pre.params))
    return {"encoder": encoder, "head": jax.device_get(head)}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_bert_dir):
    """Two 'fine-tuning run' folders (RTE, MRPC) of the tiny BERT."""
    root = tmp_path_factory.mktemp("runs")
    for seed, (task, labels) in enumerate((("RTE", 2), ("STS-B", 1))):
        run = root / task
        run.mkdir()
        save_checkpoint(run / "final_params.msgpack", _tiny_classifier(tiny_bert_dir, labels, seed))
        (run / "config.json").write_text(json.dumps({"config": RUN_FIELDS | {"task": task,
                                                                             "model": str(tiny_bert_dir)}}))
    return root


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, tiny_bert_dir):
    """<sweep>/settings.json + <sweep>/models/b_1-3/{params.msgpack, result.json}: RTE branches after unit 1, STS-B
    after unit 3 (of 4)."""
    from mgen_jax.model.multitask import MultiTaskModel
    from mgen_jax.model.pretrained import load_pretrained

    root = tmp_path_factory.mktemp("sweep")
    pre = load_pretrained(tiny_bert_dir)
    rte, stsb = _tiny_classifier(tiny_bert_dir, 2, 5), _tiny_classifier(tiny_bert_dir, 1, 6)
    trunk = _tiny_classifier(tiny_bert_dir, 2, 7, scale=0.02)["encoder"]
    params = MultiTaskModel(pre.config, (2, 1), "mean").from_encoders(trunk, [rte["encoder"], stsb["encoder"]],
                                                                      [rte["head"], stsb["head"]])
    folder = root / "models" / "b_1-3"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "params.msgpack", jax.device_get(params))
    (folder / "result.json").write_text(json.dumps({"branch_points": [1, 3], "scores": {}}))
    (root / "settings.json").write_text(json.dumps(RUN_FIELDS | {"tasks": ["RTE", "STS-B"], "model": str(tiny_bert_dir),
                                                                 "max_train_per_task": None}))
    return folder
