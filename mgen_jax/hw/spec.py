"""Accelerator specification: a frozen dataclass loaded from YAML and validated.

A spec holds the free design choices of an ISAAC-style ReRAM accelerator (crossbar size, bits per cell, ADC
resolution, ...) and the per-action energies, latencies and areas that the simulator and the cost model multiply
with action counts. Every field carries its unit in its name. Presets live in ``mgen_jax/presets/hw/<name>.yaml`` (configs/hw in the repository); every value
there has a ``# source:`` comment.

A YAML file may start from another preset with ``extends: <name or path>`` and override some fields; without
``extends`` every field must be present, except the data-dependent input fields and the base + delta merge cost
(``DEFAULTED_FIELDS``), whose defaults reproduce the accounting of the presets written before them.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from pathlib import Path
from typing import Any, Mapping

from mgen_jax.errors import ConfigError
from mgen_jax.hw.density import ENCODINGS as DENSITY_ENCODINGS
from mgen_jax.io import build_config, check_name, describe_value, not_a_regular_file, read_extends_chain

SIGNED_ENCODINGS = ("offset", "differential")  # of the weights
# How a signed input is written as input_bits bits for the bit-serial DACs (hw/density.py): offset, two's
# complement, or sign-magnitude (a bipolar DAC applies the sign; only the a - 1 magnitude bits take a cycle).
INPUT_ENCODINGS = DENSITY_ENCODINGS


@dataclasses.dataclass(frozen=True, slots=True)
class HardwareSpec:
    """An ISAAC-style ReRAM PIM accelerator (DESIGN.md section 3).

    Geometry and precision are integers (they shape the mapping); energies are in pJ per action, latencies in ns,
    areas in mm^2, buffer sizes in bytes.
    """

    name: str
    # --- crossbar geometry and precision -------------------------------------------------------------------
    crossbar_rows: int
    crossbar_cols: int
    cell_bits: int
    weight_bits: int
    input_bits: int
    output_bits: int
    dac_bits: int
    adc_bits: int
    adc_convert_all_columns: bool
    signed_encoding: str
    # --- timing ---------------------------------------------------------------------------------------------
    cycle_ns: float
    cell_write_latency_ns: float
    # --- energy per action (pJ) -----------------------------------------------------------------------------
    crossbar_activation_energy_pj: float
    adc_conversion_energy_pj: float
    dac_drive_energy_pj: float
    shift_add_energy_pj: float
    partial_sum_add_energy_pj: float
    buffer_access_energy_pj: float
    buffer_access_bits: int
    router_hop_energy_pj: float
    router_flit_bits: int
    router_hops_per_transfer: float
    digital_mac_energy_pj: float
    digital_op_energy_pj: float
    cell_write_energy_pj: float
    dram_energy_pj_per_bit: float
    # --- digital work per element (ops) ---------------------------------------------------------------------
    softmax_ops_per_element: float
    layernorm_ops_per_element: float
    gelu_ops_per_element: float
    tanh_ops_per_element: float
    residual_ops_per_element: float
    # --- area and organisation ------------------------------------------------------------------------------
    crossbar_area_mm2: float
    adc_area_mm2: float
    crossbars_per_ima: int
    adcs_per_ima: int
    imas_per_tile: int
    tiles_per_chip: int
    tile_area_mm2: float
    buffer_bytes_per_tile: int
    cell_endurance_writes: float
    # --- data-dependent input activity (defaults: ISAAC's always-on accounting) ------------------------------------
    # false: every row is driven in every input cycle (density 1 for every matrix, whatever was measured);
    # true: input drives and conducting cells follow the density of non-zero DAC inputs (hw/density.py).
    data_dependent_inputs: bool = False
    input_encoding: str = "offset"
    input_bit_density_default: float = 0.5  # used where no measured density is given (data_dependent_inputs only)
    input_latch_energy_pj: float = 0.0  # per row per input cycle, whatever the bit (input register, decoder)
    cell_read_energy_pj: float = 0.0  # per conducting cell: a driven row (non-zero input) x a used column
    # --- base + compressed delta nodes (hw/delta.py) -------------------------------------------------------------
    # digital ops per output element that merges a delta pass into its base pass: scale the delta by its column's
    # quantization scale, then add it to the base output
    delta_merge_ops_per_element: float = 2.0

    def __post_init__(self) -> None:
        validate_spec(self)

    # ----- derived quantities (pure, cheap) ------------------------------------------------------------------
    @property
    def slices_per_weight(self) -> int:
        """Cell slices s = ceil(weight_bits / cell_bits) one weight spans along the columns."""
        return math.ceil(self.weight_bits / self.cell_bits)

    @property
    def columns_per_weight(self) -> int:
        """Crossbar columns per weight: s, doubled for a differential (positive/negative array) encoding."""
        return self.slices_per_weight * (2 if self.signed_encoding == "differential" else 1)

    @property
    def driven_input_bits(self) -> int:
        """Input bits that take a DAC cycle: input_bits, less the sign bit with a sign-magnitude encoding."""
        return self.input_bits - (1 if self.input_encoding == "sign_magnitude" else 0)

    @property
    def input_cycles(self) -> int:
        """Crossbar activations per input vector: ceil(driven_input_bits / dac_bits) (bit-serial inputs)."""
        return math.ceil(self.driven_input_bits / self.dac_bits)

    @property
    def crossbars_per_tile(self) -> int:
        return self.crossbars_per_ima * self.imas_per_tile

    @property
    def chip_crossbars(self) -> int:
        """Crossbar capacity of one chip."""
        return self.crossbars_per_tile * self.tiles_per_chip

    @property
    def chip_buffer_bytes(self) -> int:
        return self.buffer_bytes_per_tile * self.tiles_per_chip

    @property
    def required_adc_bits(self) -> int:
        """ADC bits for an exact column sum of one activation (before ISAAC's 1-bit encoding saving)."""
        max_sum = self.crossbar_rows * (2**self.cell_bits - 1) * (2**self.dac_bits - 1)
        return math.ceil(math.log2(max_sum + 1))

    @property
    def stage_latency_ns(self) -> float:
        """Time for one token through one matrix: input_cycles x cycle_ns (all its crossbars in parallel)."""
        return self.input_cycles * self.cycle_ns


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(HardwareSpec))
DEFAULTED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(HardwareSpec) if f.default is not dataclasses.MISSING
)
REQUIRED_FIELDS: tuple[str, ...] = tuple(name for name in SPEC_FIELDS if name not in DEFAULTED_FIELDS)
_POSITIVE_INTS = (
    "crossbar_rows", "crossbar_cols", "cell_bits", "weight_bits", "input_bits", "output_bits", "dac_bits",
    "adc_bits", "buffer_access_bits", "router_flit_bits", "crossbars_per_ima", "adcs_per_ima", "imas_per_tile",
    "tiles_per_chip", "buffer_bytes_per_tile",
)
_POSITIVE_FLOATS = ("cycle_ns", "cell_endurance_writes")
_NONNEGATIVE_FLOATS = (
    "cell_write_latency_ns", "crossbar_activation_energy_pj", "adc_conversion_energy_pj", "dac_drive_energy_pj",
    "shift_add_energy_pj", "partial_sum_add_energy_pj", "buffer_access_energy_pj", "router_hop_energy_pj",
    "router_hops_per_transfer", "digital_mac_energy_pj", "digital_op_energy_pj", "cell_write_energy_pj",
    "dram_energy_pj_per_bit", "softmax_ops_per_element", "layernorm_ops_per_element", "gelu_ops_per_element",
    "tanh_ops_per_element", "residual_ops_per_element", "crossbar_area_mm2", "adc_area_mm2", "tile_area_mm2",
    "input_latch_energy_pj", "cell_read_energy_pj", "input_bit_density_default", "delta_merge_ops_per_element",
)
_BOOLS = ("adc_convert_all_columns", "data_dependent_inputs")
# Upper limits, far beyond any real design, that keep every count and energy a finite float64 and every array
# shape allocatable: a value above its limit is refused naming the field.
_BITS_LIMIT = 32  # every *_bits field that is a precision (cell, weight, input, output, DAC, ADC)
_INT_LIMIT = 1 << 20  # crossbar rows and columns, access and flit widths, counts per IMA, tile and chip
_BUFFER_BYTES_LIMIT = 1 << 40
_FLOAT_LIMITS = {"cell_endurance_writes": 1e30}  # every other float field: FLOAT_LIMIT
FLOAT_LIMIT = 1e9  # pJ per action, ns, mm^2, ops per element, hops


