"""Shipped presets (YAML data, read with importlib.resources): see ``hw/``."""
