"""The exact, event-counting simulator (numpy)."""

from mgen_jax.sim.simulate import Footprint
from mgen_jax.sim.simulate import SimResult
from mgen_jax.sim.simulate import footprint
from mgen_jax.sim.simulate import simulate
from mgen_jax.sim.execute import ScheduleExecution
from mgen_jax.sim.execute import execute_schedule
