"""The search wing and the command line stay readable: no module over 400 lines, no function over 80 (issue 33)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
PACKAGES = ("mgen_jax/search", "mgen_jax/cli")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MODULES = sorted(p for package in PACKAGES for p in (REPO / package).glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_module_and_function_sizes(path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines"
    long = [f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: {long}"


def test_the_packages_are_found():
    assert len(MODULES) > 20
