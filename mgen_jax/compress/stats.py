"""Calibration statistics of a classifier's crossbar matrices, for ranking delta blocks (``blocks.py``).

For every dense layer of the encoder (keys ``mgen_jax.hw.density.matrix_key``, e.g. ``"L2.ffn/ffn_in"``), over the
real tokens of some batches:

- ``second_moment`` [K, K] = mean over tokens of x x^T (x: the layer's input), ``mean`` [K] of x, ``covariance``;
- ``fisher`` [N] = mean over tokens of (dloss / dy_j)^2 (y: the layer's output; the loss of the token's example,
  cross-entropy or squared error as in fine-tuning, at the true label: the empirical Fisher).

Both come from one forward and backward pass per batch: a zero perturbation is added to every dense output
(flax.linen.intercept_methods) and the gradient is taken with respect to it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.input_stats import dense_key


def _with_perturbations(forward: Callable[[], Any], eps: Mapping[str, jax.Array], keep: Callable[[str], bool]):
    """Run ``forward()`` with eps[key] added to the output of every dense layer ``keep`` accepts; returns (its
    result, {key: (the layer's input, its output)})."""
    inputs: dict[str, tuple[jax.Array, jax.Array]] = {}

    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            key = dense_key(context.module.path)
            if keep(key):
                if key in eps:
                    out = out + eps[key]
                inputs[key] = (args[0], out)
        return out

    with nn.intercept_methods(intercept):
        result = forward()
    return result, inputs


def calibration_stats(apply: Callable, loss: Callable, params: Any, batches: Iterable[Mapping[str, np.ndarray]],
                      keep: Callable[[str], bool]) -> dict[str, dict[str, np.ndarray]]:
    """{key: {"second_moment", "fisher", "tokens"}} of the dense layers ``keep`` accepts.

    ``apply(params, batch)`` gives the model outputs; ``loss(outputs, batch)`` the per-example losses [B].
    """
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    shapes = jax.eval_shape(lambda p, b: _with_perturbations(lambda: apply(p, b), {}, keep)[1], params, batches[0])

    def per_batch(p, b):
        mask = (b["attention_mask"] * b["weights"][:, None]).astype(jnp.float32)  # [B, L] real tokens

        def total(eps):
            out, inputs = _with_perturbations(lambda: apply(p, b), eps, keep)
            return jnp.sum(loss(out, b) * b["weights"]), inputs

        eps = {k: jnp.zeros(b["input_ids"].shape + s[1].shape[-1:], jnp.float32) for k, s in shapes.items()}
        grads, inputs = jax.grad(total, has_aux=True)(eps)
        out = {}
        for key, (x, _) in inputs.items():
            xm = x * mask[..., None]
            out[key] = {"second_moment": jnp.einsum("blk,blm->km", xm, x), "mean": jnp.sum(xm, axis=(0, 1)),
                        "fisher": jnp.einsum("bln,bl->n", jnp.square(grads[key]), mask),
                        "tokens": jnp.sum(mask)}
        return out

    step = jax.jit(per_batch)
    acc: dict[str, dict[str, np.ndarray]] = {}
    for b in batches:
        for key, r in jax.device_get(step(params, b)).items():
            entry = acc.setdefault(key, {name: 0.0 for name in r})
            for name, value in r.items():
                entry[name] = entry[name] + np.asarray(value, dtype=np.float64)
    for entry in acc.values():
        n = max(float(entry["tokens"]), 1.0)
        entry["second_moment"] = entry["second_moment"] / n
        entry["mean"] = entry["mean"] / n
        entry["covariance"] = entry["second_moment"] - np.outer(entry["mean"], entry["mean"])
        entry["fisher"] = entry["fisher"] / n
    return acc
