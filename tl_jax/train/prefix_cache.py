"""Frozen-prefix caching: run a frozen bottom of the network once per example, train the top.

When the embeddings and layers 0..k-1 are frozen for the whole run, their output (the boundary
hidden state after layer k-1) is a fixed function of the example once the prefix runs without
dropout. `transfer.cache_frozen_prefix=True` makes the loop compute it once for every training
example (`PrefixCache.from_batches` over `data.training_examples`), join it to each batch by the
rows' `index` (`attach`), and train `PrefixTop`, the model from layer k on. That equals the
uncached run whose prefix runs in eval mode (PrefixTop on plain batches; tests/
test_prefix_cache.py): same params, same optimizer, same dropout masks in the top (flax draws
them per layer path, not per position in the call).

What is NOT the same as a plain run: a `train=True` run also drops out inside the frozen prefix;
with the switch the prefix runs without dropout, a (mild) change of the recipe, logged at the
start. bf16 caching (`dtype='bfloat16'`) halves memory and is exact only when the model computes
in bf16.

  cache = PrefixCache.build(module, params, examples, start_layer=4)
  core = TrainCore(config, PrefixTop(module, 4), params)       # freeze_preset 'bottom:4'
  for idx in order_batches: state, m = core.train_step(state, {'target': cache.batch(idx)})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import re
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from tl_jax import data as data_lib
from tl_jax import errors
from tl_jax.train import memory

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
  """The BERT module from layer `start_layer` on: what step.forward calls.

  A batch with `prefix_hidden` (PrefixCache rows) starts from that state; a plain text batch
  (eval, or the uncached reference) computes the boundary first with the prefix in eval mode
  (no dropout, no gradient). Same params tree as the full model (the prefix's leaves are simply
  unused), so a TrainCore over it trains, checkpoints and exports like the full model.
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
    if prefix_hidden is None:
      prefix_hidden = jax.lax.stop_gradient(self.module.apply(
          variables, input_ids=input_ids, attention_mask=attention_mask,
          token_type_ids=token_type_ids, stop_layer=self.start_layer,
          train=False).last_hidden_state)
    return self.module.apply(variables, attention_mask=attention_mask,
                             prefix_hidden=prefix_hidden, start_layer=self.start_layer,
                             train=train, rngs=rngs or {})


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
    n = len(examples['input_ids'])
    batches = ({k: np.asarray(v)[lo:lo + batch_size] for k, v in examples.items()}
               for lo in range(0, n, batch_size))
    cache = cls.from_batches(module, params, batches, start_layer=start_layer,
                             batch_size=batch_size, dtype=dtype)
    cache.extras.update({k: np.asarray(examples[k]) for k in PASSTHROUGH if k in examples})
    return cache

  @classmethod
  def from_batches(cls, module: Any, params: Any, batches: Iterable[Mapping[str, np.ndarray]],
                   *, start_layer: int, batch_size: int, dtype: str = 'float32'
                   ) -> 'PrefixCache':
    """The cache of the examples in `batches`, in order (rows with mask False are padding and
    are left out). Every batch is padded to batch_size: one static shape, one compile."""
    if dtype not in ('float32', 'bfloat16'):
      raise PrefixCacheError(f"cache dtype {dtype!r}: use 'float32' or 'bfloat16'")
    fn = boundary_fn(module, start_layer)
    hidden, masks = [], []
    for batch in batches:
      if 'input_ids' not in batch:
        raise PrefixCacheError(f'batches need input_ids; got keys {sorted(batch)}')
      ids = np.asarray(batch['input_ids'])
      real = np.asarray(batch.get('mask', np.ones(len(ids), bool)), bool)
      mask = np.asarray(batch.get('attention_mask', np.ones_like(ids)))
      types = np.asarray(batch.get('token_type_ids', np.zeros_like(ids)))
      take = np.concatenate([np.arange(len(ids)), np.full(batch_size - len(ids), len(ids) - 1)])
      out = np.asarray(fn(params, ids[take], mask[take], types[take]).astype(dtype))
      hidden.append(out[:len(ids)][real])
      masks.append(mask[real])
    if not hidden:
      raise PrefixCacheError('no examples to cache')
    return cls(np.concatenate(hidden), {'attention_mask': np.concatenate(masks)}, start_layer)

  def batch(self, indices: Any) -> dict[str, np.ndarray]:
    """The cached batch of these example indices: {'prefix_hidden', 'attention_mask', 'label',
    ...}, ready for TrainCore.train_step({'target': ...})."""
    indices = np.asarray(indices)
    return {'prefix_hidden': self.hidden[indices],
            **{k: v[indices] for k, v in self.extras.items()}}


