"""Shared fixtures. The GLUE data is read from $MGEN_GLUE_DIR or ../shared/data/glue beside the repository."""

import pytest

from mgen_jax import hw
from mgen_jax.data.glue import default_glue_dir


@pytest.fixture(scope="session")
def isaac():
    return hw.load_spec("isaac")


@pytest.fixture(scope="session")
def minilm():
    return hw.load_arch("minilm-l6")


@pytest.fixture(scope="session")
def tiny_arch():
    """Two layers (U = 4), small dims with partial crossbar blocks, for exhaustive checks."""
    return hw.BertArch("tiny", num_layers=2, hidden=96, num_heads=4, ffn=200)


@pytest.fixture(scope="session")
def glue_dir():
    path = default_glue_dir()
    if path is None:
        pytest.skip("GLUE data not found (set MGEN_GLUE_DIR)")
    return path
