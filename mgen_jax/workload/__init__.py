"""Workloads: traces of requests (token count, task set) and their statistics."""

from mgen_jax.workload.trace import Trace
from mgen_jax.workload.trace import TraceMoments
from mgen_jax.workload.trace import assign_subsets
from mgen_jax.workload.trace import fixed_trace
from mgen_jax.workload.trace import parse_subsets
from mgen_jax.workload.trace import trace_moments
