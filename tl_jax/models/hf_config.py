"""HF `config.json` <-> our config dataclasses, and the model registry by `model_type`."""

from __future__ import annotations

import dataclasses
from typing import Any

from tl_jax import errors
from tl_jax.models.bert import BertConfig, BertModel
from tl_jax.models.vit import ViTConfig, ViTModel

MODELS = {'bert': (BertModel, BertConfig), 'vit': (ViTModel, ViTConfig)}

# Our field -> HF config.json key.
_COMMON = dict(
    hidden_size='hidden_size', num_layers='num_hidden_layers', num_heads='num_attention_heads',
    intermediate_size='intermediate_size', hidden_act='hidden_act',
    layer_norm_eps='layer_norm_eps', initializer_range='initializer_range',
    dropout_rate='hidden_dropout_prob', attention_dropout_rate='attention_probs_dropout_prob')
_HF_KEYS = {
    'bert': dict(_COMMON, vocab_size='vocab_size', type_vocab_size='type_vocab_size',
                 max_position_embeddings='max_position_embeddings'),
    'vit': dict(_COMMON, image_size='image_size', patch_size='patch_size',
                num_channels='num_channels', qkv_bias='qkv_bias',
                pooler_output_size='pooler_output_size', pooler_act='pooler_act'),
}
_ARCHITECTURES = {'bert': 'BertModel', 'vit': 'ViTModel'}
# Options HF has no key for; kept under "tl_jax" in config.json so our exports round-trip.
_EXTRAS = ('add_pooler', 'class_token', 'pooling', 'num_classes', 'heads',
           'output_hidden_states', 'dtype', 'param_dtype')


class UnsupportedModelError(errors.TlJaxError, ValueError):
  """config.json describes a model tl_jax does not build."""


def config_kwargs_from_hf(hf: dict[str, Any], source: str) -> tuple[str, dict[str, Any]]:
  """config.json dict -> (model_type, our config kwargs)."""
  model_type = hf.get('model_type')
  if model_type not in MODELS:
    raise UnsupportedModelError(
        f'{source}: model_type={model_type!r} is not supported; tl_jax builds '
        f'{sorted(MODELS)} (BERT-family checkpoints must have model_type "bert").')
  if model_type == 'bert' and hf.get('position_embedding_type', 'absolute') != 'absolute':
    raise UnsupportedModelError(
        f'{source}: position_embedding_type={hf["position_embedding_type"]!r}; only "absolute" '
        'is supported.')
  kwargs = {ours: hf[theirs] for ours, theirs in _HF_KEYS[model_type].items()
            if hf.get(theirs) is not None}
  kwargs.update(hf.get('tl_jax', {}))
  return model_type, kwargs


def config_to_hf(model_type: str, cfg) -> dict[str, Any]:
  """Our config -> config.json dict that HF BertModel / ViTModel read, plus our extras."""
  values = dataclasses.asdict(cfg)
  hf = {'model_type': model_type, 'architectures': [_ARCHITECTURES[model_type]]}
  for ours, theirs in _HF_KEYS[model_type].items():
    if ours == 'pooler_output_size' and not values[ours]:
      continue
    hf[theirs] = values[ours]
  if model_type == 'bert':
    hf['position_embedding_type'] = 'absolute'
  hf['tl_jax'] = {k: values[k] for k in _EXTRAS if k in values}
  hf['tl_jax']['heads'] = [list(h) for h in cfg.heads]
  return hf


def build_module(model_type: str, **kwargs):
  """A module from our config kwargs (e.g. `module.architecture()`)."""
  model_cls, config_cls = MODELS[model_type]
  known = {f.name for f in dataclasses.fields(config_cls)}
  unknown = sorted(set(kwargs) - known)
  if unknown:
    raise ValueError(f'Unknown {model_type} options {unknown}; known: {sorted(known)}.')
  return model_cls(config=config_cls(**kwargs))


def module_from_architecture(architecture: dict[str, Any]):
  """Inverse of `module.architecture()`."""
  arch = dict(architecture)
  return build_module(arch.pop('model_type'), **arch)
