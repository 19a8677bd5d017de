"""Transfer options shared by the BERT and ViT configs: pooling, heads, dtypes, validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from tl_jax.models import heads as heads_lib
from tl_jax.models import layers
from tl_jax.models import lora

POOLINGS = ('cls', 'pooler', 'mean')


def validate(cfg) -> None:
  """Normalises (heads -> tuple, dtypes -> names) and checks a frozen config in place."""
  object.__setattr__(cfg, 'heads', heads_lib.normalize_heads(cfg.heads))
  object.__setattr__(cfg, 'dtype', jnp.dtype(cfg.dtype).name)
  object.__setattr__(cfg, 'param_dtype', jnp.dtype(cfg.param_dtype).name)
  object.__setattr__(cfg, 'lora_targets', tuple(cfg.lora_targets))
  if cfg.pooling not in POOLINGS:
    raise ValueError(f'pooling={cfg.pooling!r}; choose one of {POOLINGS}.')
  if cfg.pooling == 'pooler' and not cfg.add_pooler:
    raise ValueError("pooling='pooler' needs a pooler layer and this checkpoint has none: use "
                     "pooling='cls' or 'mean'.")
  if cfg.num_classes and cfg.heads:
    raise ValueError('Give either num_classes (one head) or heads (named heads), not both.')
  if cfg.num_classes < 0:
    raise ValueError(f'num_classes={cfg.num_classes} must be >= 0 (0 = no single head).')
  if cfg.hidden_size % cfg.num_heads:
    raise ValueError(f'hidden_size {cfg.hidden_size} is not a multiple of num_heads '
                     f'{cfg.num_heads}.')
  if not (0 <= cfg.dropout_rate < 1 and 0 <= cfg.attention_dropout_rate < 1):
    raise ValueError('dropout rates must lie in [0, 1).')
  if cfg.dropout_impl not in layers.DROPOUT_IMPLS:
    raise ValueError(f'dropout_impl={cfg.dropout_impl!r}; choose one of {layers.DROPOUT_IMPLS}.')
  layers.activation(cfg.hidden_act)  # fails early on an unknown name
  lora.validate(cfg)


def to_json(cfg) -> dict[str, Any]:
  d = dataclasses.asdict(cfg)
  d['heads'] = [list(h) for h in cfg.heads]
  return d


class Backbone:
  """What the trainer reads off any of our backbones (BertModel, ViTModel): the encoder depth
  and a JSON-able description of the architecture."""

  @property
  def num_layers(self) -> int:
    return self.config.num_layers

  def architecture(self) -> dict[str, Any]:
    """JSON-able description: equal descriptions mean interchangeable params."""
    description = {'model_type': self.model_type, **to_json(self.config)}
    # How dropout masks are drawn changes no parameter: runs and caches keep their fingerprint.
    description.pop('dropout_impl', None)
    return description
