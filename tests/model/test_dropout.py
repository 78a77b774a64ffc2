"""The encoder's dropout (model/bert.py ``Dropout``): flax.linen.Dropout's semantics, masks from an "rbg" key."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.model.bert import Dropout


def _apply(rate, x, key, deterministic=False):
    return jax.jit(lambda x, k: Dropout(rate).apply({}, x, deterministic=deterministic, rngs={"dropout": k}))(x, key)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_drop_rate_and_scale(rate):
    x = jax.random.normal(jax.random.PRNGKey(1), (500, 2000))
    y = np.asarray(_apply(rate, x, jax.random.PRNGKey(0)))
    dropped = y == 0
    n = dropped.size
    assert abs(dropped.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / n)  # 5 standard errors
    np.testing.assert_allclose(y[~dropped], (np.asarray(x) / (1 - rate))[~dropped], rtol=1e-6)
    # no structure: the rate holds along rows and columns alike
    assert np.abs(dropped.mean(0) - rate).max() < 6 * np.sqrt(rate * (1 - rate) / 500)
    assert np.abs(dropped.mean(1) - rate).max() < 6 * np.sqrt(rate * (1 - rate) / 2000)


def test_identity_when_deterministic_or_rate_zero():
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 16))
    np.testing.assert_array_equal(_apply(0.1, x, jax.random.PRNGKey(0), deterministic=True), x)
    np.testing.assert_array_equal(_apply(0.0, x, jax.random.PRNGKey(0)), x)


def test_masks_follow_the_key():
    x = jnp.ones((64, 64))
    a = _apply(0.3, x, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a, _apply(0.3, x, jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(a, _apply(0.3, x, jax.random.key(0)))  # typed and legacy keys alike
    assert (np.asarray(a) != np.asarray(_apply(0.3, x, jax.random.PRNGKey(1)))).mean() > 0.2


SHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from mgen_jax.model.bert import Dropout
assert jax.device_count() == 2
x = jax.random.normal(jax.random.PRNGKey(1), (8, 32, 16))
f = jax.jit(lambda x, k: Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": k}))
whole = np.asarray(f(x, jax.random.PRNGKey(3)))
mesh = Mesh(np.array(jax.devices()), ("data",))
split = np.asarray(f(jax.device_put(x, NamedSharding(mesh, P("data"))), jax.random.PRNGKey(3)))
np.testing.assert_array_equal(split, whole)
print((whole == 0).mean())
"""


def test_same_masks_when_the_batch_is_sharded(host_devices_env):
    out = subprocess.run([sys.executable, "-c", SHARDED], env=host_devices_env(2), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 0.05 < float(out.stdout.strip()) < 0.15
