"""``python -m mgen_jax.cli``: the ``mgen`` command."""

import sys

from mgen_jax.cli import main

sys.exit(main())
