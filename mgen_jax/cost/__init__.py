"""The differentiable cost model (pure JAX): expected energy, crossbars and latency of a relaxed multi-task model."""

from mgen_jax.cost.expected import CostTables
from mgen_jax.cost.expected import DeltaTables
from mgen_jax.cost.expected import EnergyEstimate
from mgen_jax.cost.expected import Workload
from mgen_jax.cost.expected import action_dict
from mgen_jax.cost.expected import branch_probs
from mgen_jax.cost.expected import branch_probs_from_dist
from mgen_jax.cost.expected import build_tables
from mgen_jax.cost.expected import component_dict
from mgen_jax.cost.expected import expected_counts
from mgen_jax.cost.expected import expected_crossbars
from mgen_jax.cost.expected import expected_energy
from mgen_jax.cost.expected import expected_latency_s
from mgen_jax.cost.expected import expected_unit_runs
from mgen_jax.cost.expected import fixed_workload
from mgen_jax.cost.expected import onehot_probs
from mgen_jax.cost.expected import workload_from_lengths
from mgen_jax.cost.expected import workload_from_trace
