"""Frozen-prefix caching: run a frozen bottom of the network once per example, train the top.

When the embeddings and layers 0..k-1 are frozen and run deterministically (no dropout there, no
augmentation), their output (the boundary hidden state after layer k-1) is a fixed function of
the example. `PrefixCache.build` computes it once for every training example; `PrefixTop` is the
model from layer k on, fed that state, and plugs into TrainCore / make_train_step unchanged (the
batch carries `prefix_hidden` instead of `input_ids`). Feeding the cache in the order the
pipeline would feed the examples gives the same steps as the uncached run whose prefix runs with
dropout off: same params, same optimizer, same dropout masks in the top (flax draws them per
layer path, not per position in the call).

What is NOT the same: a normal `train=True` run also drops out inside the frozen prefix; the
cache is exact only for a prefix without dropout (what `uncached_prefix_top` computes), which is
a (mild) change of the recipe, not a free speed-up. bf16 caching (`dtype='bfloat16'`) halves
memory and is exact only when the model computes in bf16.

  cache = PrefixCache.build(module, params, examples, start_layer=4)
  core = TrainCore(config, PrefixTop(module, 4), params)       # freeze_preset 'bottom:4'
  for idx in order_batches: state, m = core.train_step(state, {'target': cache.batch(idx)})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tl_jax import errors

PASSTHROUGH = ('attention_mask', 'label', 'label_probs', 'mask')  # kept next to the cache


class PrefixCacheError(errors.TlJaxError, ValueError):
  """A frozen-prefix cache that cannot be built or used as asked."""


def frozen_prefix_layers(trainable: Iterable[str], num_layers: int) -> int:
  """k such that the embeddings and encoder layers 0..k-1 have no trainable parameter (0 when
  the embeddings train)."""
  names = list(trainable)
  if any(n.startswith('embeddings/') for n in names):
    return 0
  trained = [int(m.group(1)) for n in names
             if (m := re.match(r'encoder/layer/(\d+)/', n))]
  return min(trained + [num_layers])


class PrefixTop:
  """The BERT module from layer `start_layer` on, fed `prefix_hidden`: what step.forward calls.

  Same params tree as the full model (the prefix's leaves are simply unused), so a TrainCore over
  it trains, checkpoints and exports like the full model.
  """

  def __init__(self, module: Any, start_layer: int):
    if not 0 < start_layer <= module.config.num_layers:
      raise PrefixCacheError(f'start_layer={start_layer} must be in [1, '
                             f'{module.config.num_layers}]')
    self.module = module
    self.start_layer = start_layer

  def __getattr__(self, name: str) -> Any:  # config, kind, num_layers, architecture, ...
    return getattr(self.module, name)

  def clone(self, **kwargs) -> 'PrefixTop':
    return PrefixTop(self.module.clone(**kwargs), self.start_layer)

  def apply(self, variables: Any, input_ids: Any = None, attention_mask: Any = None,
            token_type_ids: Any = None, prefix_hidden: Any = None, *, train: bool = False,
            rngs: Any = None) -> Any:
    del input_ids, token_type_ids  # consumed by the prefix
    if prefix_hidden is None:
      raise PrefixCacheError('PrefixTop needs batches with prefix_hidden (PrefixCache.batch)')
    return self.module.apply(variables, attention_mask=attention_mask,
                             prefix_hidden=prefix_hidden, start_layer=self.start_layer,
                             train=train, rngs=rngs or {})


class UncachedPrefixTop(PrefixTop):
  """The reference the cache must equal: prefix recomputed every step with dropout off, top as
  usual. Takes the normal text batch."""

  def apply(self, variables, input_ids=None, attention_mask=None, token_type_ids=None,
            prefix_hidden=None, *, train=False, rngs=None):
    del prefix_hidden
    boundary = jax.lax.stop_gradient(self.module.apply(
        variables, input_ids=input_ids, attention_mask=attention_mask,
        token_type_ids=token_type_ids, stop_layer=self.start_layer,
        train=False).last_hidden_state)
    return super().apply(variables, attention_mask=attention_mask, prefix_hidden=boundary,
                         train=train, rngs=rngs)


def boundary_fn(module: Any, start_layer: int):
  """jit(params, input_ids, attention_mask, token_type_ids) -> hidden state after layer k-1."""

  @jax.jit
  def fn(params, input_ids, attention_mask, token_type_ids):
    return module.apply({'params': params}, input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, stop_layer=start_layer,
                        train=False).last_hidden_state
  return fn


class PrefixCache:
  """Boundary activations of every training example (host memory), indexed like the split."""

  def __init__(self, hidden: np.ndarray, extras: Mapping[str, np.ndarray], start_layer: int):
    self.hidden = hidden
    self.extras = dict(extras)
    self.start_layer = start_layer

  def __len__(self) -> int:
    return len(self.hidden)

  @property
  def nbytes(self) -> int:
    return self.hidden.nbytes + sum(v.nbytes for v in self.extras.values())

  @classmethod
  def build(cls, module: Any, params: Any, examples: Mapping[str, np.ndarray], *,
            start_layer: int, batch_size: int = 64, dtype: str = 'float32') -> 'PrefixCache':
    """examples: the split as arrays [N, ...] (input_ids, attention_mask[, token_type_ids],
    label, ...), in the split's own order. Runs the prefix once per example (train=False)."""
    if 'input_ids' not in examples:
      raise PrefixCacheError(f'examples need input_ids; got keys {sorted(examples)}')
    if dtype not in ('float32', 'bfloat16'):
      raise PrefixCacheError(f"cache dtype {dtype!r}: use 'float32' or 'bfloat16'")
    ids = np.asarray(examples['input_ids'])
    n, length = ids.shape
    mask = np.asarray(examples.get('attention_mask', np.ones_like(ids)))
    types = np.asarray(examples.get('token_type_ids', np.zeros_like(ids)))
    fn = boundary_fn(module, start_layer)
    hidden = np.empty((n, length, module.config.hidden_size), jnp.dtype(dtype))
    for lo in range(0, n, batch_size):
      hi = min(lo + batch_size, n)
      pad = batch_size - (hi - lo)  # one static shape: compile once
      take = np.concatenate([np.arange(lo, hi), np.full(pad, hi - 1)])
      out = fn(params, ids[take], mask[take], types[take])
      hidden[lo:hi] = np.asarray(out.astype(dtype))[:hi - lo]
    extras = {k: np.asarray(examples[k]) for k in PASSTHROUGH if k in examples}
    extras['attention_mask'] = mask
    return cls(hidden, extras, start_layer)

  def batch(self, indices: Any) -> dict[str, np.ndarray]:
    """The cached batch of these example indices: {'prefix_hidden', 'attention_mask', 'label',
    ...}, ready for TrainCore.train_step({'target': ...})."""
    indices = np.asarray(indices)
    return {'prefix_hidden': self.hidden[indices],
            **{k: v[indices] for k, v in self.extras.items()}}
