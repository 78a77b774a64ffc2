"""Model generator, the step side: relaxed == discrete at one-hot p, the energy term's pull on real data, hard and
enumerated sampling, the loss profile, distillation and task weights in the discrete step (work folders and the sweep:
test_generator.py)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgen_jax import cost
from mgen_jax.data.glue import get_task
from mgen_jax.errors import ConfigError
from mgen_jax.model import load_pretrained
from mgen_jax.model.multitask import MultiTaskModel, onehot_p
from mgen_jax.search import ModelGenerator, load_search_config
from mgen_jax.search.steps import RelaxedState, energy_model, expected_branch_points, make_relaxed_step

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def pretrained():
    return load_pretrained("minilm-l6")


@pytest.fixture(scope="module")
def tiny(tiny_bert_dir):
    """The tiny random BERT (2 layers, 4 units): for the step identities, which hold for any weights; the real model
    keeps one test per behaviour (relaxed == discrete, the energy term's pull, the fine-tuning loop)."""
    return load_pretrained(str(tiny_bert_dir))


@jax.jit
def _perturb(params, key, scale):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _perturbed(params, seed, scale=0.02):
    """params + scale x N(0, 1) noise (one compiled program per parameter tree, not one per operation)."""
    return _perturb(params, jax.random.PRNGKey(seed), jnp.float32(scale))


def test_relaxed_equals_discrete_at_onehot_p(pretrained):
    model = MultiTaskModel(pretrained.config, (2, 1, 3))
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(3)]
    params = model.from_encoders(pretrained.params, [_perturbed(pretrained.params, s) for s in (1, 2, 3)], heads)
    rng = np.random.default_rng(0)
    batch = {"input_ids": jnp.asarray(rng.integers(1000, 5000, (3, 2, 12)), jnp.int32),
             "token_type_ids": jnp.zeros((3, 2, 12), jnp.int32), "attention_mask": jnp.ones((3, 2, 12), jnp.int32)}
    relaxed, discrete = jax.jit(model.relaxed_forward), jax.jit(model.discrete_forward)
    task_forward = jax.jit(model.task_forward, static_argnums=(1, 2))
    for b in ([0, 5, 12], [12, 12, 12], [3, 3, 0]):
        out_r, out_d = relaxed(params, batch, onehot_p(b, 12)), discrete(params, batch, jnp.asarray(b))
        np.testing.assert_allclose(out_r, out_d, atol=1e-5)
        if b[0] == 0:  # one task alone at one branch point (each branch point is one more compilation)
            one = task_forward(params, 1, b[1], {k: v[1] for k, v in batch.items()})
            np.testing.assert_allclose(one, out_d[1], atol=1e-5)
    # and a relaxed p strictly between gives something else
    mid = relaxed(params, batch, jnp.full((3, 12), 0.5))
    assert float(jnp.abs(mid - discrete(params, batch, jnp.asarray([0, 0, 0]))).max()) > 1e-3


def _logit_pulls(pretrained, glue_dir, own_encoder, own_head):
    """{(sampling, lambda): E[b] of both tasks} after 4 logit-only steps (weights frozen) on real SST-2 / CoLA slices
    (8 rows of each task per step, 32 tokens),
    for soft and straight-through ("hard") samples at lambda 0 and 50. Lambda is an argument of the step: one
    compiled step per sampling runs both lambdas, each from the same starting state and batches."""
    from mgen_jax.search.data import MultiTaskData
    from mgen_jax.workload.glue import glue_trace

    tasks = [get_task("SST-2"), get_task("CoLA")]
    model = MultiTaskModel(pretrained.config, (2, 2))
    data = MultiTaskData(["SST-2", "CoLA"], pretrained.tokenizer, max_length=32, buckets=(32,), per_task_batch=8,
                         length_window=32, seed=0, glue_dir=glue_dir, max_dev_per_task=8)
    batches = [{key: jnp.asarray(v) for key, v in data.mixed_batch(k).items()} for k in range(4)]
    trace = glue_trace(["SST-2", "CoLA"], glue_dir=glue_dir, max_length=32)
    energy = energy_model(pretrained.config, __import__("mgen_jax").hw.load_spec("isaac"), (2, 2), trace)
    tx_w, tx_l = optax.set_to_zero(), optax.adam(0.2)
    pulls = {}
    for sampling in ("soft", "hard"):
        step = make_relaxed_step(model, tasks, tx_w, tx_l, energy, jax.random.PRNGKey(0), sampling=sampling)
        for lam in (0.0, 50.0):
            params = model.from_encoders(pretrained.params, [own_encoder, pretrained.params],
                                         [own_head, model.init_head(jax.random.PRNGKey(9))])
            logits = jnp.zeros((2, 13))
            state = RelaxedState(jnp.int32(0), params, tx_w.init(params), logits, tx_l.init(logits))
            for batch in batches:
                state, _ = step(state, batch, jnp.float32(lam), jnp.float32(1.0), jnp.float32(1.0))
            pulls[sampling, lam] = expected_branch_points(state.logits)
    return pulls


