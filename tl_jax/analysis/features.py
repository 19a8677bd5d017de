"""Frozen-backbone features: every example of a split computed ONCE, cached in memory and on disk.

  feats = split_features(config, 'train', cache_dir='runs/feature_cache')   # Features(x, y, key)
  fn = feature_fn(module, layer=None)        # jitted (params, batch) -> [B, D] float32

The eval pipeline feeds the backbone (padded batches with a `mask`, same order every time), so
every example appears exactly once. The cache file name holds a hash of everything that changes
the numbers: model name + architecture, a fingerprint of the weights, dataset/split (and its
size), text fields, pooling/layer, max_length, image size. Change any of them and the key
changes, so a cached file is never stale.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tl_jax import errors
from tl_jax.models import layers
from tl_jax.models.forward import forward, model_inputs


class FeatureError(errors.TlJaxError, ValueError):
  """A layer, split or cache the feature extractor cannot use."""


@dataclasses.dataclass(frozen=True)
class Features:
  """Features [N, D] float32 and labels [N] int32 (-1 where unlabelled) of one split."""
  x: np.ndarray
  y: np.ndarray
  key: str = ''
  seconds: float = 0.0  # time spent computing them (0 when read from the cache)
  from_cache: bool = False

  def __len__(self) -> int:
    return len(self.x)


# -------------------------------------------------------------------------------------------
# Computing features.
# -------------------------------------------------------------------------------------------

def _with_hidden_states(module):
  cfg = dataclasses.replace(module.config, output_hidden_states=True)
  return type(module)(cfg)


@functools.lru_cache(maxsize=32)
def feature_fn(module, layer: int | None = None):
  """Jitted `(params, batch) -> [B, D]` float32 features in eval mode (no dropout).

  layer None: the model's pooled output (its configured pooling). layer k: hidden state k
  (0 = embeddings, -1 = last layer), pooled the model's way: masked mean for 'mean', first
  token for 'cls'/'pooler'. One compiled function per (module, layer): modules hash by config.
  """
  if layer is not None:
    num_states = module.num_layers + 1
    if not -num_states <= layer < num_states:
      raise FeatureError(f'layer={layer} but the model has hidden states 0..{num_states - 1} '
                         f'(0 = embeddings); pick one in that range, or None for the pooled output')
    module = _with_hidden_states(module)
  pooling = module.config.pooling

  def fn(params, batch):
    out = forward(module, params, batch, train=False)
    if layer is None:
      return out.pooled.astype(jnp.float32)
    hidden = out.hidden_states[layer]
    if pooling != 'mean':
      return hidden[:, 0].astype(jnp.float32)
    if 'image' in batch:  # ViT: mean over patch tokens, as its 'mean' pooling
      return layers.masked_mean(hidden[:, getattr(module.config, 'num_prefix_tokens', 0):], None)
    return layers.masked_mean(hidden, batch.get('attention_mask'))

  return jax.jit(fn)


def extract(fn, params, batches: Iterable[Mapping[str, np.ndarray]]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
  """(features [N, D], labels [N]) over padded eval batches; rows with mask False are dropped."""
  xs, ys = [], []
  pending = None  # dispatch the next batch before reading the previous one back
  for batch in batches:
    out = fn(params, model_inputs(batch))
    if pending is not None:
      xs.append(_keep(*pending))
      ys.append(_keep_labels(pending[1]))
    pending = (out, batch)
  if pending is not None:
    xs.append(_keep(*pending))
    ys.append(_keep_labels(pending[1]))
  if not xs:
    raise FeatureError('no batches to extract features from (empty split?)')
  return np.concatenate(xs), np.concatenate(ys)


def _keep(out, batch) -> np.ndarray:
  x = np.asarray(out, np.float32)
  return x[np.asarray(batch['mask'], bool)] if 'mask' in batch else x


def _keep_labels(batch) -> np.ndarray:
  n = len(next(iter(model_inputs(batch).values())))
  y = np.asarray(batch['label'], np.int32) if 'label' in batch else np.full(n, -1, np.int32)
  return y[np.asarray(batch['mask'], bool)] if 'mask' in batch else y


# -------------------------------------------------------------------------------------------
# The cache key and the cache.
# -------------------------------------------------------------------------------------------

def params_fingerprint(params: Any) -> str:
  """sha1 over every leaf's name, dtype, shape and bytes: equal iff the weights are equal."""
  h = hashlib.sha1()
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params),
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    a = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}|'.encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def cache_key(**parts: Any) -> str:
  """A short stable hash of the parts (JSON with sorted keys)."""
  text = json.dumps(parts, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:20]


def _slug(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]+', '-', str(text)).strip('-')[-40:] or 'x'


