"""Exceptions shared by every part of mgen_jax."""


class MgenError(Exception):
    """Base class of the errors mgen_jax raises on bad input."""


class ConfigError(MgenError, ValueError):
    """A config, spec or command-line value is missing, unknown or out of range; the message names it."""


class DataError(MgenError, ValueError):
    """A data file is missing or malformed; the message names the file and line."""


class TrainingError(MgenError):
    """A run failed while training (a NaN or infinite loss): not bad input; its last checkpoint is kept."""
