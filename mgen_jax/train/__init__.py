"""Training: fine-tuning configs, the train loop, checkpoints, data parallelism."""

from mgen_jax.train.config import FinetuneConfig
from mgen_jax.train.config import load_config
from mgen_jax.train.finetune import TrainingError
from mgen_jax.train.finetune import train_and_evaluate
