"""Optimisers shared by fine-tuning and the search: AdamW with linear warm-up and decay, no decay on biases and
LayerNorm parameters, gradient clipping."""

from __future__ import annotations

from typing import Any

import jax
import optax


def decay_mask(params: Any) -> Any:
    """True for weight matrices and embeddings; False for biases and LayerNorm parameters."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(getattr(k, "key", None) in ("bias", "scale") for k in path), params
    )


def warmup_linear_schedule(learning_rate: float, total_steps: int, *, warmup_ratio: float) -> optax.Schedule:
    """Linear warm-up from 0 over ``warmup_ratio`` of the steps, then linear decay to 0 at ``total_steps``."""
    warmup = int(warmup_ratio * total_steps)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, learning_rate, max(warmup, 1)),
         optax.linear_schedule(learning_rate, 0.0, max(total_steps - warmup, 1))],
        [warmup],
    )


def adamw_direction(weight_decay: float) -> optax.GradientTransformation:
    """AdamW without its learning rate (optax.adamw's defaults, decay masked as in ``adamw_warmup_linear``): the
    update is -lr x this transformation's output, for a learning rate the caller supplies per step."""
    return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay, mask=decay_mask))


def adamw_warmup_linear(learning_rate: float, total_steps: int, *, warmup_ratio: float, weight_decay: float,
                        max_grad_norm: float = 1.0) -> optax.GradientTransformation:
    schedule = warmup_linear_schedule(learning_rate, total_steps, warmup_ratio=warmup_ratio)
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask),
    )
