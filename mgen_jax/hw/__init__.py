"""Hardware side: accelerator specs, BERT architecture, crossbar mapping, operations and their action counts.

Numpy and the standard library only; ``cost`` and ``sim`` stand on this package.
"""

from mgen_jax.hw.arch import PRESETS as ARCH_PRESETS
from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.arch import Unit
from mgen_jax.hw.arch import arch_from_hf_config
from mgen_jax.hw.arch import load_arch
from mgen_jax.hw.delta import DeltaMatrix
from mgen_jax.hw.delta import DeltaPlan
from mgen_jax.hw.delta import DeltaUnit
from mgen_jax.hw.delta import delta_grid
from mgen_jax.hw.delta import load_delta_plan
from mgen_jax.hw.density import InputDensities
from mgen_jax.hw.density import load_input_densities
from mgen_jax.hw.energy import ACTIONS
from mgen_jax.hw.energy import COMPONENTS
from mgen_jax.hw.energy import energy_per_action_pj
from mgen_jax.hw.mapping import MatrixEvents
from mgen_jax.hw.mapping import MatrixMapping
from mgen_jax.hw.mapping import effective_input_density
from mgen_jax.hw.mapping import map_matrix
from mgen_jax.hw.mapping import matrix_energy_j
from mgen_jax.hw.mapping import matrix_events
from mgen_jax.hw.ops import model_parts
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.hw.spec import load_spec
from mgen_jax.hw.spec import preset_names
from mgen_jax.hw.tree import SharingTree
