"""Data parallelism over every JAX device with jax.sharding: batches split on their example axis, state replicated;
and, opt-in, over several processes (hosts) with ``jax.distributed``.

Several processes (``init_distributed``, driven by environment variables, read before JAX starts):

- ``MGEN_COORDINATOR=host:port``, ``MGEN_NUM_PROCESSES=N``, ``MGEN_PROCESS_ID=i`` (0 <= i < N): every process of the
  run is started with the same command and these three variables (process 0 serves the coordinator at that port);
- ``MGEN_DISTRIBUTED=auto``: JAX's own detection of the cluster (Slurm, Open MPI, Cloud TPU);
- neither: one process (nothing is initialised).

In a multi-process run every process reads the same data and draws the same batches; each puts only the rows of
its own devices on them (``shard_batch``); collectives run across processes (on CPU through gloo). Outputs that
are split across processes come back whole (``to_host``). Files are written by process 0 only, the others wait
at a barrier (mgen_jax/io.py), so the work folder must be one that every process sees (a shared file system).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgen_jax.errors import ConfigError

ENV_COORDINATOR = "MGEN_COORDINATOR"
ENV_NUM_PROCESSES = "MGEN_NUM_PROCESSES"
ENV_PROCESS_ID = "MGEN_PROCESS_ID"
ENV_DISTRIBUTED = "MGEN_DISTRIBUTED"


def _env_int(environ, name: str, low: int, high: int | None = None) -> int:
    raw = environ.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_COORDINATOR} is set, so {name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value >= high):
        upper = "" if high is None else f" and < {high}"
        raise ConfigError(f"environment variable {name} must be >= {low}{upper}, got {value}")
    return value


def distributed_settings(environ=os.environ) -> dict[str, Any] | None:
    """The arguments of ``jax.distributed.initialize`` that the MGEN_* environment variables ask for ({} = JAX's
    auto-detection), or None for a single process. ConfigError naming the variable if one is malformed."""
    mode = environ.get(ENV_DISTRIBUTED, "").strip().lower()
    coordinator = environ.get(ENV_COORDINATOR, "").strip()
    if mode not in ("", "auto", "off"):
        raise ConfigError(f"environment variable {ENV_DISTRIBUTED} must be 'auto' or 'off', got {mode!r}")
    if mode == "off" or (not coordinator and mode != "auto"):
        return None
    if not coordinator:
        return {}
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"environment variable {ENV_COORDINATOR} must be host:port, got {coordinator!r}")
    num_processes = _env_int(environ, ENV_NUM_PROCESSES, 1)
    process_id = _env_int(environ, ENV_PROCESS_ID, 0, num_processes)
    return {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}


def init_distributed(environ=os.environ) -> bool:
    """Join the multi-process run the environment describes (``distributed_settings``), once; returns whether this
    is a multi-process run. Must run before JAX's first computation: ``data_mesh`` calls it, and entry points call it
    first thing. ConfigError if the variables are set but JAX already started in this process."""
    if jax.distributed.is_initialized():
        return True
    settings = distributed_settings(environ)
    if settings is None:
        return False
    from jax._src import xla_bridge  # no public way to ask whether a backend has started

    if xla_bridge.backends_are_initialized():
        raise ConfigError(f"{ENV_COORDINATOR}/{ENV_DISTRIBUTED} ask for a multi-process run, but JAX already started "
                          "in this process: call mgen_jax.train.parallel.init_distributed() before any JAX work")
    if jax.config.jax_cpu_collectives_implementation is None:  # CPU collectives across processes (JAX < 0.5)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**settings)
    return True


def is_main_process() -> bool:
    """Process 0 (the only one in a single-process run): the one that writes files and shows progress."""
    return jax.process_index() == 0


def data_mesh() -> Mesh:
    """Every device of every process on one axis, "data" (joins a multi-process run first: ``init_distributed``)."""
    init_distributed()
    return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch(batch_size: int, mesh: Mesh, field: str = "batch_size") -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ConfigError(f"{field} ({batch_size}) must be a multiple of the number of JAX devices ({devices}, "
                          f"over {jax.process_count()} process(es))")


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, axis: int = 0) -> dict[str, jax.Array]:
    """Every array split across the devices along ``axis`` (0: a batch [B, ...]; 1: a mixed batch [T, B, ...]).

    ``batch`` is the whole (global) batch, the same in every process; each process puts only the slices of its own
    devices on them (jax.make_array_from_callback), so this is also the per-process input of a multi-process run."""
    def put(value):
        value = np.asarray(value)
        spec = PartitionSpec(*([None] * axis + ["data"])) if value.ndim > axis else PartitionSpec()
        return jax.make_array_from_callback(value.shape, NamedSharding(mesh, spec), lambda index: value[index])

    return {k: put(v) for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` whole on every device of ``mesh`` (in a multi-process run, from each process's host copy: every
    process holds the same values)."""
    if jax.process_count() > 1:
        tree = jax.device_get(tree)
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def to_host(tree: Any) -> Any:
    """Every array of ``tree`` as numpy, whole: arrays split across processes are gathered from all of them
    (multihost_utils.process_allgather); other leaves (Python numbers) are returned as they are."""
    from jax.experimental import multihost_utils

    split = lambda x: isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated
    tree = jax.tree.map(lambda x: multihost_utils.process_allgather(x, tiled=True) if split(x) else x, tree)
    return jax.device_get(tree)  # one transfer for the whole tree
