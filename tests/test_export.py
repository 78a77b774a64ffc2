"""mgen export: a fine-tuned run and a multi-task model as Hugging Face BERT directories; read back with our loader
and, where torch and transformers are installed, with PyTorch's BertModel, they give the model's own outputs."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax import cli
from mgen_jax.errors import ConfigError
from mgen_jax.export import export_run, head_outputs, load_export, load_exported
from mgen_jax.model.bert import SequenceClassifier
from mgen_jax.model.multitask import MultiTaskModel
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.train import FinetuneConfig, train_and_evaluate
from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


def _batch(seed=0, b=3, length=9):
    rng = np.random.default_rng(seed)
    mask = np.ones((b, length), np.int32)
    mask[1, 5:] = 0
    return rng.integers(1000, 5000, (b, length)).astype(np.int32), mask, np.zeros((b, length), np.int32)


def _torch_hidden(directory, ids, mask, types):
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     token_type_ids=torch.tensor(types)).last_hidden_state.numpy()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_dir, glue_dir):
    run = tmp_path_factory.mktemp("stsb")
    cfg = FinetuneConfig(task="STS-B", model=str(tiny_bert_dir), max_train_examples=24, max_dev_examples=8,
                         epochs=1, batch_size=8, eval_batch_size=8, learning_rate=1e-3, buckets=(64, 128),
                         heldout_max_rows=8)
    train_and_evaluate(cfg, run, glue_dir=glue_dir, progress=False)
    return run


def test_export_of_a_fine_tuned_run(tiny_run, tmp_path, capsys):
    assert cli.main(["export", "--run", str(tiny_run), "--out", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [str(tmp_path / "STS-B")]
    pretrained, head, info = load_export(tmp_path / "STS-B")
    assert info["num_labels"] == 1 and info["problem_type"] == "regression" and info["pooling"] == "mean"
    tuned = restore_checkpoint(tiny_run / "final_params.msgpack", None)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(pretrained.params), jax.tree.leaves(tuned["encoder"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    ids, mask, types = _batch()
    ours = np.asarray(SequenceClassifier(pretrained.config, 1).apply({"params": tuned}, ids, mask, types))
    hidden = np.asarray(pretrained(ids, mask, types))
    np.testing.assert_allclose(head_outputs(hidden, mask, head), ours, rtol=1e-4, atol=1e-5)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "head.json"):
        assert (tmp_path / "STS-B" / name).is_file()
    if HAS_TORCH:  # the standard loader reads the same encoder
        np.testing.assert_allclose(_torch_hidden(tmp_path / "STS-B", ids, mask, types), hidden, atol=1e-4)


def _multitask_export(tmp_path, tiny_bert_dir):
    """A 3-task discrete model (SST-2, STS-B, MNLI at b = 2, 4, 0) exported: (model, params, tasks, b, written)."""
    pretrained = load_pretrained(tiny_bert_dir)
    tasks, b = ["SST-2", "STS-B", "MNLI"], [2, 4, 0]
    model = MultiTaskModel(pretrained.config, [2, 1, 3])
    noisy = lambda s: jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(s), x.shape),
                                   pretrained.params)
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(3)]
    params = model.from_encoders(pretrained.params, [noisy(1), noisy(2), noisy(3)], heads)
    folder = tmp_path / "sweep" / "models" / "b_2-4-0"
    folder.mkdir(parents=True)
    save_checkpoint(folder / "params.msgpack", params)
    (folder / "result.json").write_text(json.dumps({"branch_points": b}))
    (tmp_path / "sweep" / "settings.json").write_text(json.dumps({"tasks": tasks, "model": str(tiny_bert_dir)}))
    return model, params, tasks, b, export_run(folder, tmp_path / "out")


def test_export_of_a_multitask_model(tmp_path, tiny_bert_dir):
    """Every task's export equals that task's path through the discrete model: trunk before its branch point,
    its own units after, its head cut to its labels."""
    model, params, tasks, b, written = _multitask_export(tmp_path, tiny_bert_dir)
    assert [p.name for p in written] == tasks
    ids, mask, types = _batch(1)
    batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "token_type_ids": jnp.asarray(types)}
    for t, task in enumerate(tasks):
        exported, head, info = load_export(tmp_path / "out" / task)
        assert info["branch_point"] == b[t] and head["classifier.weight"].shape[0] == [2, 1, 3][t]
        expected = np.asarray(model.task_forward(params, t, b[t], batch))[:, : [2, 1, 3][t]]
        hidden = np.asarray(exported(ids, mask, types))
        np.testing.assert_allclose(head_outputs(hidden, mask, head), expected, rtol=1e-4, atol=1e-5)
        if HAS_TORCH:
            np.testing.assert_allclose(_torch_hidden(tmp_path / "out" / task, ids, mask, types), hidden, atol=1e-4)


def test_load_exported_applies_the_head_and_transformers_loads_cleanly(tmp_path, tiny_bert_dir, capfd):
    """``load_exported`` gives the model's own logits and the task's labels (scores for STS-B); transformers'
    BertModel finds every weight it expects (the pooler holds the head's pooler), so it warns of nothing missing or
    newly initialized."""
    from safetensors.numpy import load_file

    model, params, tasks, b, written = _multitask_export(tmp_path, tiny_bert_dir)
    ids, mask, types = _batch(2)
    batch = {"input_ids": jnp.asarray(ids), "attention_mask": jnp.asarray(mask), "token_type_ids": jnp.asarray(types)}
    for t, directory in enumerate(written):
        exported = load_exported(directory)
        expected = np.asarray(model.task_forward(params, t, b[t], batch))[:, : [2, 1, 3][t]]
        np.testing.assert_allclose(exported.logits(ids, mask, types), expected, rtol=1e-4, atol=1e-5)
        answers = exported.predict(["a gripping film", "dull"], ["it grips", "it bores"])
        if exported.info["problem_type"] == "regression":
            assert all(isinstance(a, float) for a in answers)
        else:
            assert set(answers) <= set(exported.info["labels"]) and len(answers) == 2
        weights = load_file(str(directory / "model.safetensors"))
        np.testing.assert_array_equal(weights["pooler.dense.weight"], exported.head["pooler.weight"])
    if HAS_TORCH:
        from transformers import BertModel

        capfd.readouterr()
        BertModel.from_pretrained(str(written[0]))
        err = capfd.readouterr().err
        assert "MISSING" not in err and "newly initialized" not in err and "not initialized" not in err, err


def test_export_of_something_else_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ConfigError, match="neither a fine-tuning run"):
        export_run(tmp_path, tmp_path / "out")
    assert cli.main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