def validate_spec(spec: HardwareSpec, *, source: str = "") -> None:
    """Raise ConfigError naming the offending field (and ``source``, a file) if a value is out of range."""
    where = f" in {source}" if source else ""
    for name in _POSITIVE_INTS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"hardware spec field '{name}'{where} must be an integer, got {describe_value(value)}")
        if value <= 0:
            raise ConfigError(f"hardware spec field '{name}'{where} must be > 0, got {value}")
        limit = (_BITS_LIMIT if name.endswith("_bits") and name not in ("buffer_access_bits", "router_flit_bits")
                 else _BUFFER_BYTES_LIMIT if name == "buffer_bytes_per_tile" else _INT_LIMIT)
        if value > limit:
            raise ConfigError(f"hardware spec field '{name}'{where} must be <= {limit:,}, got "
                              f"{describe_value(value)}")
    for name in _POSITIVE_FLOATS + _NONNEGATIVE_FLOATS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"hardware spec field '{name}'{where} must be a finite number, got "
                              f"{describe_value(value)}")
        if name in _POSITIVE_FLOATS and value <= 0:
            raise ConfigError(f"hardware spec field '{name}'{where} must be > 0, got {value}")
        if value < 0:
            raise ConfigError(f"hardware spec field '{name}'{where} must be >= 0, got {value}")
        if value > _FLOAT_LIMITS.get(name, FLOAT_LIMIT):
            raise ConfigError(f"hardware spec field '{name}'{where} must be <= {_FLOAT_LIMITS.get(name, FLOAT_LIMIT):g}"
                              f" (a limit that keeps every energy finite), got {value:g}")
    for name in _BOOLS:
        if not isinstance(getattr(spec, name), bool):
            raise ConfigError(f"hardware spec field '{name}'{where} must be true or false, got "
                              f"{describe_value(getattr(spec, name))}")
    for name, choices in (("signed_encoding", SIGNED_ENCODINGS), ("input_encoding", INPUT_ENCODINGS)):
        if getattr(spec, name) not in choices:
            raise ConfigError(
                f"hardware spec field '{name}'{where} must be one of {choices}, got {describe_value(getattr(spec, name))}"
            )
    if spec.input_bit_density_default > 1:
        raise ConfigError(
            f"hardware spec field 'input_bit_density_default'{where} is a fraction of rows and must be <= 1, "
            f"got {spec.input_bit_density_default}"
        )
    if spec.input_encoding == "sign_magnitude" and spec.input_bits < 2:
        raise ConfigError(f"hardware spec field 'input_bits'{where} must be >= 2 with a sign_magnitude input_encoding")
    if not isinstance(spec.name, str) or not spec.name:
        raise ConfigError(f"hardware spec field 'name'{where} must be a non-empty string")
    check_name(spec.name, f"hardware spec field 'name'{where}")  # it names output files (mgen report)
    if spec.cell_bits > spec.weight_bits:
        raise ConfigError(
            f"hardware spec field 'cell_bits'{where} ({spec.cell_bits}) exceeds 'weight_bits' ({spec.weight_bits})"
        )
    if spec.dac_bits > spec.driven_input_bits:
        raise ConfigError(
            f"hardware spec field 'dac_bits'{where} ({spec.dac_bits}) exceeds the driven input bits "
            f"({spec.driven_input_bits} of 'input_bits' {spec.input_bits})"
        )


