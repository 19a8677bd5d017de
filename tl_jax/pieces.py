"""From a config to the pieces of a run: dataset facts, model + params, tokenizer.

`tl-jax info`, the training loop and the experiments all build through here, so a config means
the same model and data everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections as mlc

from tl_jax import errors
from tl_jax import data as data_lib
from tl_jax import models


class ConfigError(errors.TlJaxError, ValueError):
  """A config whose parts do not fit together."""


@dataclasses.dataclass
class Pieces:
  target_info: data_lib.DatasetInfo
  source_info: data_lib.DatasetInfo | None
  module: Any
  params: Any
  load_report: models.LoadReport
  tokenizer: Any  # None for image models


def _heads(config: mlc.ConfigDict, target, source) -> tuple[int, dict[str, int] | None]:
  """One shared head, or named heads when a domain asks for its own (data.<domain>.head)."""
  domains = [(config.data.target, target)] + ([(config.data.source, source)] if source else [])
  named = {d.head: info.num_classes for d, info in domains if d.head}
  num_classes = config.model.num_classes or target.num_classes
  if not named:
    return num_classes, None
  for d, info in domains:
    named.setdefault(d.head or 'shared', info.num_classes)
  return 0, named


def build_model(config: mlc.ConfigDict, target, source=None, *, init: str | None = None):
  """(module, params, LoadReport) for config.model, with heads sized for the datasets."""
  m = config.model
  num_classes, heads = _heads(config, target, source)
  return models.load_pretrained(
      m.name, init=init or m.init, num_classes=num_classes if heads is None else None,
      heads=heads, pooling=m.pooling, dropout_rate=m.dropout_rate,
      attention_dropout_rate=m.attention_dropout_rate,
      dropout_impl=m.get('dropout_impl', 'hash'), dtype=m.dtype,
      param_dtype=m.param_dtype, image_size=m.image_size or None, lora_rank=m.lora_rank,
      lora_alpha=m.lora_alpha, lora_targets=tuple(m.lora_targets), seed=config.seed,
      with_report=True, allow_pickle=m.get('allow_pickle', False))


def _check_kinds(module, target, source) -> None:
  for info in filter(None, (target, source)):
    if info.kind != module.kind:
      raise ConfigError(
          f'dataset {info.name!r} holds {info.kind} but model is a {module.kind} model: pick a '
          f"{'BERT' if info.kind == 'text' else 'ViT'} checkpoint for config.model.name")


def build(config: mlc.ConfigDict) -> Pieces:
  target = data_lib.dataset_info(config.data.target, config.data)
  source = (data_lib.dataset_info(config.data.source, config.data)
            if config.data.source.name else None)
  module, params, report = build_model(config, target, source)
  _check_kinds(module, target, source)
  tokenizer = models.load_tokenizer(config.model.name) if module.kind == 'text' else None
  if tokenizer is not None:
    models.pretrained.check_vocab(module.config.vocab_size, tokenizer, config.model.name)
    limit = module.config.max_position_embeddings
    if config.data.max_length > limit:
      raise ConfigError(f'data.max_length={config.data.max_length} is over the model\'s '
                        f'{limit} positions: set --config.data.max_length<={limit}')
  return Pieces(target, source, module, params, report, tokenizer)
