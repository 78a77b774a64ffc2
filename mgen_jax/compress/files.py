"""The compressed model on disk, and back.

A compressed-model folder (``mgen compress --out DIR``) holds:

- ``report.json``: the plan (hw/delta.py ``DeltaPlan.to_dict``, what ``mgen simulate/cost/schedule --compressed``
  read), the task names, the source, the profiler's walk per task and base kind, and the hardware summary;
- ``deltas.msgpack``: per task, its digital parameters (embeddings, biases, LayerNorms, head: what is not on
  crossbars, stored as they are) and, per compressed crossbar matrix, the kept blocks of its delta: at full bits the
  delta values (float64, so that base + delta is the evaluated weight exactly), below full bits the integer codes
  (int8) and the per-column scales (float32); plus the trunk units the plan uses as bases (a pretrained base is named
  by the model, not stored).

``load_compressed`` rebuilds every task's classifier ({"encoder", "head"}) from these and the pretrained weights:
base + kept blocks, exactly what ``profiler.compressed_model`` evaluated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mgen_jax.compress.blocks import CompressedMatrix
from mgen_jax.compress.models import OP_NAMES, unit_kind
from mgen_jax.errors import ConfigError
from mgen_jax.hw.delta import DeltaPlan, delta_grid
from mgen_jax.hw.density import matrix_key
from mgen_jax.hw.arch import Unit
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.io import read_json_file

DELTAS_FILE = "deltas.msgpack"
REPORT_FILE = "report.json"


def _key(u: int, op: str) -> str:
    return matrix_key(Unit(u, u // 2, unit_kind(u)).name, op)


def pack_matrix(matrix: CompressedMatrix, spec: HardwareSpec) -> dict[str, np.ndarray]:
    """The stored form of one matrix's compressed delta: the kept blocks' entries in block order (row-major within a
    block), as float64 values at full bits or int8 codes + per-column float32 scales below."""
    grid = delta_grid(spec, *matrix.values.shape, matrix.bits)
    source = matrix.values if matrix.codes is None else matrix.codes
    parts = [source[rows, cols].reshape(-1) for rows, cols in map(grid.block_slices, matrix.kept)]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    if matrix.codes is None:  # float64: base + delta gives back exactly the weights that were evaluated
        return {"values": flat.astype(np.float64)}
    return {"codes": flat.astype(np.int8), "scale": matrix.scale.astype(np.float32)}


def unpack_matrix(stored: dict[str, np.ndarray], k: int, n: int, bits: int, kept: tuple[int, ...],
                  spec: HardwareSpec) -> np.ndarray:
    """[K, N] float64: the delta the crossbars hold (zero outside the kept blocks)."""
    grid = delta_grid(spec, k, n, bits)
    out = np.zeros((k, n))
    flat = np.asarray(stored["values"] if "values" in stored else stored["codes"], dtype=np.float64)
    at = 0
    for b in kept:
        rows, cols = grid.block_slices(b)
        size = (rows.stop - rows.start) * (cols.stop - cols.start)
        out[rows, cols] = flat[at: at + size].reshape(rows.stop - rows.start, cols.stop - cols.start)
        at += size
    if at != flat.size:
        raise ConfigError(f"stored delta has {flat.size} entries, its kept blocks {at}")
    if "scale" in stored:
        out = out * np.asarray(stored["scale"], dtype=np.float64)[None, :]
    return out


def pack_task(compressed: dict, stored: dict[str, CompressedMatrix], plan: DeltaPlan, task: int,
              spec: HardwareSpec) -> dict[str, Any]:
    """One task's stored form: ``compressed`` the classifier the profiler chose (its digital part: bias-corrected
    biases included; every compressed kernel leaves it), ``stored`` its compressed matrices by key."""
    digital = {"encoder": dict(compressed["encoder"]), "head": compressed["head"]}
    deltas: dict[str, Any] = {}
    for (t, u), entry in sorted(plan.active().items()):
        if t != task:
            continue
        unit = {name: dict(layer) for name, layer in compressed["encoder"][f"unit_{u}"].items()}
        for flax, op in OP_NAMES[unit_kind(u)].items():
            del unit[flax]["kernel"]
            deltas[_key(u, op)] = pack_matrix(stored[_key(u, op)], spec)
        digital["encoder"][f"unit_{u}"] = unit
    return {"digital": digital, "deltas": deltas}


def unpack_task(stored: dict, bases: dict[str, dict], plan: DeltaPlan, task: int, spec: HardwareSpec) -> dict:
    """The classifier a task's stored form holds: base kernel + unpacked delta for every compressed matrix."""
    encoder = dict(stored["digital"]["encoder"])
    for (t, u), entry in sorted(plan.active().items()):
        if t != task:
            continue
        unit = {name: dict(layer) for name, layer in encoder[f"unit_{u}"].items()}
        for flax, op in OP_NAMES[unit_kind(u)].items():
            m = entry.matrix(op)
            base = np.asarray(bases[entry.base][f"unit_{u}"][flax]["kernel"], dtype=np.float64)
            delta = unpack_matrix(stored["deltas"][_key(u, op)], *base.shape, m.delta_bits, m.kept_blocks, spec)
            unit[flax]["kernel"] = (base + delta).astype(np.float32)
        encoder[f"unit_{u}"] = unit
    return {"encoder": encoder, "head": stored["digital"]["head"]}


def save_deltas(path: str | Path, tasks: dict[str, dict], trunk_bases: dict | None) -> Path:
    """Write every task's stored form (``pack_task``) and the trunk units used as bases, atomically."""
    from mgen_jax.train.checkpoint import save_checkpoint

    return save_checkpoint(path, {"tasks": tasks, "trunk_bases": trunk_bases or {}})


def load_compressed(folder: str | Path, spec: HardwareSpec, *, report: dict | None = None
                    ) -> tuple[dict[str, Any], dict[str, dict]]:
    """(report, {task name: classifier params}) of a compressed-model folder; the pretrained base is loaded from the
    model the report names (``report``: use this one instead of the folder's report.json). ConfigError naming the
    file for missing or inconsistent contents."""
    from mgen_jax.hw.delta import plan_from_dict
    from mgen_jax.model.pretrained import load_pretrained
    from mgen_jax.train.checkpoint import restore_checkpoint

    folder = Path(folder)
    report = read_json_file(folder / REPORT_FILE, "compressed-model report") if report is None else report
    for field in ("plan", "tasks", "model"):
        if field not in report:
            raise ConfigError(f"{folder / REPORT_FILE}: field '{field}' is missing")
    plan = plan_from_dict(report["plan"], source=str(folder / REPORT_FILE))
    path = folder / DELTAS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: the folder holds no compressed weights")
    stored = restore_checkpoint(path, None)
    pre = load_pretrained(report["model"])
    bases = {"pretrained": {k: v for k, v in pre.params.items() if k.startswith("unit_")},
             "trunk": stored.get("trunk_bases", {})}
    out = {}
    for t, name in enumerate(report["tasks"]):
        if name not in stored["tasks"]:
            raise ConfigError(f"{path}: holds no task {name!r} (it has {sorted(stored['tasks'])})")
        out[name] = unpack_task(stored["tasks"][name], bases, plan, t, spec)
    return report, out
