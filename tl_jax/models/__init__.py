"""Pretrained Flax BERT and ViT backbones with HF-compatible parameter trees, plus heads.

  module, params = load_pretrained('minilm', num_classes=5, pooling='mean')
  out = module.apply({'params': params}, input_ids=ids, attention_mask=mask, train=False)
  out.last_hidden_state, out.pooled, out.hidden_states, out.logits
"""

from tl_jax.models.bert import BertConfig, BertModel
from tl_jax.models.export import export_run
from tl_jax.models.hf_config import UnsupportedModelError, module_from_architecture
from tl_jax.models.outputs import ModelOutput
from tl_jax.models.pretrained import (CheckpointMismatchError, LoadReport, load_pretrained,
                                      load_tokenizer, save_pretrained)
from tl_jax.models.resolve import CheckpointNotFoundError
from tl_jax.models.vit import ViTConfig, ViTModel, resample_position_embeddings

__all__ = [
    'BertConfig', 'BertModel', 'ViTConfig', 'ViTModel', 'ModelOutput', 'LoadReport',
    'load_pretrained', 'save_pretrained', 'export_run', 'load_tokenizer',
    'module_from_architecture', 'resample_position_embeddings', 'CheckpointMismatchError', 'CheckpointNotFoundError',
    'UnsupportedModelError',
]
