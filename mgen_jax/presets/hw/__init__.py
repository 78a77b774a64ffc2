"""Accelerator presets, every value with its source (``mgen_jax.hw.load_spec`` reads them by name)."""