def test_energy_term_moves_branch_points(pretrained, glue_dir, tmp_path):
    """SST-2's own units come from a briefly fine-tuned model, so its task loss prefers them: with lambda = 0 its
    branch point moves away from sharing; with a large lambda the energy term moves both tasks toward sharing; with
    soft mixtures and with straight-through samples (one discrete model per step) alike."""
    from mgen_jax.train import load_config, train_and_evaluate
    from mgen_jax.train.checkpoint import restore_checkpoint

    cfg = load_config(REPO / "configs/finetune/quick.yaml", max_train_examples=128, max_length=32)
    cfg = type(cfg)(**(cfg.to_dict() | {"buckets": (32,), "max_dev_examples": 16, "heldout_fraction": 0.0}))
    train_and_evaluate(cfg, tmp_path, glue_dir=glue_dir, progress=False)
    tuned = restore_checkpoint(tmp_path / "final_params.msgpack", None)
    pulls = _logit_pulls(pretrained, glue_dir, tuned["encoder"], tuned["head"])
    start = 6.0  # E[b] under uniform logits over 0..12
    for sampling in ("soft", "hard"):
        no_energy, strong = pulls[sampling, 0.0], pulls[sampling, 50.0]
        assert no_energy[0] < start - 0.3, (sampling, no_energy)
        assert strong[0] > start + 0.3 and strong[1] > start + 0.3, (sampling, strong)


def _small_search_setup(pretrained, glue_dir, names):
    """Two tasks on a BERT without dropout, perturbed own units, a real mixed batch and the cost model."""
    import dataclasses

    from mgen_jax.search.data import MultiTaskData
    from mgen_jax.workload.glue import glue_trace

    tasks = [get_task(n) for n in names]
    labels = tuple(t.num_labels for t in tasks)
    bert = dataclasses.replace(pretrained.config, hidden_dropout=0.0, attention_dropout=0.0)
    model = MultiTaskModel(bert, labels)
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(len(tasks))]
    params = model.from_encoders(pretrained.params, [_perturbed(pretrained.params, s) for s in (1, 2)], heads)
    data = MultiTaskData(list(names), pretrained.tokenizer, max_length=32, buckets=(32,), per_task_batch=4,
                         length_window=16, seed=0, glue_dir=glue_dir, max_dev_per_task=8)
    energy = energy_model(bert, __import__("mgen_jax").hw.load_spec("isaac"), labels,
                          glue_trace(list(names), glue_dir=glue_dir, max_length=32))
    batch = {key: jnp.asarray(v) for key, v in data.mixed_batch(0).items()}
    return tasks, model, params, energy, batch


@pytest.fixture(scope="module")
def small_setup(tiny, glue_dir):
    """names -> _small_search_setup(tiny, glue_dir, names) on the tiny BERT, built once per pair of tasks in this
    module: the tests only read it (the steps they run are given copies of the parameters)."""
    built = {}

    def get(names):
        if names not in built:
            built[names] = _small_search_setup(tiny, glue_dir, names)
        return built[names]

    return get


