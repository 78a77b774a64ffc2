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


def _sweep_folder(root, tiny_bert_dir, tasks, branch_points):
    """<root>/settings.json + <root>/models/b_<...>/{params.msgpack, result.json} of the tiny BERT: ``tasks`` ((name,
    labels) pairs) branching at ``branch_points``; a noisy trunk, each task's own units and head from its own seed."""
    from mgen_jax.model.multitask import MultiTaskModel
    from mgen_jax.model.pretrained import load_pretrained

    pre = load_pretrained(tiny_bert_dir)
    tuned = [_tiny_classifier(tiny_bert_dir, labels, 5 + i) for i, (_, labels) in enumerate(tasks)]
    trunk = _tiny_classifier(tiny_bert_dir, 2, 7, scale=0.02)["encoder"]
    params = MultiTaskModel(pre.config, tuple(labels for _, labels in tasks), "mean").from_encoders(
        trunk, [m["encoder"] for m in tuned], [m["head"] for m in tuned])
    folder = root / "models" / ("b_" + "-".join(str(b) for b in branch_points))
    folder.mkdir(parents=True)
    save_checkpoint(folder / "params.msgpack", jax.device_get(params))
    (folder / "result.json").write_text(json.dumps({"branch_points": list(branch_points), "scores": {}}))
    (root / "settings.json").write_text(json.dumps(RUN_FIELDS | {"tasks": [name for name, _ in tasks],
                                                                 "model": str(tiny_bert_dir), "max_train_per_task": None}))
    return folder


@pytest.fixture(scope="session")
def make_sweep_folder(tiny_bert_dir):
    """make(root, tasks, branch_points) -> a searched model folder of the tiny BERT (tasks: (name, labels) pairs)."""
    return lambda root, tasks, branch_points: _sweep_folder(root, tiny_bert_dir, tasks, branch_points)


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, tiny_bert_dir):
    """A searched model folder (make_sweep_folder): RTE branches after unit 1, STS-B after unit 3 (of 4)."""
    return _sweep_folder(tmp_path_factory.mktemp("sweep"), tiny_bert_dir, (("RTE", 2), ("STS-B", 1)), (1, 3))
