"""Base + compressed task deltas (DESIGN.md section 12), without retraining.

A task's private unit copy is stored as a base weight set (the pretrained unit, or the shared trunk's unit) plus its
delta, compressed at crossbar granularity in two stages: whole crossbar blocks of the delta are dropped, ranked by
their effect on the output; the kept blocks are stored at fewer bits (fewer cell slices per weight, so fewer
crossbars). A profiler chooses each matrix's (kept blocks, delta bits) within an accuracy tolerance on the held-out
split carved from train. The hardware side of a base + delta node is ``mgen_jax.hw.delta``.

- ``blocks``: the pure math (quantisation, output effect of each block, allocation, reconstruction), numpy;
- ``stats``: calibration statistics of a model's crossbar matrices (input second moments, gradient Fisher), JAX;
- ``models``: task models from fine-tuning runs or multi-task model folders, their bases, evaluation;
- ``profiler``: the held-out walk that picks the compression of every task (``compress_models``);
- ``files``: the compressed model on disk (report.json + deltas.msgpack) and back (``load_compressed``);
- ``pipeline``: ``compress_folder``, what ``mgen compress`` runs.
"""

from mgen_jax.compress.files import load_compressed
from mgen_jax.compress.models import load_models
from mgen_jax.compress.pipeline import compress_folder
from mgen_jax.compress.profiler import ProfileSettings
from mgen_jax.compress.profiler import compress_models
