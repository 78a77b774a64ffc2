import dataclasses

import pytest

from mgen_jax import hw
from mgen_jax.errors import ConfigError
from mgen_jax.hw.spec import SPEC_FIELDS, spec_to_dict


def test_isaac_preset_values(isaac):
    assert (isaac.crossbar_rows, isaac.crossbar_cols, isaac.cell_bits, isaac.weight_bits) == (128, 128, 2, 8)
    assert isaac.slices_per_weight == 4
    assert isaac.input_cycles == 8
    assert isaac.chip_crossbars == 168 * 12 * 8 == 16128
    assert isaac.adc_conversion_energy_pj == pytest.approx(2e-3 / 1.28e9 * 1e12)  # 2 mW at 1.28 GS/s


def test_every_preset_loads_and_differs():
    names = hw.preset_names()
    assert {"isaac", "isaac-1bit", "isaac-half"} <= set(names)
    specs = {n: hw.load_spec(n) for n in names}
    assert specs["isaac-1bit"].slices_per_weight == 8
    assert specs["isaac-half"].chip_crossbars == specs["isaac"].chip_crossbars // 2
    assert specs["isaac-half"].adc_conversion_energy_pj == specs["isaac"].adc_conversion_energy_pj


def test_every_preset_value_has_a_source_comment():
    from mgen_jax.hw.spec import presets_dir

    for path in presets_dir().glob("*.yaml"):
        for line in path.read_text().splitlines():
            key = line.split(":")[0].strip()
            if key in SPEC_FIELDS and key != "name":
                assert "# source:" in line, f"{path.name}: {key} has no source comment"


def _write(tmp_path, fields, name="spec.yaml"):
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(fields))
    return path


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("crossbar_rows", -128, "must be > 0"),
        ("cell_bits", 0, "must be > 0"),
        ("adc_conversion_energy_pj", -1.0, "must be >= 0"),
        ("cycle_ns", 0.0, "must be > 0"),
        ("signed_encoding", "twos", "must be one of"),
        ("crossbar_cols", 12.5, "must be an integer"),
        ("dac_drive_energy_pj", "lots", "must be a number"),
    ],
)
def test_bad_field_names_field_and_file(tmp_path, isaac, field, value, words):
    fields = spec_to_dict(isaac) | {field: value}
    path = _write(tmp_path, fields)
    with pytest.raises(ConfigError) as err:
        hw.load_spec(path)
    assert field in str(err.value) and words in str(err.value) and str(path) in str(err.value)


def test_unknown_and_missing_fields(tmp_path, isaac):
    fields = spec_to_dict(isaac) | {"crossbar_rowz": 64}
    with pytest.raises(ConfigError, match="unknown field.*crossbar_rowz"):
        hw.load_spec(_write(tmp_path, fields))
    fields = spec_to_dict(isaac)
    del fields["adc_bits"]
    with pytest.raises(ConfigError, match="missing field.*adc_bits") as err:
        hw.load_spec(_write(tmp_path, fields, "missing.yaml"))
    assert "missing.yaml" in str(err.value)


def test_extends_overrides_and_cycle(tmp_path):
    path = _write(tmp_path, {"extends": "isaac", "name": "mine", "crossbar_rows": 256})
    spec = hw.load_spec(path)
    assert spec.crossbar_rows == 256 and spec.cell_bits == 2 and spec.name == "mine"
    a = _write(tmp_path, {"extends": "b.yaml"}, "a.yaml")
    _write(tmp_path, {"extends": "a.yaml"}, "b.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        hw.load_spec(a)


def test_missing_preset_lists_presets():
    with pytest.raises(ConfigError, match="isaac"):
        hw.load_spec("no-such-chip")


def test_spec_is_frozen_and_replace_revalidates(isaac):
    with pytest.raises(dataclasses.FrozenInstanceError):
        isaac.cell_bits = 4
    assert dataclasses.replace(isaac, cell_bits=4).slices_per_weight == 2
    with pytest.raises(ConfigError, match="weight_bits"):
        dataclasses.replace(isaac, cell_bits=16)
