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


def bucket_for(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= length (buckets increasing, the last one max_length)."""
  return next((b for b in buckets if b >= length), buckets[-1])


class TokenizeBatch:
  """grain batch_fn: a list of {'text': (str, ...), 'label'?, 'mask'?} -> int32 arrays [B, L].

  One field is tokenised alone; two or more as a pair (the first, the rest joined), so BERT sees
  title [SEP] body with token_type_ids 0/1. L is max_length; with `buckets` (increasing, the
  last = max_length) L is the smallest bucket that holds the batch's longest example, so a batch
  of short texts carries few pad tokens and there are at most len(buckets) shapes.
  """

  def __init__(self, tokenizer, max_length: int, buckets: Sequence[int] = ()):
    if tokenizer is None:
      raise errors.DataError('a text dataset needs a tokenizer: pass tokenizer=... '
                             '(a transformers tokenizer of the model)')
    if getattr(tokenizer, 'pad_token', None) is None:
      raise errors.DataError(f'tokenizer {type(tokenizer).__name__} has no pad token; '
                             'set tokenizer.pad_token before building the pipeline')
    if max_length <= 0:
      raise errors.DataError(f'data.max_length={max_length} must be positive')
    buckets = tuple(int(b) for b in buckets if int(b) < max_length) + (max_length,)
    if list(buckets) != sorted(set(buckets)) or buckets[0] <= 0:
      raise errors.DataError(f'length buckets {buckets} must be increasing positive lengths')
    self._tokenizer = tokenizer
    self._max_length = max_length
    self._buckets = buckets

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
    if len(self._buckets) > 1:
      batch = self._cut_to_bucket(batch)
    return collate_extras(examples, batch)

  def _cut_to_bucket(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops pad-only columns down to the bucket: what padding to that length gives. Padding
    to max_length first keeps the tokenizer's padding state as every other pipeline sets it
    (a fast tokenizer shared by the train and eval threads must not be reconfigured)."""
    length = bucket_for(int(batch['attention_mask'].sum(axis=1).max(initial=0)), self._buckets)
    if length == self._max_length:
      return batch
    left = getattr(self._tokenizer, 'padding_side', 'right') == 'left'
    cut = slice(-length, None) if left else slice(0, length)
    return {k: np.ascontiguousarray(v[:, cut]) for k, v in batch.items()}


def collate_extras(examples: Sequence[dict[str, Any]],
                   batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Add `label` and `index` (int32) and `mask` (bool) when the examples carry them."""
  for key in ('label', 'index'):
    if key in examples[0]:
      batch[key] = np.fromiter((ex[key] for ex in examples), np.int32, len(examples))
  if 'mask' in examples[0]:
    batch['mask'] = np.fromiter((ex['mask'] for ex in examples), bool, len(examples))
  return batch