def test_hard_sampling_runs_the_sampled_discrete_model(small_setup):
    """With sampling="hard" the step's task losses are those of the discrete model b = argmax(logits + g), and its
    energy term is the expectation under softmax(logits / tau), not the sample's energy."""
    from mgen_jax.search.steps import task_losses

    tasks, model, params, energy, batch = small_setup(("SST-2", "CoLA"))
    logits = jnp.asarray(np.random.default_rng(3).normal(size=(2, model.cfg.num_units + 1)), jnp.float32)
    tx = optax.set_to_zero()
    base = jax.random.PRNGKey(7)
    step = make_relaxed_step(model, tasks, tx, tx, energy, base, sampling="hard")
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # the step donates its state
    state = RelaxedState(jnp.int32(0), copy(params), tx.init(params), jnp.copy(logits), tx.init(logits))
    _, (losses, ratio, _) = step(state, batch, jnp.float32(1.0), jnp.float32(0.5), jnp.float32(1.0))
    noise_rng, _ = jax.random.split(jax.random.fold_in(base, 0))
    b = jnp.argmax(logits + jax.random.gumbel(noise_rng, logits.shape), axis=-1)
    expected = task_losses(model, tasks, jax.jit(model.discrete_forward)(params, batch, b), batch)
    np.testing.assert_allclose(losses, expected, rtol=1e-4, atol=1e-5)
    soft = cost.expected_energy(cost.branch_probs(logits / 0.5), energy.tables, energy.workload).total_j
    assert float(ratio) == pytest.approx(float(soft) / energy.independent_j, rel=1e-5)


