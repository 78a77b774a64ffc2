"""Data side: GLUE tasks and files, tokenization. Stands on nothing else of mgen_jax but its errors and
pretrained-file resolution."""

from mgen_jax.data.glue import TASKS
from mgen_jax.data.glue import GlueSplit
from mgen_jax.data.glue import GlueTask
from mgen_jax.data.glue import get_task
from mgen_jax.data.glue import load_split
from mgen_jax.data.glue import resolve_glue_dir
from mgen_jax.data.tokenize import encode
from mgen_jax.data.tokenize import encode_pairs
from mgen_jax.data.tokenize import load_tokenizer
from mgen_jax.data.tokenize import token_lengths
