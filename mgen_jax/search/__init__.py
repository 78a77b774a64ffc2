"""The model generator: differentiable search of where each task branches off a shared trunk."""

from mgen_jax.search.config import SearchConfig
from mgen_jax.search.config import load_search_config
from mgen_jax.search.generator import ModelGenerator
