"""mgen_jax: energy-aware multi-task BERT on ReRAM processing-in-memory accelerators, in JAX."""

__version__ = "0.1.0"
