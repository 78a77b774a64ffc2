"""Data parallelism over every JAX device with jax.sharding: batches split on their first axis, state replicated."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgen_jax.errors import ConfigError


def data_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch(batch_size: int, mesh: Mesh, field: str = "batch_size") -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ConfigError(f"{field} ({batch_size}) must be a multiple of the number of JAX devices ({devices})")


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, axis: int = 0) -> dict[str, jax.Array]:
    """Every array split across the devices along ``axis`` (0: a batch [B, ...]; 1: a mixed batch [T, B, ...])."""
    def put(value):
        spec = PartitionSpec(*([None] * axis + ["data"])) if np.ndim(value) > axis else PartitionSpec()
        return jax.device_put(value, NamedSharding(mesh, spec))

    return {k: put(v) for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
