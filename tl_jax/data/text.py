"""Text examples -> token batches with a HF tokenizer (fast tokenizers batch in Rust)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tl_jax.data import errors


def as_str(value: Any) -> str:
  return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def resolve_fields(wanted: Sequence[str], available: Sequence[str], name: str) -> tuple[str, ...]:
  """The configured text fields, each checked against the dataset's Text features."""
  missing = [f for f in wanted if f not in available]
  if not wanted or missing:
    raise errors.DataError(
        f'{name!r} has no text field {", ".join(map(repr, missing)) or "(none given)"}; its '
        f'text fields: {", ".join(available)}; set data.text_fields (or '
        f'data.<domain>.text_fields) to one or two of them, e.g. ({available[0]!r},)')
  return tuple(wanted)


class TokenizeBatch:
  """grain batch_fn: a list of {'text': (str, ...), 'label'?, 'mask'?} -> int32 arrays [B, L].

  One field is tokenised alone; two or more as a pair (the first, the rest joined), so BERT sees
  title [SEP] body with token_type_ids 0/1.
  """

  def __init__(self, tokenizer, max_length: int):
    if tokenizer is None:
      raise errors.DataError('a text dataset needs a tokenizer: pass tokenizer=... '
                             '(a transformers tokenizer of the model)')
    if getattr(tokenizer, 'pad_token', None) is None:
      raise errors.DataError(f'tokenizer {type(tokenizer).__name__} has no pad token; '
                             'set tokenizer.pad_token before building the pipeline')
    if max_length <= 0:
      raise errors.DataError(f'data.max_length={max_length} must be positive')
    self._tokenizer = tokenizer
    self._max_length = max_length

  def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    first = [ex['text'][0] for ex in examples]
    rest = None
    if len(examples[0]['text']) > 1:
      rest = [' '.join(ex['text'][1:]) for ex in examples]
    encoded = self._tokenizer(
        first, rest, max_length=self._max_length, truncation=True, padding='max_length',
        return_tensors='np', return_token_type_ids=True, return_attention_mask=True)
    input_ids = np.asarray(encoded['input_ids'], np.int32)
    batch = {
        'input_ids': input_ids,
        'attention_mask': np.asarray(encoded['attention_mask'], np.int32),
        'token_type_ids': np.asarray(
            encoded.get('token_type_ids', np.zeros_like(input_ids)), np.int32),
    }
    return collate_extras(examples, batch)


def collate_extras(examples: Sequence[dict[str, Any]],
                   batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Add `label` and `index` (int32) and `mask` (bool) when the examples carry them."""
  for key in ('label', 'index'):
    if key in examples[0]:
      batch[key] = np.fromiter((ex[key] for ex in examples), np.int32, len(examples))
  if 'mask' in examples[0]:
    batch['mask'] = np.fromiter((ex['mask'] for ex in examples), bool, len(examples))
  return batch