def test_loss_profile_rows_are_the_discrete_models(tiny):
    """Row b of the loss profile is task t's loss under b shared units: b = 0 ignores the trunk's units, b = U
    ignores the task's own units; and every row equals the discrete forward pass at that b."""
    from mgen_jax.search.steps import make_loss_profile, task_losses

    tasks = [get_task("SST-2"), get_task("STS-B")]
    model = MultiTaskModel(tiny.config, (2, 1))
    units = tiny.config.num_units
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(2)]
    params = model.from_encoders(tiny.params, [_perturbed(tiny.params, s) for s in (1, 2)], heads)
    rng = np.random.default_rng(0)
    mask = np.ones((2, 3, 10), np.int32)
    mask[0, 1, 6:] = mask[1, 2, 4:] = 0  # padded examples: the attention bias must follow every row
    batch = {"input_ids": jnp.asarray(rng.integers(1000, 5000, (2, 3, 10)), jnp.int32),
             "token_type_ids": jnp.zeros((2, 3, 10), jnp.int32), "attention_mask": jnp.asarray(mask),
             "labels": jnp.asarray([[0.0, 1.0, 1.0], [0.5, 4.0, 2.5]]), "weights": jnp.ones((2, 3))}
    profile = make_loss_profile(model, tasks)
    rows = np.asarray(profile(params, batch))
    assert rows.shape == (units + 1, 2)
    discrete = jax.jit(model.discrete_forward)
    for b in range(units + 1):  # the rows share trunk prefixes: each must still be its own discrete model
        expected = task_losses(model, tasks, discrete(params, batch, jnp.asarray([b, b])), batch)
        np.testing.assert_allclose(rows[b], expected, rtol=1e-5)
    other_trunk = dict(params) | {"trunk": _perturbed(params["trunk"], 9, scale=0.2)}
    other_own = dict(params) | {"own": _perturbed(params["own"], 9, scale=0.2)}
    np.testing.assert_allclose(np.asarray(profile(other_trunk, batch))[0], rows[0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(profile(other_own, batch))[units], rows[units], rtol=1e-5)
    assert np.abs(np.asarray(profile(other_trunk, batch))[units] - rows[units]).max() > 1e-3
    assert np.abs(np.asarray(profile(other_own, batch))[0] - rows[0]).max() > 1e-3


@pytest.mark.parametrize("weights", [None, (2.0, 0.25)])
def test_enumerate_gives_the_logits_the_exact_expected_loss_gradient(small_setup, weights):
    """sampling="enumerate": the logits' step is the gradient of sum_t w_t sum_b q_t(b) loss_t(b) + lambda * E(q) / E0
    with loss_t(b) from every discrete model on the batch (checked against the loss profile, by plain SGD; w_t = 1
    unless task weights are given), and the reported task losses are those of the sampled discrete model."""
    from mgen_jax.search.steps import make_loss_profile

    tasks, model, params, energy, batch = small_setup(("SST-2", "STS-B"))
    logits = jnp.asarray(np.random.default_rng(4).normal(size=(2, model.cfg.num_units + 1)), jnp.float32)
    lam, tau = 3.0, 0.7
    base = jax.random.PRNGKey(11)
    step = make_relaxed_step(model, tasks, optax.set_to_zero(), optax.sgd(1.0), energy, base, sampling="enumerate",
                             task_weights=weights)
    w = np.ones(2) if weights is None else np.asarray(weights)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    state = RelaxedState(jnp.int32(0), copy(params), optax.set_to_zero().init(params), jnp.copy(logits),
                         optax.sgd(1.0).init(logits))
    new_state, (losses, ratio, total) = step(state, batch, jnp.float32(lam), jnp.float32(tau), jnp.float32(1.0))
    profile = np.asarray(make_loss_profile(model, tasks)(params, batch))  # [U + 1, 2]

    def objective(lg):
        q = jax.nn.softmax(lg / tau, axis=-1)
        e = cost.expected_energy(cost.branch_probs_from_dist(q), energy.tables, energy.workload).total_j
        return jnp.sum(q * w[:, None] * profile.T) + lam * e / energy.independent_j

    np.testing.assert_allclose(np.asarray(new_state.logits), np.asarray(logits - jax.grad(objective)(logits)),
                               rtol=1e-4, atol=1e-6)
    noise_rng, _ = jax.random.split(jax.random.fold_in(base, 0))
    b = np.asarray(jnp.argmax(logits + jax.random.gumbel(noise_rng, logits.shape), axis=-1))
    np.testing.assert_allclose(losses, profile[b, [0, 1]], rtol=1e-4)  # no dropout here: the sampled model's loss
    assert float(total) == pytest.approx(float(np.sum(losses)) + lam * float(ratio), rel=1e-5)


def test_dims_mismatch_is_a_clear_error(pretrained, glue_dir):
    from mgen_jax import hw
    from mgen_jax.workload import fixed_trace

    with pytest.raises(ConfigError, match="trace has 3 tasks"):
        energy_model(pretrained.config, hw.load_spec("isaac"), (2, 2), fixed_trace(3, 8))
    tables = cost.build_tables(hw.load_spec("isaac"), hw.load_arch("bert-base"), (2, 2))
    with pytest.raises(ConfigError, match="disagree"):
        cost.expected_energy(jnp.zeros((2, 12)), tables, cost.fixed_workload(2, 8))
    model = MultiTaskModel(pretrained.config, (2, 2))
    shallow = {k: v for k, v in pretrained.params.items() if k not in ("unit_10", "unit_11")}
    with pytest.raises(ConfigError, match="depth"):
        model.from_encoders(shallow, [pretrained.params] * 2, [model.init_head(jax.random.PRNGKey(0))] * 2)


def test_separate_forward_is_each_task_model_alone(tiny):
    """The teachers' forward pass: task t's sub-batch through its own complete model (embeddings included) equals
    the single-task SequenceClassifier with those parameters, for a 2-label and a 1-label (padded) head."""
    from mgen_jax.model.bert import SequenceClassifier

    model = MultiTaskModel(tiny.config, (2, 1))
    encoders = [_perturbed(tiny.params, s) for s in (4, 5)]
    heads = [model.init_head(jax.random.PRNGKey(i)) for i in range(2)]
    heads[1] = {"pooler": heads[1]["pooler"], "classifier": {"kernel": heads[1]["classifier"]["kernel"][:, :1],
                                                             "bias": heads[1]["classifier"]["bias"][:1]}}
    separate = model.separate_params(encoders, heads)
    rng = np.random.default_rng(1)
    mask = np.ones((2, 3, 9), np.int32)
    mask[0, 2, 5:] = mask[1, 0, 3:] = 0
    batch = {"input_ids": jnp.asarray(rng.integers(1000, 5000, (2, 3, 9)), jnp.int32),
             "token_type_ids": jnp.asarray(rng.integers(0, 2, (2, 3, 9)), jnp.int32), "attention_mask": jnp.asarray(mask)}
    out = np.asarray(jax.jit(model.separate_forward)(separate, batch))
    for t, labels in enumerate((2, 1)):
        ref = SequenceClassifier(tiny.config, labels).apply(
            {"params": {"encoder": encoders[t], "head": heads[t]}}, batch["input_ids"][t], batch["attention_mask"][t],
            batch["token_type_ids"][t])
        np.testing.assert_allclose(out[t, :, :labels], ref, rtol=1e-5, atol=1e-5)
    shared = model.from_encoders(encoders[0], encoders, heads)  # task 1 would use task 0's embeddings
    assert np.abs(np.asarray(model.discrete_forward(shared, batch, jnp.asarray([0, 0])))[1] - out[1]).max() > 1e-4


def test_distillation_losses_by_hand():
    """KL at temperature T (times T^2) for classification over the task's own labels, squared difference for
    regression, padded examples left out, zero when student and teacher agree."""
    from types import SimpleNamespace

    from mgen_jax.search.steps import distillation_losses

    tasks = [get_task("SST-2"), get_task("STS-B")]
    model = SimpleNamespace(max_labels=2)
    student = jnp.asarray([[[1.0, 0.0], [5.0, 5.0]], [[2.5, 7.0], [9.0, 0.0]]])
    teacher = jnp.asarray([[[0.0, 1.0], [0.0, 0.0]], [[3.0, -4.0], [0.0, 0.0]]])
    batch = {"weights": jnp.asarray([[1.0, 0.0], [1.0, 0.0]])}  # the second example of each task is padding
    temperature = 2.0
    p = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()  # teacher / T
    q = np.exp([0.5, 0.0]) / np.exp([0.5, 0.0]).sum()  # student / T
    expected = [temperature ** 2 * float(np.sum(p * np.log(p / q))), (2.5 - 3.0) ** 2]
    got = np.asarray(distillation_losses(model, tasks, student, teacher, batch, temperature))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(distillation_losses(model, tasks, student, student, batch, 3.0), [0.0, 0.0], atol=1e-6)


def test_distillation_step_follows_the_teachers(tiny, small_setup):
    """distill_weight 1: the update ignores the labels and pulls the student toward the teachers (its distillation
    loss falls); distill_weight 0: the update ignores the teachers; a missing teacher is a clear error."""
    from mgen_jax.search.steps import DiscreteState, distillation_losses, make_discrete_step

    tasks, model, params, _, batch = small_setup(("SST-2", "STS-B"))
    heads = [jax.tree.map(lambda x: 30.0 * x, model.init_head(jax.random.PRNGKey(i))) for i in (7, 8)]  # confident
    teachers = model.separate_params([_perturbed(tiny.params, s, scale=0.05) for s in (7, 8)], heads)
    other = model.separate_params([_perturbed(tiny.params, s, scale=0.05) for s in (9, 10)], heads)
    b = jnp.asarray([1, 3])
    shuffled = dict(batch) | {"labels": batch["labels"][:, ::-1] * 0.5}
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]

    def run(weight, batches, teach, tx=optax.sgd(1e-3)):
        step = make_discrete_step(model, tasks, tx, jax.random.PRNGKey(0), distill_weight=weight,
                                  distill_temperature=2.0)
        state = DiscreteState(jnp.int32(0), copy(params), tx.init(params))
        for x in batches:
            state, _ = step(state, x, b, teach)
        return state.params

    for x, y in zip(leaves(run(1.0, [batch], teachers)), leaves(run(1.0, [shuffled], teachers))):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    for x, y in zip(leaves(run(0.0, [batch], teachers)), leaves(run(0.0, [batch], other))):
        np.testing.assert_array_equal(x, y)
    distill = jax.jit(lambda p: distillation_losses(
        model, tasks, model.discrete_forward(p, batch, b), model.separate_forward(teachers, batch), batch, 2.0))
    before = np.asarray(distill(params))
    after = np.asarray(distill(run(1.0, [batch] * 4, teachers, optax.adam(1e-2))))
    assert np.all(before > 0.05) and np.all(after < 0.9 * before), (before, after)
    with pytest.raises(ConfigError, match="teachers"):
        make_discrete_step(model, tasks, optax.sgd(1e-3), jax.random.PRNGKey(0), distill_weight=0.5)(
            DiscreteState(jnp.int32(0), copy(params), optax.sgd(1e-3).init(params)), batch, b)


