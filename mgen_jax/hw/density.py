"""Input bit densities: how often a row of a crossbar is driven, from the bits of real (quantized) inputs.

Inputs reach the crossbars bit-serially through 1-bit DACs (``dac_bits`` > 1: slices of ``dac_bits`` bits). A row is
driven in a cycle only when its slice is non-zero, and only driven rows make cells conduct, so the input drive and
part of the array read energy follow the *density*: the fraction of (row, cycle) slots with a non-zero slice, averaged
over the cycles (mapping.py turns it into counts). This module fixes what the bits of an input are:

- **scale** (the measurement's choice, mgen_jax/input_stats.py): symmetric, one scale per matrix, q = clip(round(x /
  s), -(2^(a-1) - 1), 2^(a-1) - 1) for a = input_bits (``quantize``);
- **encoding** (the spec's ``input_encoding``, ``bit_planes``): ``offset`` writes q + 2^(a-1) (the offset is
  removed digitally), ``twos_complement`` writes q mod 2^a (the top bit's partial sum is subtracted digitally),
  ``sign_magnitude`` writes |q| in a - 1 bits and a sign that a bipolar DAC applies (the sign takes no cycle).
  Near zero, offset inputs are 1000...0 or 0111...1 and two's complement ones 000...0 or 111...1, while
  sign-magnitude ones are all zeros: the encoding moves the density as much as the data does.

``InputDensities`` holds one density per matrix (key ``"<unit name>/<op name>"``, e.g. ``"L1.attn/query"``, or
``"head/pooler"``) for one encoding; ``model_parts`` attaches them to the matrices. Files
(``save_density_file``/``load_input_densities``) hold, per source (a task's model, the pretrained encoder, or the
mean over tasks), per encoding, per matrix: the density and the density of every bit position.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mgen_jax.errors import ConfigError

FORMAT = "mgen_jax input bit densities, v1"
HEAD_PART = "head"
ENCODINGS = ("offset", "twos_complement", "sign_magnitude")  # the spec's input_encoding choices
MEAN_SOURCE = "mean"


def matrix_key(part: str, op_name: str) -> str:
    """The key of one matrix: its part (a unit name such as ``L1.attn``, or ``head``) and its op name."""
    return f"{part}/{op_name}"


def _check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ConfigError(f"input encoding must be one of {ENCODINGS}, got {encoding!r}")


def quantize(x, scale, bits: int, xp=np):
    """Symmetric quantization to signed ``bits``-bit integers: clip(round(x / scale), -qmax, qmax), qmax =
    2^(bits-1) - 1 (``xp``: numpy or jax.numpy; ``scale`` > 0 broadcasts against x)."""
    qmax = 2 ** (bits - 1) - 1
    return xp.clip(xp.round(x / scale), -qmax, qmax).astype(xp.int32)


def bit_planes(q, bits: int, encoding: str, xp=np):
    """[bits, ...] 0/1 planes of the encoded integers q (least significant first). With ``sign_magnitude`` the last
    plane is the sign (1 for q < 0) and the others hold |q|."""
    _check_encoding(encoding)
    if encoding == "offset":
        word = q + 2 ** (bits - 1)
    elif encoding == "twos_complement":
        word = xp.bitwise_and(q, 2**bits - 1)
    else:
        word = xp.abs(q) + xp.where(q < 0, 2 ** (bits - 1), 0)
    return xp.stack([xp.bitwise_and(xp.right_shift(word, j), 1) for j in range(bits)])


def driven_bits(bits: int, encoding: str) -> int:
    """Bit positions that take a DAC cycle: all, less the sign with ``sign_magnitude``."""
    _check_encoding(encoding)
    return bits - 1 if encoding == "sign_magnitude" else bits


def drive_planes(planes, bits: int, encoding: str, dac_bits: int, xp=np):
    """[cycles, ...] 0/1: is the DAC input of each cycle non-zero (a slice of ``dac_bits`` driven bits)."""
    driven = driven_bits(bits, encoding)
    slices = [planes[j:min(j + dac_bits, driven)].max(axis=0) for j in range(0, driven, dac_bits)]
    return xp.stack(slices)


def densities_of(q: np.ndarray, bits: int, encoding: str, dac_bits: int = 1) -> dict[str, Any]:
    """Density of the integers ``q`` (any shape, every element one input): {"density": mean over the cycles of the
    fraction of non-zero DAC slices, "per_bit": fraction of 1s in every bit position, least significant first}."""
    planes = bit_planes(np.asarray(q, dtype=np.int64), bits, encoding)
    flat = planes.reshape(bits, -1).astype(np.float64)
    drives = drive_planes(planes, bits, encoding, dac_bits).reshape(-1, flat.shape[1]).astype(np.float64)
    return {"density": float(drives.mean()), "per_bit": flat.mean(axis=1).tolist()}


@dataclasses.dataclass(frozen=True)
class InputDensities:
    """One input density per matrix (key ``matrix_key``) for inputs of ``input_bits`` bits written with
    ``encoding`` and fed ``dac_bits`` at a time; ``source`` says where they were measured."""

    values: Mapping[str, float]
    input_bits: int
    dac_bits: int
    encoding: str
    source: str = "given"

    def __post_init__(self) -> None:
        _check_encoding(self.encoding)
        for key, value in self.values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"input density of {key!r} ({self.source}) must be a number in [0, 1], got "
                                  f"{str(value)[:40]}")

    def density(self, key: str) -> float:
        try:
            return float(self.values[key])
        except KeyError:
            raise ConfigError(f"input densities ({self.source}) have no matrix {key!r}: they were measured on another "
                              f"model (they hold {sorted(self.values)[:4]}...)") from None

    def check_spec(self, spec: Any) -> None:
        """ConfigError naming the spec field whose value differs from what the densities were measured for."""
        for field, mine in (("input_bits", self.input_bits), ("dac_bits", self.dac_bits),
                            ("input_encoding", self.encoding)):
            if getattr(spec, field) != mine:
                raise ConfigError(f"input densities ({self.source}) were measured for {field} {mine!r}, but hardware "
                                  f"spec {spec.name!r} has {field} {getattr(spec, field)!r}")

    def mean_density(self) -> float:
        return float(np.mean(list(self.values.values())))


def mean_densities(entries: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per matrix, the mean over sources of {"density", "per_bit"} (sources: one mapping key -> record each; every
    source must hold the same matrices). With every request running every task, the mean over the tasks' models gives
    the independent models' energy exactly (counts are linear in the density)."""
    keys = sorted(entries[0])
    for entry in entries[1:]:
        if sorted(entry) != keys:
            raise ConfigError("input densities of different sources hold different matrices")
    return {k: {"density": float(np.mean([e[k]["density"] for e in entries])),
                "per_bit": np.mean([e[k]["per_bit"] for e in entries], axis=0).tolist()} for k in keys}


