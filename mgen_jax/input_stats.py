"""Input-bit statistics of a BERT's crossbar matrices on real examples (DESIGN.md section 12, data-dependent energy).

Every dense layer of the encoder and of a task head is one crossbar matrix on the accelerator (hw/ops.py names them:
query, key, value, output, ffn_in, ffn_out, pooler, classifier). ``measure_input_bits`` runs a model on real examples
(inference only) and captures the input of every dense layer (flax.linen.intercept_methods), in two passes:

1. the scale of each matrix: s = m / (2^(a-1) - 1), a = input_bits, with m the largest |x| over the measured tokens
   (``scale="max"``) or a percentile of |x| (``"p99.99"``: values beyond it are clipped);
2. q = clip(round(x / s)) (hw/density.py ``quantize``), written in every encoding (``bit_planes``): per matrix, the
   fraction of 1s in every bit position and of non-zero DAC slices per cycle (the density the energy uses).

Only real tokens count (padding is masked out); a head matrix sees one vector per example. The scale is calibrated
on the measured examples themselves (a static per-matrix scale, as a deployment would fix it on calibration data).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.errors import ConfigError
from mgen_jax.hw.arch import ATTENTION, FFN, Unit
from mgen_jax.hw.density import ENCODINGS, HEAD_PART, bit_planes, drive_planes, matrix_key, quantize

# flax dense-layer names -> hw/ops.py op names, per part kind
_OP_NAMES = {
    ATTENTION: {"query": "query", "key": "key", "value": "value", "output": "output"},
    FFN: {"intermediate": "ffn_in", "output": "ffn_out"},
    HEAD_PART: {"pooler": "pooler", "classifier": "classifier"},
}
_LOG10_RANGE = (-6.0, 3.0)  # |x| histogram for percentile scales: 1e-6 .. 1e3
_BINS = 1800  # 0.005 decades per bin (1.2% resolution of a percentile scale)


def dense_key(path: Sequence[str]) -> str:
    """hw/density.py key of the dense layer at a flax module path, e.g. ("encoder", "unit_3", "intermediate") ->
    "L2.ffn/ffn_in", ("head", "pooler") -> "head/pooler"."""
    names = [p for p in path if p != "encoder"]
    if len(names) == 2 and names[0] == HEAD_PART and names[1] in _OP_NAMES[HEAD_PART]:
        return matrix_key(HEAD_PART, names[1])
    if len(names) == 2 and names[0].startswith("unit_") and names[0][5:].isdigit():
        u = int(names[0][5:])
        unit = Unit(u, u // 2, ATTENTION if u % 2 == 0 else FFN)
        if names[1] in _OP_NAMES[unit.kind]:
            return matrix_key(unit.name, _OP_NAMES[unit.kind][names[1]])
    raise ConfigError(f"dense layer at {'/'.join(path)} is not a crossbar matrix of a BERT unit or head")


def _captured(forward: Callable[[], Any], reduce: Callable[[str, jax.Array], Any]) -> dict[str, Any]:
    """Run ``forward()`` and return {key: reduce(key, its input)} for every dense layer it calls."""
    out: dict[str, Any] = {}

    def intercept(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
            key = dense_key(context.module.path)
            out[key] = reduce(key, args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(intercept):
        forward()
    return out


def _token_weights(x: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
    """1 for every real token (encoder inputs [B, L, K]) or real example (head inputs [B, K]), else 0; shape x[..., 0]."""
    rows = batch["weights"]
    return (batch["attention_mask"] * rows[:, None]).astype(jnp.int32) if x.ndim == 3 else rows.astype(jnp.int32)


def _scale_pass(apply, params, batch):
    def reduce(key, x):
        w = _token_weights(x, batch)[..., None]
        mag = jnp.abs(x.astype(jnp.float32))
        logs = jnp.clip(jnp.log10(jnp.maximum(mag, 1e-30)), *_LOG10_RANGE)
        bins = jnp.clip(((logs - _LOG10_RANGE[0]) / (_LOG10_RANGE[1] - _LOG10_RANGE[0]) * _BINS).astype(jnp.int32),
                        0, _BINS - 1)
        hist = jnp.zeros(_BINS, jnp.int32).at[bins.reshape(-1)].add(jnp.broadcast_to(w, mag.shape).reshape(-1))
        return {"max": jnp.max(jnp.where(w > 0, mag, 0.0)), "hist": hist}

    return _captured(lambda: apply(params, batch), reduce)


def _bit_pass(apply, params, batch, scales, bits: int, dac_bits: int, encodings: Sequence[str]):
    def reduce(key, x):
        w = _token_weights(x, batch)[..., None]
        out = {"count": jnp.sum(jnp.broadcast_to(w, x.shape))}
        for method, s in scales[key].items():
            q = quantize(x.astype(jnp.float32), s, bits, xp=jnp)
            for enc in encodings:
                planes = bit_planes(q, bits, enc, xp=jnp) * w[None]
                drives = drive_planes(planes, bits, enc, dac_bits, xp=jnp)
                axes = tuple(range(1, planes.ndim))
                out[f"{method}|{enc}"] = (jnp.sum(planes, axis=axes), jnp.sum(drives, axis=axes))
        return out

    return _captured(lambda: apply(params, batch), reduce)


def _percentile_from_hist(hist: np.ndarray, q: float) -> float:
    cum = np.cumsum(hist)
    if cum[-1] == 0:
        return 0.0
    i = int(np.searchsorted(cum, q / 100.0 * cum[-1]))
    return float(10 ** (_LOG10_RANGE[0] + (i + 1) * (_LOG10_RANGE[1] - _LOG10_RANGE[0]) / _BINS))


def _scale_of(method: str, max_abs: float, hist: np.ndarray, bits: int) -> float:
    if method == "max":
        m = max_abs
    elif method.startswith("p"):
        try:
            q = float(method[1:])
        except ValueError:
            raise ConfigError(f"scale {method!r}: use 'max' or 'p<percentile>' such as 'p99.99'") from None
        m = min(_percentile_from_hist(hist, q), max_abs)
    else:
        raise ConfigError(f"scale {method!r}: use 'max' or 'p<percentile>' such as 'p99.99'")
    return max(m, 1e-12) / (2 ** (bits - 1) - 1)


def measure_input_bits(
    apply: Callable[[Any, Mapping[str, jax.Array]], Any], params: Any, batches: Iterable[Mapping[str, np.ndarray]], *,
    input_bits: int = 8, dac_bits: int = 1, scales: Sequence[str] = ("max",), encodings: Sequence[str] = ENCODINGS,
) -> dict[str, Any]:
    """Input-bit statistics of every dense layer that ``apply(params, batch)`` calls, over ``batches`` (dicts with
    input_ids, attention_mask, token_type_ids [B, L] and weights [B], 0 for padding rows).

    Returns {"scales": {method: {key: scale}}, "densities": {method: {encoding: {key: {"density", "per_bit"}}}},
    "tokens": real tokens, "examples": real examples, "wall_clock_s"}.
    """
    start = time.perf_counter()
    batches = [{k: jnp.asarray(v) for k, v in b.items() if k != "labels"} for b in batches]
    if not batches:
        raise ConfigError("measure_input_bits: no batches")
    first = jax.jit(lambda p, b: _scale_pass(apply, p, b))
    max_abs: dict[str, float] = {}
    hists: dict[str, np.ndarray] = {}
    for batch in batches:
        for key, r in jax.device_get(first(params, batch)).items():
            max_abs[key] = max(max_abs.get(key, 0.0), float(r["max"]))
            hists[key] = hists.get(key, 0) + np.asarray(r["hist"], dtype=np.int64)
    scale_values = {key: {m: _scale_of(m, max_abs[key], hists[key], input_bits) for m in scales} for key in max_abs}
    second = jax.jit(lambda p, b, s: _bit_pass(apply, p, b, s, input_bits, dac_bits, tuple(encodings)))
    counts: dict[str, dict[Any, Any]] = {}
    for batch in batches:
        for key, r in jax.device_get(second(params, batch, scale_values)).items():
            acc = counts.setdefault(key, {})
            for name, value in r.items():
                value = jax.tree.map(lambda v: np.asarray(v, dtype=np.float64), value)
                acc[name] = value if name not in acc else jax.tree.map(np.add, acc[name], value)
    densities: dict[str, dict[str, dict[str, Any]]] = {m: {e: {} for e in encodings} for m in scales}
    for key in sorted(counts):
        n = counts[key]["count"]
        for m in scales:
            for enc in encodings:
                ones, drives = counts[key][f"{m}|{enc}"]
                cycles = len(drives)
                densities[m][enc][key] = {"density": float(drives.sum() / (cycles * n)),
                                          "per_bit": (ones / n).tolist()}
    weights = np.concatenate([np.asarray(b["weights"]) for b in batches])
    masks = [np.asarray(b["attention_mask"]) * np.asarray(b["weights"])[:, None] for b in batches]
    return {
        "scales": {m: {k: scale_values[k][m] for k in sorted(scale_values)} for m in scales},
        "densities": densities,
        "tokens": int(sum(m.sum() for m in masks)),
        "examples": int(weights.sum()),
        "wall_clock_s": time.perf_counter() - start,
    }


# ----- real models on real examples ---------------------------------------------------------------------------------
def heldout_batches(task: str, tokenizer, *, examples: int = 256, max_length: int = 128, batch_size: int = 32,
                    buckets: Sequence[int] = (32, 64, 128), glue_dir=None) -> list[dict[str, np.ndarray]]:
    """The first ``examples`` rows of the task's held-out split (carved from train, data/splits.py; never dev),
    tokenized and batched by length."""
    from mgen_jax.data.pipeline import batch_plan, collate, encode_split
    from mgen_jax.data.splits import HeldoutSpec, train_and_heldout

    _, held = train_and_heldout(task, HeldoutSpec(), glue_dir=glue_dir)
    held = held.take(np.arange(min(examples, len(held))))
    encoded = encode_split(held, tokenizer, max_length=max_length)
    plan = batch_plan(encoded.lengths, batch_size, buckets=buckets, shuffle=False)
    return [collate(encoded, rows, pad, batch_size) for rows, pad in plan]


def classifier_apply(cfg, num_labels: int, pooling: str = "mean") -> Callable[[Any, Mapping[str, jax.Array]], Any]:
    """apply(params, batch) of a fine-tuned task model ({"encoder": ..., "head": ...}, mgen_jax.model)."""
    from mgen_jax.model.bert import SequenceClassifier

    module = SequenceClassifier(cfg, num_labels, pooling)
    return lambda params, b: module.apply({"params": params}, b["input_ids"], b["attention_mask"], b["token_type_ids"])


def encoder_apply(cfg) -> Callable[[Any, Mapping[str, jax.Array]], Any]:
    """apply(params, batch) of a bare encoder (a pretrained BERT without a head)."""
    from mgen_jax.model.bert import BertEncoder

    module = BertEncoder(cfg)
    return lambda params, b: module.apply({"params": params}, b["input_ids"], b["attention_mask"], b["token_type_ids"])
