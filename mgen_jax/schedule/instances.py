"""Random small scheduling instances (for the exact-vs-fast studies and the brute-force tests): 2-3 tasks on a
one-layer BERT of small dims, 2-4 requests, a chip of 40-80 crossbars and a 0.5-4 KB buffer, so that residency
and spills both matter."""

from __future__ import annotations

import dataclasses

import numpy as np

from mgen_jax.hw.arch import BertArch
from mgen_jax.hw.spec import HardwareSpec
from mgen_jax.hw.tree import SharingTree
from mgen_jax.workload.trace import Trace

SMALL_ARCH = BertArch("tiny-1layer", num_layers=1, hidden=96, num_heads=4, ffn=200)


def random_small_instance(rng: np.random.Generator, base: HardwareSpec):
    """(spec, arch, tree, trace) drawn from ``rng``."""
    t = int(rng.integers(2, 4))
    r = int(rng.integers(2, 5))
    spec = dataclasses.replace(
        base, crossbars_per_ima=8, imas_per_tile=1, tiles_per_chip=int(rng.integers(5, 11)),
        buffer_bytes_per_tile=int(rng.integers(100, 700)),
    )
    b = [int(x) for x in rng.integers(0, 3, t)]
    mask = rng.random((r, t)) < 0.6
    mask[np.arange(r), rng.integers(0, t, r)] = True
    trace = Trace(rng.integers(3, 25, r), mask, tuple(f"t{i}" for i in range(t)))
    return spec, SMALL_ARCH, SharingTree.from_branch_points(b, SMALL_ARCH.num_units), trace