def save_density_file(path: str | Path, header: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a density file: ``header`` (model, input_bits, dac_bits, scale, ...) and per source {"description",
    "encodings": {encoding: {key: {"density", "per_bit"}}}, ...}."""
    from mgen_jax.io import write_json_atomic

    for field in ("model", "input_bits", "dac_bits", "scale"):
        if field not in header:
            raise ConfigError(f"density file header lacks {field!r}")
    return write_json_atomic(path, {"format": FORMAT, **header, "sources": dict(sources)})


def read_density_file(path: str | Path) -> dict[str, Any]:
    from mgen_jax.io import read_json_file

    data = read_json_file(path, "input density file")
    if data.get("format") != FORMAT or not isinstance(data.get("sources"), dict):
        raise ConfigError(f"input density file {path}: not a density file (format {FORMAT!r} with 'sources')")
    return data


def load_input_densities(path: str | Path, spec: Any, source: str | None = None) -> InputDensities:
    """The densities of ``source`` (default: the only one, else ``mean``) for the spec's input encoding, checked
    against the spec's input_bits and dac_bits."""
    from mgen_jax.io import describe_value

    data = read_density_file(path)
    sources = data["sources"]
    if source is None:
        source = next(iter(sources)) if len(sources) == 1 else MEAN_SOURCE
    if source not in sources:
        raise ConfigError(f"input density file {path} has no source {describe_value(source)}; it has "
                          f"{describe_value(sorted(map(str, sources)), 200)}")
    record = sources[source]
    encodings = record.get("encodings") if isinstance(record, dict) else None
    if not isinstance(encodings, dict):
        raise ConfigError(f"input density file {path}: source {source!r} has no 'encodings' mapping")
    if spec.input_encoding not in encodings:
        raise ConfigError(f"input density file {path} has no {spec.input_encoding!r} densities (hardware spec field "
                          f"'input_encoding'); it has {describe_value(sorted(map(str, encodings)), 200)}")
    matrices = encodings[spec.input_encoding]
    bad = [k for k, v in matrices.items() if not isinstance(v, dict) or "density" not in v] if isinstance(
        matrices, dict) else ["(not a mapping)"]
    if bad:
        raise ConfigError(f"input density file {path}: {source}/{spec.input_encoding} entry {describe_value(bad[0])} "
                          "is not a record with a 'density'")
    for field in ("input_bits", "dac_bits"):
        value = data.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise ConfigError(f"input density file {path}: field '{field}' must be an integer in 1..64, got "
                              f"{describe_value(value)}")
    densities = InputDensities(
        {k: v["density"] for k, v in matrices.items()}, data["input_bits"], data["dac_bits"], spec.input_encoding,
        source=f"{Path(path).name}:{source}",
    )
    densities.check_spec(spec)
    return densities