def attach(batch: Mapping[str, Any], caches: Mapping[str, PrefixCache]) -> dict[str, Any]:
  """A pipeline batch {role: rows with `index`} -> the same rows with their cached boundary
  state as `prefix_hidden` in place of the token inputs (which the cached prefix consumed)."""
  out = {}
  for role, rows in batch.items():
    rows = dict(rows)
    index = rows.pop('index', None)
    if role in caches:
      if index is None:
        raise PrefixCacheError(f'{role} batch has no index: build the pipeline with_index=True')
      cache = caches[role]
      rows['prefix_hidden'] = cache.hidden[index]
      rows['attention_mask'] = cache.extras['attention_mask'][index]
      rows.pop('input_ids', None)
      rows.pop('token_type_ids', None)
    out[role] = rows
  return out


def for_run(config: Any, module: Any, params: Any, schedule: Any, objective_needs: Iterable[str],
            *, tokenizer: Any) -> tuple['PrefixTop', dict[str, PrefixCache]]:
  """`transfer.cache_frozen_prefix`: the top module and each training domain's cache, or one
  error naming why this run cannot cache (and the setting to change)."""
  fix = 'set --config.transfer.cache_frozen_prefix=False'
  if module.kind != 'text':
    raise PrefixCacheError(f'transfer.cache_frozen_prefix needs a text (BERT) model: {fix}')
  if schedule.num_stages != 1:
    raise PrefixCacheError('transfer.cache_frozen_prefix needs one freezing stage (the frozen '
                           f'prefix must stay frozen for the whole run): {fix}')
  blocked = set(objective_needs) & {'hidden_states', 'attentions'}
  if blocked:
    raise PrefixCacheError(f'objectives {tuple(config.transfer.objectives)} read every layer\'s '
                           f'{"/".join(sorted(blocked))}, which a cached prefix does not keep: '
                           f'{fix}')
  start = frozen_prefix_layers(schedule.trainable(0), module.config.num_layers)
  if start == 0:
    raise PrefixCacheError('transfer.cache_frozen_prefix: the embeddings train, so there is no '
                           "frozen prefix; freeze them (e.g. freeze_preset='bottom:K' or "
                           f"'head_only') or {fix}")
  roles = data_lib.active_roles(config.data)
  examples = {role: data_lib.training_examples(config.data, role, tokenizer=tokenizer,
                                               batch_size=config.data.eval_batch_size,
                                               seed=config.seed) for role in roles}
  need = sum(b.num_examples for b in examples.values()) * config.data.max_length * (
      module.config.hidden_size * 4 + 4)  # float32 states + the int32 attention masks
  free = memory.host_available_bytes()
  if free is not None and need > free // 2:  # half: the run needs host memory of its own
    raise PrefixCacheError(f'the frozen-prefix cache needs {memory.gib(need)} of host memory and '
                           f'{memory.gib(free)} is available: lower data.max_length or {fix}')
  caches = {}
  for role, batches in examples.items():
    caches[role] = PrefixCache.from_batches(module, params, batches, start_layer=start,
                                            batch_size=config.data.eval_batch_size)
    logging.info('Frozen-prefix cache: %d %s examples through the embeddings and layers 0-%d '
                 'once (no dropout there), %s; training runs layers %d+.',
                 len(caches[role]), role, start - 1, memory.gib(caches[role].nbytes), start)
  return PrefixTop(module, start), caches
