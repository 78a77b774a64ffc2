"""Shared fixtures. The GLUE data is read from $MGEN_GLUE_DIR or ../shared/data/glue beside the repository."""

import os
import shutil
import tempfile

import pytest

from mgen_jax import hw
from mgen_jax.data.glue import default_glue_dir


def pytest_configure(config):
    """XLA's CPU backend at LLVM optimization level 0, unless XLA_FLAGS already sets a level: the tests compile far
    more than they run (a tiny BERT's steps, run a few times each), and the level only changes how much LLVM
    optimizes the generated loops; XLA's own passes (fusion, layouts) are unchanged (the suite's CPU time on 2 cores:
    17.0 -> 13.6 min from a clean clone). Every comparison in a test is between programs compiled at the same
    level; experiments and benchmarks keep XLA's default.

    One JAX compilation cache for the session (a fresh temporary folder, removed at the end; the tests' own
    subprocesses inherit it through the environment). Many tests build the same jitted steps anew (a new closure per
    ModelGenerator, per fine-tuning run): the second build of an identical program then loads its executable instead
    of compiling it again. Compilation dominates the tiny-BERT tests; the executables are the same, so no result
    changes. With pytest-xdist (-n N) the workers start after this runs in the controller and share its folder
    through the environment. A JAX_COMPILATION_CACHE_DIR set by the user is left alone."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:  # read when the backend starts: before any test runs
        config._mgen_xla_flags = flags
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    path = tempfile.mkdtemp(prefix="mgen-test-jax-cache-")
    config._mgen_jax_cache = path
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_unconfigure(config):
    flags = getattr(config, "_mgen_xla_flags", None)
    if flags is not None:
        if flags:
            os.environ["XLA_FLAGS"] = flags
        else:
            os.environ.pop("XLA_FLAGS", None)
    path = getattr(config, "_mgen_jax_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        os.environ.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)


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
def random_densities():
    """make(spec, arch, seed) -> InputDensities with a random density in [0, 1) for every matrix of arch and the
    heads, for the spec's input bits and encoding."""
    import numpy as np

    from mgen_jax.hw.density import InputDensities
    from mgen_jax.hw.ops import matrix_keys

    def make(spec, arch, seed):
        rng = np.random.default_rng(seed)
        values = {k: float(rng.random()) for k in matrix_keys(spec, arch)}
        return InputDensities(values, spec.input_bits, spec.dac_bits, spec.input_encoding)

    return make


@pytest.fixture(scope="session")
def glue_dir():
    path = default_glue_dir()
    if path is None:
        pytest.skip("GLUE data not found (set MGEN_GLUE_DIR)")
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A tiny random BERT (2 layers, hidden 32) as a Hugging Face directory, with all-MiniLM-L6-v2's tokenizer: for
    tests of the training loops, where the real weights are not the point."""
    import json
    import shutil

    import jax
    import jax.numpy as jnp
    from safetensors.numpy import save_file

    from mgen_jax.model.bert import BertConfig, BertEncoder
    from mgen_jax.model.weights import params_to_hf
    from mgen_jax.pretrained import resolve_pretrained_dir

    cfg = BertConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=128)
    params = BertEncoder(cfg).init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32))
    out = tmp_path_factory.mktemp("tiny_bert")
    (out / "config.json").write_text(json.dumps(cfg.to_hf()))
    save_file(params_to_hf(jax.device_get(params["params"]), cfg), str(out / "model.safetensors"))
    source = resolve_pretrained_dir("minilm-l6")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, out / name)
    return out


@pytest.fixture(scope="session")
def random_plan():
    """make(spec, arch, branch_points, seed, *, share=0.7) -> DeltaPlan compressing a random share of the own unit
    copies (random base kind, delta bits and kept blocks, some with no kept block), plus inert entries on trunk units."""
    import numpy as np

    from mgen_jax.hw.delta import DeltaMatrix, DeltaPlan, DeltaUnit, delta_grid, grid_fields
    from mgen_jax.hw.ops import MatrixOp, model_parts

    def make(spec, arch, branch_points, seed, *, share=0.7):
        rng = np.random.default_rng(seed)
        parts = model_parts(spec, arch, (2,) * len(branch_points))
        units = {}
        for t in range(len(branch_points)):
            for u in range(arch.num_units):
                if rng.random() > share:
                    continue
                mats = []
                for op in parts.units[u]:
                    if not isinstance(op, MatrixOp):
                        continue
                    bits = int(rng.choice([2, 4, 6, 8]))
                    blocks = delta_grid(spec, op.k, op.n, bits).num_blocks
                    keep = rng.random(blocks) < rng.choice([0.0, 0.3, 1.0])
                    mats.append(DeltaMatrix(op.name, bits, tuple(int(b) for b in np.flatnonzero(keep))))
                units[(t, u)] = DeltaUnit(str(rng.choice(["pretrained", "trunk"])), tuple(mats))
        return DeltaPlan(tuple(int(b) for b in branch_points), units, grid_fields(spec))

    return make


@pytest.fixture(scope="session")
def host_devices_env():
    """env(devices, **extra) -> os.environ for a subprocess with ``devices`` forced CPU devices, keeping the session's
    XLA flags (the optimization level set in pytest_configure) and adding ``extra``."""
    import os

    def env(devices, **extra):
        flags = os.environ.get("XLA_FLAGS", "")
        return dict(os.environ, XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={devices}".strip(), **extra)

    return env


@pytest.fixture(scope="session")
def run_processes(host_devices_env):
    """run(args, count) -> stdouts: ``python args`` as ``count`` processes of one multi-process JAX run on localhost
    (MGEN_COORDINATOR/MGEN_NUM_PROCESSES/MGEN_PROCESS_ID, one CPU device each, collectives through gloo), from the
    repository root; fails the test with a process's stderr if one of them fails."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    def run(args, count, timeout_s=600):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for i in range(count):
            env = host_devices_env(1, MGEN_COORDINATOR=f"127.0.0.1:{port}", MGEN_NUM_PROCESSES=str(count),
                                   MGEN_PROCESS_ID=str(i), JAX_PLATFORMS="cpu")
            procs.append(subprocess.Popen([sys.executable, *args], cwd=Path(__file__).parents[1], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = []
        try:
            for i, proc in enumerate(procs):
                out, err = proc.communicate(timeout=timeout_s)
                assert proc.returncode == 0, f"process {i} of {count} failed:\n{err[-3000:]}"
                outs.append(out)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        return outs

    return run