def test_finetune_task_weights_scale_each_tasks_pull(small_setup):
    """finetune_task_weights v: with SGD, task t's head moves v_t x as far as with no weights (a head feeds only its
    own loss), the shared weights move 2 x as far with v = (2, 2), and a bad weight vector is a clear error."""
    from mgen_jax.search.steps import DiscreteState, make_discrete_step

    tasks, model, params, _, batch = small_setup(("SST-2", "STS-B"))
    b = jnp.asarray([1, 3])
    tx = optax.sgd(1.0)  # one step: the update is linear in the weights (float32 rounding of new - old <= 5e-7)

    def update(weights):
        step = make_discrete_step(model, tasks, tx, jax.random.PRNGKey(0), task_weights=weights)
        start = jax.tree.map(jnp.copy, params)
        state, _ = step(DiscreteState(jnp.int32(0), start, tx.init(start)), batch, b)
        return jax.tree.map(lambda new, old: np.asarray(new - old, np.float64), state.params, params)

    plain, weighted, doubled = update(None), update([3.0, 0.5]), update([2.0, 2.0])
    for task, v in enumerate((3.0, 0.5)):
        for x, y in zip(jax.tree.leaves(weighted["heads"]), jax.tree.leaves(plain["heads"])):
            assert np.abs(y[task]).max() > 0
            np.testing.assert_allclose(x[task], v * y[task], rtol=1e-4, atol=5e-7)
    assert max(np.abs(x).max() for x in jax.tree.leaves(plain["trunk"])) > 0
    for x, y in zip(jax.tree.leaves(doubled), jax.tree.leaves(plain)):
        np.testing.assert_allclose(x, 2.0 * y, rtol=1e-4, atol=5e-7)
    for bad in ([1.0], [1.0, 0.0], [1.0, -2.0]):
        with pytest.raises(ConfigError, match="task weights"):
            make_discrete_step(model, tasks, tx, jax.random.PRNGKey(0), task_weights=bad)