_MEMORY: dict[str, Features] = {}


def cached(key: str, compute, *, cache_dir: str | os.PathLike | None = None,
           label: str = 'features') -> Features:
  """Features for `key` from memory, else from `cache_dir/<label>_<key>.npz`, else `compute()`
  (-> (x, y)), written to both. cache_dir None: memory only."""
  if key in _MEMORY:
    return _MEMORY[key]
  path = pathlib.Path(cache_dir) / f'{_slug(label)}_{key}.npz' if cache_dir else None
  if path is not None and path.exists():
    try:
      with np.load(path) as f:
        if str(f['key']) != key:
          raise FeatureError(f'{path} holds key {f["key"]}, not {key}')
        feats = Features(f['x'], f['y'], key, 0.0, True)
    except (OSError, KeyError, ValueError) as e:
      raise FeatureError(f'feature cache {path} is unreadable ({e}); delete it and rerun') from e
  else:
    start = time.perf_counter()
    x, y = compute()
    feats = Features(np.asarray(x, np.float32), np.asarray(y, np.int32), key,
                     time.perf_counter() - start, False)
    if path is not None:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name(path.name + '.tmp.npz')  # atomic: a killed run leaves no half file
      np.savez(tmp, x=feats.x, y=feats.y, key=np.asarray(key))
      os.replace(tmp, path)
  _MEMORY[key] = feats
  return feats


def clear_memory_cache() -> None:
  _MEMORY.clear()


# -------------------------------------------------------------------------------------------
# From a config: model, pipeline, cache.
# -------------------------------------------------------------------------------------------

def eval_data_config(config, split: str):
  """config.data with the target's eval splits = (split,) and no source domain."""
  data_cfg = config.data.copy_and_resolve_references()
  with data_cfg.unlocked():
    data_cfg.target.eval_splits = (split,)
    data_cfg.source.name = ''
  return data_cfg


def split_features(config, split: str, *, cache_dir: str | os.PathLike | None = None,
                   layer: int | None = None, pieces=None, module=None, params=None,
                   tokenizer=None, limit: int = 0) -> Features:
  """Features of every example of `config.data.target` / `split` (first `limit` if > 0).

  The backbone comes from `config.model` (built once by tl_jax.pieces unless module/params
  [+ tokenizer] or `pieces` are given).
  """
  from tl_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  if module is None:
    pieces = pieces or pieces_lib.build(config)
    module, params, tokenizer = pieces.module, pieces.params, pieces.tokenizer
  data_cfg = eval_data_config(config, split)
  info = data_lib.dataset_info(data_cfg.target, data_cfg)
  if split not in info.splits:
    raise FeatureError(f'{info.name!r} has no split {split!r}; its splits: '
                       f'{", ".join(info.splits)}')
  image_size = getattr(module.config, 'image_size', None) if module.kind == 'image' else None
  key = cache_key(
      model=str(config.model.name), init=str(config.model.init),
      architecture=module.architecture(), weights=params_fingerprint(params),
      dataset=info.name, split=split, num_examples=info.splits[split],
      data_dir=os.path.abspath(data_cfg.data_dir) if data_cfg.data_dir else '',
      text_fields=list(data_cfg.target.get('text_fields', ()) or data_cfg.text_fields),
      pooling=module.config.pooling, layer=layer,
      max_length=data_cfg.max_length if module.kind == 'text' else None,
      image=[image_size, data_cfg.image_size, data_cfg.image_channels,
             list(data_cfg.image_mean), list(data_cfg.image_std)] if module.kind == 'image'
      else None,
      limit=limit)

  def compute():
    evals = data_lib.build_eval_batches(data_cfg, tokenizer=tokenizer, image_size=image_size,
                                        process_index=0, process_count=1, num_devices=1)
    batches = evals[f'target/{split}']
    if limit:
      batches = _first_examples(batches, limit, data_cfg.eval_batch_size)
    return extract(feature_fn(module, layer), params, batches)

  label = f'{config.model.name}-{config.model.init}_{info.name}_{split}'
  return cached(key, compute, cache_dir=cache_dir, label=label)


def _first_examples(batches, limit: int, batch_size: int):
  """The batches covering the first `limit` examples, padding past it masked out. The rest is
  read and dropped: leaving grain's prefetch threads running on would share the (not
  thread-safe) tokenizer with the next pipeline."""
  for i, batch in enumerate(batches):
    start = i * batch_size
    if start >= limit:
      continue
    if start + batch_size > limit:
      batch = dict(batch)
      keep = np.arange(batch_size) < limit - start
      batch['mask'] = np.asarray(batch.get('mask', keep), bool) & keep
    yield batch