def presets_dir() -> Path:
    """The hardware presets shipped inside the package (``mgen_jax/presets/hw``, read through importlib.resources
    so that a wheel install finds them; the repository's configs/hw links there)."""
    return Path(str(importlib.resources.files("mgen_jax").joinpath("presets", "hw")))


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    path = Path(name_or_path)
    candidates = []
    if path.suffix in (".yaml", ".yml"):
        candidates.append(path)
        if relative_to is not None:
            candidates.append(relative_to / path)
    else:
        candidates.append(presets_dir() / f"{name_or_path}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for candidate in candidates:
        unfit = not_a_regular_file(candidate)
        if unfit != "not found":
            raise ConfigError(f"hardware spec {candidate} {unfit}")
    if not candidates[0].exists() and path.exists():  # /dev/zero, a folder, a file named otherwise
        raise ConfigError(f"hardware spec {str(name_or_path)!r} is no preset name, and a spec file's name ends in "
                          f".yaml or .yml: give such a file or one of the presets {preset_names()}")
    raise ConfigError(
        f"hardware spec {str(name_or_path)!r} not found: give a YAML path or one of the presets {preset_names()}"
    )


def _check_keys(path: Path, raw: dict[str, Any]) -> None:
    unknown = sorted(describe_value(k, 60) for k in raw if k not in SPEC_FIELDS)
    if unknown:
        raise ConfigError(f"hardware spec {path}: unknown field(s) {unknown[:10]}; known fields are "
                          f"{list(SPEC_FIELDS)}")


def _read_fields(path: Path) -> dict[str, Any]:
    """The fields of ``path`` over those of the presets its ``extends:`` chain names (io.read_extends_chain)."""
    fields: dict[str, Any] = {}
    for _, raw in read_extends_chain(path, "hardware spec", resolve=_resolve,
                                     check=_check_keys):
        fields.update(raw)
    return fields


def spec_from_dict(fields: Mapping[str, Any], *, source: str = "<dict>") -> HardwareSpec:
    """Build and validate a spec from a complete mapping of field -> value."""
    values = dict(fields)
    # YAML reads 1e6 as a string and 30 as an int: coerce numbers to the declared types, reject other text.
    for f in dataclasses.fields(HardwareSpec):
        value = values.get(f.name)
        if f.type == "float" and isinstance(value, str):
            try:
                values[f.name] = float(value)
            except ValueError:
                raise ConfigError(f"hardware spec field '{f.name}' in {source} must be a number, got "
                                  f"{describe_value(value)}") from None
        elif f.type == "float" and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
            values[f.name] = float(value)  # (a larger integer is refused by build_config, naming the field)
    return build_config(HardwareSpec, values, source=source, what="hardware spec", required=REQUIRED_FIELDS)


def load_spec(name_or_path: str | Path = "isaac") -> HardwareSpec:
    """Load a hardware spec: a preset name (``isaac``; ``preset_names()``) or a path to a YAML file.

    Raises ConfigError naming the file and the field for unknown keys, missing fields and out-of-range values.
    """
    path = _resolve(name_or_path)
    return spec_from_dict(_read_fields(path), source=str(path))


def spec_to_dict(spec: HardwareSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in SPEC_FIELDS}