def test_distillation_in_the_generator(tmp_path, glue_dir, tiny_bert_dir):
    """distill_weight reaches the fine-tuning (teachers = the independent_runs models, whole) and is a per-model-folder
    setting; out-of-range values and distillation without independent runs are clear errors."""
    from mgen_jax.train.checkpoint import restore_checkpoint, save_checkpoint

    pretrained = load_pretrained(str(tiny_bert_dir))
    runs = tmp_path / "independent"
    for i, name in enumerate(("SST-2", "MRPC")):
        head = MultiTaskModel(pretrained.config, (2,)).init_head(jax.random.PRNGKey(i))
        save_checkpoint(runs / name / "final_params.msgpack",
                        {"encoder": _perturbed(pretrained.params, 20 + i), "head": head})
    tiny = dict(model=str(tiny_bert_dir), max_train_per_task={"SST-2": 256, "MRPC": 256}, heldout_max_rows=64,
                max_length=32, buckets=[32], warmup_steps=0, finetune_steps=1)
    cfg = load_search_config(REPO / "configs/search/quick.yaml", independent_runs=str(runs),
                             finetune_init="independent", distill_weight=0.5, **tiny)
    gen = ModelGenerator(cfg, tmp_path / "wd", glue_dir=glue_dir, progress=False)
    teachers = gen.teachers()
    saved = restore_checkpoint(runs / "MRPC" / "final_params.msgpack", None)
    np.testing.assert_array_equal(np.asarray(teachers["encoders"]["embeddings"]["word"]["embedding"][1]),
                                  np.asarray(saved["encoder"]["embeddings"]["word"]["embedding"]))
    record = gen.finetune_and_evaluate([2, 2], gen.warmup())
    assert record["distill_weight"] == 0.5 and record["distill_temperature"] == 1.0
    other = ModelGenerator(load_search_config(REPO / "configs/search/quick.yaml", independent_runs=str(runs),
                                              finetune_init="independent", **tiny),
                           tmp_path / "wd", glue_dir=glue_dir, progress=False)
    with pytest.raises(ConfigError, match=r"\['distill_weight'\]"):
        other.finetune_and_evaluate([2, 2], gen.warmup())
    with pytest.raises(ConfigError, match="distill_weight"):
        load_search_config(REPO / "configs/search/quick.yaml", distill_weight=1.5)
    with pytest.raises(ConfigError, match="independent_runs"):
        load_search_config(REPO / "configs/search/quick.yaml", distill_weight=0.5)
    with pytest.raises(ConfigError, match="distill_temperature"):
        load_search_config(REPO / "configs/search/quick.yaml", independent_runs=str(runs), distill_temperature=0.0)


