"""The task scheduler: residency, batch size and execution order of a sharing tree under chip limits."""

from mgen_jax.schedule.problem import ScheduleCost
from mgen_jax.schedule.problem import SchedulingProblem
from mgen_jax.schedule.problem import evaluate
from mgen_jax.schedule.solvers import Solution
from mgen_jax.schedule.solvers import exact_refusal
from mgen_jax.schedule.solvers import request_major
from mgen_jax.schedule.solvers import solve
from mgen_jax.schedule.solvers import solve_exact
from mgen_jax.schedule.solvers import solve_fast
from mgen_jax.schedule.solvers import task_major
