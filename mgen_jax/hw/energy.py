"""Actions, components and the energy table: energy = action counts x energy per action.

Both the exact simulator and the differentiable cost model produce counts over ``ACTIONS``; this module alone
turns them into joules, so "cost == sim" is a statement about counts.
"""

from __future__ import annotations

import numpy as np

from mgen_jax.hw.spec import HardwareSpec

# (action, component, spec field holding its energy per action in pJ). The array read ("crossbar") is a fixed part
# per crossbar activation plus a part per conducting cell; the input drive ("dac") a part per row driven with a
# non-zero input plus a fixed part per row and input cycle (mapping.py counts them; hw/density.py has the densities).
_TABLE: tuple[tuple[str, str, str], ...] = (
    ("crossbar_activation", "crossbar", "crossbar_activation_energy_pj"),
    ("cell_read", "crossbar", "cell_read_energy_pj"),
    ("adc_conversion", "adc", "adc_conversion_energy_pj"),
    ("dac_drive", "dac", "dac_drive_energy_pj"),
    ("input_latch", "dac", "input_latch_energy_pj"),
    ("shift_add", "shift_add", "shift_add_energy_pj"),
    ("partial_sum_add", "shift_add", "partial_sum_add_energy_pj"),
    ("buffer_access", "buffer", "buffer_access_energy_pj"),
    ("router_hop", "router", "router_hop_energy_pj"),
    ("digital_mac", "digital", "digital_mac_energy_pj"),
    ("digital_op", "digital", "digital_op_energy_pj"),
    ("cell_write", "write", "cell_write_energy_pj"),
    ("dram_bit", "dram", "dram_energy_pj_per_bit"),
)

ACTIONS: tuple[str, ...] = tuple(a for a, _, _ in _TABLE)
ENERGY_FIELDS: dict[str, str] = {a: field for a, _, field in _TABLE}  # action -> spec field of its energy
COMPONENTS: tuple[str, ...] = tuple(dict.fromkeys(c for _, c, _ in _TABLE))
ACTION_INDEX = {a: i for i, a in enumerate(ACTIONS)}
NUM_ACTIONS = len(ACTIONS)


def energy_per_action_pj(spec: HardwareSpec) -> np.ndarray:
    """[A] energy of one action, in pJ, in the order of ``ACTIONS``."""
    return np.array([getattr(spec, ENERGY_FIELDS[a]) for a in ACTIONS], dtype=np.float64)


def action_component_matrix() -> np.ndarray:
    """[A, C] 0/1 matrix: counts_or_energy[A] @ M gives the per-component sum."""
    matrix = np.zeros((len(ACTIONS), len(COMPONENTS)))
    for i, (_, component, _) in enumerate(_TABLE):
        matrix[i, COMPONENTS.index(component)] = 1.0
    return matrix


def counts_to_energy_j(counts: np.ndarray, spec: HardwareSpec) -> np.ndarray:
    """Energy in J of action counts [..., A] -> [..., A]."""
    return np.asarray(counts, dtype=np.float64) * energy_per_action_pj(spec) * 1e-12


def by_component(values_a: np.ndarray) -> dict[str, float]:
    """Sum a [A] vector (counts or energy) per component."""
    summed = np.asarray(values_a, dtype=np.float64) @ action_component_matrix()
    return {c: float(v) for c, v in zip(COMPONENTS, summed)}


def by_action(values_a: np.ndarray) -> dict[str, float]:
    return {a: float(v) for a, v in zip(ACTIONS, np.asarray(values_a, dtype=np.float64))}
