"""Frozen-prefix caching on a tiny BERT: the split forward equals the full one, and training the
top on cached boundary activations gives the same params as the uncached run."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.config import base_config
from tl_jax.models import BertConfig, BertModel
from tl_jax.train import parallel, prefix_cache
from tl_jax.train.step import TrainCore
from tl_jax.train import freezing

SEQ, N, BATCH, K = 8, 24, 8, 2


def tiny_model(dropout=0.1):
  module = BertModel(BertConfig(
      vocab_size=50, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64,
      max_position_embeddings=16, num_classes=3, dropout_rate=dropout,
      attention_dropout_rate=dropout, pooling='pooler'))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, SEQ), jnp.int32))['params']
  return module, params


def examples():
  rs = np.random.RandomState(0)
  lengths = rs.randint(3, SEQ + 1, (N, 1))
  return {'input_ids': rs.randint(1, 50, (N, SEQ)).astype(np.int32),
          'attention_mask': (np.arange(SEQ)[None] < lengths).astype(np.int32),
          'label': rs.randint(0, 3, (N,)).astype(np.int32)}


def test_split_forward_equals_full_forward():
  module, params = tiny_model()
  data = examples()
  inputs = {k: data[k] for k in ('input_ids', 'attention_mask')}
  rngs = {'dropout': jax.random.key(3)}
  full = module.apply({'params': params}, **inputs, train=True, rngs=rngs)
  boundary = module.apply({'params': params}, **inputs, train=True, rngs=rngs, stop_layer=K)
  assert boundary.logits is None and boundary.last_hidden_state.shape == (N, SEQ, 32)
  top = module.apply({'params': params}, attention_mask=inputs['attention_mask'],
                     prefix_hidden=boundary.last_hidden_state, start_layer=K, train=True,
                     rngs=rngs)
  # Same dropout masks in the top (drawn per layer path): bitwise equal, dropout on.
  np.testing.assert_array_equal(np.asarray(full.logits), np.asarray(top.logits))
  with pytest.raises(ValueError, match='prefix_hidden'):
    module.apply({'params': params}, **inputs, start_layer=K)


def test_frozen_prefix_layers():
  module, params = tiny_model()
  trainable = freezing.schedule_from_config(_config('bottom:2').transfer, params).trainable(0)
  assert prefix_cache.frozen_prefix_layers(trainable, 3) == 2
  all_names = freezing.param_names(params)
  assert prefix_cache.frozen_prefix_layers(all_names, 3) == 0


def _config(preset):
  c = base_config()
  c.train.num_steps = 10
  c.optimizer.learning_rate = 1e-2
  c.transfer.freeze_preset = preset
  return c


def _train(module, params, batches):
  core = TrainCore(_config(f'bottom:{K}'), module, params,
                   launcher=parallel.make_launcher('pmap', jax.devices()[:1]))
  state = core.init_state(params, rng=0)
  losses = []
  for batch in batches:
    state, m = core.train_step(state, {'target': batch})
    losses.append(core.host_metrics(m)['loss'])
  return freezing.flatten(jax.device_get(core.to_host(state).params)), losses


@pytest.mark.parametrize('dropout', [0.0, 0.1])
def test_cached_training_equals_uncached(dropout):
  """3 steps over shuffled examples: cached top == prefix recomputed (dropout off there, on in
  the top); with dropout 0 also == the plain TrainCore run of the whole model."""
  module, params = tiny_model(dropout)
  data = examples()
  order = np.random.RandomState(1).permutation(N).reshape(-1, BATCH)
  cache = prefix_cache.PrefixCache.build(module, params, data, start_layer=K, batch_size=16)
  assert len(cache) == N and cache.hidden.shape == (N, SEQ, 32)
  cached, cached_losses = _train(prefix_cache.PrefixTop(module, K), params,
                                 [cache.batch(idx) for idx in order])
  plain_batches = [{k: v[idx] for k, v in data.items()} for idx in order]
  uncached, uncached_losses = _train(prefix_cache.PrefixTop(module, K), params,
                                     plain_batches)
  np.testing.assert_allclose(cached_losses, uncached_losses, rtol=1e-5, atol=1e-6)
  moved = 0
  # atol 1e-5: Adam turns rounding noise into lr-sized steps where the true gradient is 0
  # (attention key biases: softmax is shift-invariant), ~1e-6 here.
  for name in cached:
    np.testing.assert_allclose(cached[name], uncached[name], rtol=1e-5, atol=1e-5, err_msg=name)
    moved += not np.array_equal(cached[name], freezing.flatten(params)[name])
  assert moved > 0  # the top did train
  if dropout == 0.0:
    plain, plain_losses = _train(module, params, plain_batches)
    np.testing.assert_allclose(cached_losses, plain_losses, rtol=1e-5, atol=1e-6)
    for name in cached:
      np.testing.assert_allclose(cached[name], plain[name], rtol=1e-5, atol=1e-5,
                                 err_msg=name)


# -- the training switch, transfer.cache_frozen_prefix ------------------------------------------

from cli_helpers import tiny_assets  # noqa: E402,F401 (session fixture)


def _switch_config(assets, *, cache: bool, preset: str = 'bottom:1', dropout: float = 0.0):
  from tl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from cli_helpers import TINY_CONFIG  # pylint: disable=g-import-not-at-top
  c = config_lib.from_file(str(TINY_CONFIG))
  c.model.name = str(assets.bert_dir)
  c.model.dropout_rate = c.model.attention_dropout_rate = dropout
  c.data.target.name = assets.text_dataset
  c.data.data_dir = str(assets.data_dir)
  c.data.text_fields = ('text',)
  c.data.target.eval_splits = ('validation',)
  c.train.num_steps = 4
  c.train.eval_every = 4
  c.train.checkpoint_every = 0
  c.train.export_hf = False
  c.transfer.freeze_preset = preset
  c.transfer.cache_frozen_prefix = cache
  return c


def _final_params(workdir):
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  _, _, core, restored = loop.restore_run(str(workdir))
  return freezing.flatten(jax.device_get(core.to_host(restored.state).params))


def test_switch_trains_the_same_run_as_without_the_cache(tiny_assets, tmp_path, monkeypatch):
  """Through the loop: with dropout off, the cached run's losses, eval and final params equal
  the plain run's (bottom:1 on a 2-layer BERT: layer 1, pooler and head train)."""
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  fed = []  # the batches the cached run trained on
  attach = prefix_cache.attach
  monkeypatch.setattr(prefix_cache, 'attach', lambda b, c: fed.append(attach(b, c)) or fed[-1])
  cached = loop.train(_switch_config(tiny_assets, cache=True), str(tmp_path / 'cached'))
  # 4 steps + the batch prefetched to the devices ahead of the last one (data.device_prefetch).
  assert len(fed) == 5 and all('prefix_hidden' in b['target'] and 'input_ids' not in b['target']
                               for b in fed)
  monkeypatch.undo()
  plain = loop.train(_switch_config(tiny_assets, cache=False), str(tmp_path / 'plain'))
  assert cached.keys() == plain.keys()
  for key in cached:
    np.testing.assert_allclose(cached[key], plain[key], rtol=1e-5, atol=1e-6, err_msg=key)
  log = (tmp_path / 'cached' / 'metrics.jsonl').read_text()
  losses = [r['loss'] for r in map(json.loads, log.splitlines()) if 'loss' in r]
  plain_log = (tmp_path / 'plain' / 'metrics.jsonl').read_text()
  plain_losses = [r['loss'] for r in map(json.loads, plain_log.splitlines()) if 'loss' in r]
  np.testing.assert_allclose(losses, plain_losses, rtol=1e-5, atol=1e-6)
  a, b = _final_params(tmp_path / 'cached'), _final_params(tmp_path / 'plain')
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5, err_msg=name)


class _Schedule:
  def __init__(self, trainable, stages=1):
    self._trainable, self.num_stages = frozenset(trainable), stages

  def trainable(self, stage):
    del stage
    return self._trainable


@pytest.mark.parametrize('case, match', [
    ('image', 'needs a text'),
    ('stages', 'one freezing stage'),
    ('hidden', 'hidden_states'),
    ('embeddings', 'the embeddings train'),
])
def test_switch_refuses_runs_it_cannot_cache(case, match):
  module, params = tiny_model()
  trainable = ['encoder/layer/2/output/dense/kernel', 'classifier/kernel']
  needs = ['hidden_states'] if case == 'hidden' else []
  if case == 'embeddings':
    trainable.append('embeddings/word_embeddings/embedding')
  if case == 'image':
    module = types.SimpleNamespace(kind='image', config=module.config)
  config = base_config()
  with pytest.raises(prefix_cache.PrefixCacheError, match=match) as err:
    prefix_cache.for_run(config, module, params,
                         _Schedule(trainable, stages=2 if case == 'stages' else 1), needs,
                         tokenizer=None)
  assert 'cache_frozen_prefix=False' in str(err.value) or case == 'embeddings'
