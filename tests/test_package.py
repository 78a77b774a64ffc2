"""The package as a user installs it: a wheel built from the repository, installed into a fresh virtual environment,
run from a folder outside the repository (issue 16)."""

from __future__ import annotations

import json
import re
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]


def _readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## The cost model in 15 lines", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, mgen) of a fresh venv holding only the wheel; its dependencies are this environment's (a .pth
    file), so nothing is downloaded and the repository is not on the path."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(root / "dist"), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((root / "dist").glob("mgen_jax-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "mgen_jax/presets/hw/isaac.yaml" in names and "mgen_jax/presets/hw/rram-32nm-sar.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "experiments/", "configs/"))]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    (target / "zz_mgen_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    located = subprocess.run([str(python), "-c", "import mgen_jax; print(mgen_jax.__file__)"], cwd=elsewhere,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert Path(located).is_relative_to(target), located  # the wheel's copy, not the repository's
    return python, venv / "bin" / "mgen", elsewhere


def test_wheel_runs_mgen_simulate_outside_the_repository(installed, capsys):
    python, mgen, elsewhere = installed
    run = subprocess.run([str(mgen), "simulate", "--tasks", "5", "--branch-points", "12", "--tokens", "64", "--json"],
                         cwd=elsewhere, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    from mgen_jax.cli import main

    assert main(["simulate", "--tasks", "5", "--branch-points", "12", "--tokens", "64", "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert json.loads(run.stdout)["energy_per_request_j"] == pytest.approx(here["energy_per_request_j"], rel=1e-12)
    version = subprocess.run([str(mgen), "--version"], cwd=elsewhere, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("mgen ")


def test_wheel_runs_the_readme_cost_model_snippet(installed):
    python, _, elsewhere = installed
    run = subprocess.run([str(python), "-c", _readme_snippet()], cwd=elsewhere, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    energy, shape = run.stdout.split(maxsplit=1)
    assert float(energy) > 0 and "(3, 13)" in shape
