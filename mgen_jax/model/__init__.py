"""Model side: BERT in Flax with Hugging Face weights. Stands on nothing of mgen_jax but errors and pretrained-file
resolution."""

from mgen_jax.model.bert import AttentionUnit
from mgen_jax.model.bert import BertConfig
from mgen_jax.model.bert import BertEncoder
from mgen_jax.model.bert import ClassificationHead
from mgen_jax.model.bert import Embeddings
from mgen_jax.model.bert import FFNUnit
from mgen_jax.model.bert import SequenceClassifier
from mgen_jax.model.bert import attention_bias
from mgen_jax.model.bert import make_unit
from mgen_jax.model.pretrained import PretrainedBert
from mgen_jax.model.pretrained import load_pretrained
from mgen_jax.model.weights import params_from_hf
