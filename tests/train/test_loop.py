"""The shared resumable loop (train/loop.py) on a toy state: exact resume, one metrics line per log step, outputs
fetched only at progress steps, a NaN stops the run at the step that produced it, before any checkpoint."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from mgen_jax.errors import ConfigError, TrainingError
from mgen_jax.train.loop import LoopHooks, LoopSettings, run_loop


@struct.dataclass
class Toy:
    step: jax.Array
    w: jax.Array


@jax.jit
def _step(state, batch):
    w = state.w * 0.9 + batch
    return Toy(state.step + 1, w), jnp.sum(w)  # the "loss": the sum of the weights


def _hooks(log, nan_at=None, fetched=None):
    def batch(k):
        return jnp.full((3,), jnp.nan if k == nan_at else float(k))

    def observe(k, loss):
        if fetched is not None:
            fetched.append(k)
        log.append((k, float(loss)))
        return {"loss": float(loss)}

    return LoopHooks(batch=batch, step=lambda state, b, k: _step(state, b), observe=observe,
                     status=lambda done, state: {"loss": f"{log[-1][1]:.3f}"},
                     record=lambda done, state, wall: {"loss": log[-1][1], "w0": float(state.w[0])})


def _settings(directory, **changes):
    values = dict(directory=directory, total_steps=23, desc="toy", checkpoint_every_steps=5, log_every_steps=4,
                  progress_every_steps=10, progress=False)
    return LoopSettings(**(values | changes))


def _fresh():
    return Toy(jnp.asarray(0, jnp.int32), jnp.zeros(3))


def test_resume_is_exact_and_logs_each_step_once(tmp_path):
    whole_log = []
    whole = run_loop(_settings(tmp_path / "whole"), _fresh(), _hooks(whole_log))
    assert not whole.stopped and int(whole.state.step) == 23
    assert [k for k, _ in whole_log] == list(range(23))  # every step observed once, in order
    cut_log = []
    cut = run_loop(_settings(tmp_path / "cut", stop_at_step=7), _fresh(), _hooks(cut_log))
    assert cut.stopped and int(cut.state.step) == 7
    assert (tmp_path / "cut" / "checkpoint.msgpack").exists() and (tmp_path / "cut" / "wall_clock.json").exists()
    resumed = run_loop(_settings(tmp_path / "cut"), _fresh(), _hooks(cut_log))
    np.testing.assert_array_equal(resumed.state.w, whole.state.w)
    assert resumed.wall_clock_s >= json.loads((tmp_path / "cut" / "wall_clock.json").read_text())["seconds"] > 0
    lines = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 8, 12, 16, 20, 23]  # log steps and the end, none twice
    assert lines == [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]


def test_outputs_are_fetched_at_progress_steps_only(tmp_path):
    fetched_at = []

    def observe(k, loss):
        fetched_at.append((k, isinstance(loss, np.ndarray)))
        return {"loss": float(loss)}

    calls = []
    hooks = _hooks([])._replace(observe=observe, status=lambda done, state: calls.append(done) or {},
                                record=lambda done, state, wall: None)
    run_loop(_settings(tmp_path, total_steps=25, checkpoint_every_steps=100, log_every_steps=100), _fresh(), hooks)
    assert calls == [10, 20, 25]  # one fetch per progress step (and the end), not one per step
    assert fetched_at == [(k, True) for k in range(25)]  # every step's output arrives, on the host, in order


def test_nan_stops_before_the_checkpoint_naming_its_step(tmp_path):
    with pytest.raises(TrainingError, match=r"toy: loss became nan at step 7 .*the last checkpoint is .*checkpoint"):
        run_loop(_settings(tmp_path), _fresh(), _hooks([], nan_at=6))
    from mgen_jax.train.checkpoint import restore_checkpoint

    saved = restore_checkpoint(tmp_path / "checkpoint.msgpack", _fresh())
    assert int(saved.step) == 5 and np.isfinite(saved.w).all()  # step 10's NaN state was never written
    with pytest.raises(TrainingError, match="at step 1 .*no checkpoint was written yet"):
        run_loop(_settings(tmp_path / "early"), _fresh(), _hooks([], nan_at=0))


@pytest.mark.parametrize("field", ["checkpoint_every_steps", "log_every_steps", "progress_every_steps"])
def test_bad_settings(tmp_path, field):
    with pytest.raises(ConfigError, match=field):
        _settings(tmp_path, **{field: 0})
