"""Cached frozen-backbone features (every example once, equal to a direct forward, cache keys that
change with what changes the numbers) and the linear probe (vs scikit-learn's optimum); on real
MiniLM/BBC News features: the pretrained backbone probes well and LogME ranks it above random."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fixtures_data import minilm_tokenizer, prepared_data_dir  # noqa: F401 (fixtures)
from tl_jax.config import base_config
from tl_jax.data import sources
from tl_jax.models import BertConfig, BertModel
from tl_jax.analysis import features, linear_probe, selection

MAX_LEN = 16


@pytest.fixture(scope='module')
def tiny(minilm_tokenizer):  # noqa: F811
  cfg = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=16, num_layers=2,
                   num_heads=2, intermediate_size=32, max_position_embeddings=64,
                   dropout_rate=0.1, attention_dropout_rate=0.1, pooling='mean')
  module = BertModel(cfg)
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  return module, params, minilm_tokenizer


def _config(data_dir, max_length=MAX_LEN):
  c = base_config()
  c.model.name = 'tiny-test-bert'
  c.data.data_dir = data_dir
  c.data.max_length = max_length
  c.data.eval_batch_size = 32
  c.data.read_threads = 1
  return c


def _extract(tiny, config, split='test', **kw):
  module, params, tok = tiny
  kw.setdefault('params', params)
  return features.split_features(config, split, module=module, tokenizer=tok, **kw)


def test_every_example_once_in_order_equal_to_a_direct_forward(
    tiny, prepared_data_dir):  # noqa: F811
  module, params, tok = tiny
  features.clear_memory_cache()
  feats = _extract(tiny, _config(prepared_data_dir))
  source = sources.data_source('bbc_news', 'test', prepared_data_dir)
  assert feats.x.shape == (len(source), 16)  # 214 examples: 7 batches of 32, padding dropped
  records = [source[i] for i in range(len(source))]
  np.testing.assert_array_equal(feats.y, [int(r['label']) for r in records])
  picks = [0, 100, len(source) - 1]  # first, middle, last (in the padded batch)
  text = lambda r, k: r[k].decode() if isinstance(r[k], bytes) else r[k]
  enc = tok([text(records[i], 'title') for i in picks], [text(records[i], 'body') for i in picks],
            max_length=MAX_LEN, truncation=True, padding='max_length', return_tensors='np')
  out = module.apply({'params': params}, input_ids=enc['input_ids'],
                     attention_mask=enc['attention_mask'],
                     token_type_ids=enc['token_type_ids'], train=False)
  np.testing.assert_allclose(feats.x[picks], out.pooled, rtol=1e-5, atol=1e-5)
  # A hidden layer, pooled the model's way: the last one is the pooled output (mean pooling).
  last = _extract(tiny, _config(prepared_data_dir), layer=-1, limit=40)
  np.testing.assert_allclose(last.x, feats.x[:40], rtol=1e-5, atol=1e-6)
  emb = _extract(tiny, _config(prepared_data_dir), layer=0, limit=40)
  assert not np.allclose(emb.x, feats.x[:40])
  with pytest.raises(features.FeatureError, match='layer=3'):
    _extract(tiny, _config(prepared_data_dir), layer=3)
  with pytest.raises(features.FeatureError, match='no split'):
    _extract(tiny, _config(prepared_data_dir), split='dev')


def test_disk_cache_is_reused_and_never_stale(tiny, prepared_data_dir, tmp_path):  # noqa: F811
  features.clear_memory_cache()
  config = _config(prepared_data_dir)
  first = _extract(tiny, config, cache_dir=tmp_path, limit=40)
  assert not first.from_cache and len(first) == 40 and len(list(tmp_path.glob('*.npz'))) == 1
  features.clear_memory_cache()
  again = _extract(tiny, config, cache_dir=tmp_path, limit=40)
  assert again.from_cache and again.key == first.key
  np.testing.assert_array_equal(again.x, first.x)
  # Each of these changes the numbers, so each gets its own key (a fresh computation).
  _, params, _ = tiny
  moved = jax.tree.map(lambda a: a, params)
  bias = moved['encoder']['layer']['0']['output']['dense']['bias']
  # Not a uniform shift: the LayerNorm right after this bias would cancel that exactly.
  moved['encoder']['layer']['0']['output']['dense']['bias'] = bias + 1e-2 * jnp.arange(bias.size)
  variants = [dict(config=_config(prepared_data_dir, max_length=12)),
              dict(layer=1), dict(params=moved), dict(split='validation'), dict(limit=30)]
  keys = {first.key}
  for v in variants:
    kw = {'config': config, 'limit': 40, **v}
    feats = _extract(tiny, kw.pop('config'), cache_dir=tmp_path, **kw)
    assert not feats.from_cache and feats.key not in keys, v
    keys.add(feats.key)
  assert not np.allclose(_extract(tiny, config, params=moved, limit=40).x, first.x)
  assert len(list(tmp_path.glob('*.npz'))) == 1 + len(variants)
  # A damaged file is one clear error naming the fix.
  path = next(tmp_path.glob(f'*{first.key}.npz'))
  path.write_bytes(b'not an npz')
  features.clear_memory_cache()
  with pytest.raises(features.FeatureError, match='delete it'):
    _extract(tiny, config, cache_dir=tmp_path, limit=40)


def test_probe_reaches_the_regularised_optimum():
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  rs = np.random.RandomState(0)
  y = rs.randint(0, 3, 300)
  x = (np.eye(3)[y] @ rs.randn(3, 6) + rs.randn(300, 6)).astype(np.float32)
  l2 = 1e-2
  probe = linear_probe.train_probe(x, y, 3, l2=l2, learning_rate=0.05, num_steps=800)
  # mean CE + l2/2 |W|² == (1/N)(Σ CE + 1/(2C) |W|²) with C = 1/(l2 N), on standardised x.
  xs = (x - x.mean(0)) / (x.std(0) + 1e-6)
  ref = LogisticRegression(C=1 / (l2 * len(x)), max_iter=5000, tol=1e-10).fit(xs, y)
  np.testing.assert_allclose(linear_probe.predict_proba(probe, x), ref.predict_proba(xs),
                             atol=5e-3)
  minibatch = linear_probe.train_probe(x, y, 3, l2=l2, num_steps=100, batch_size=32)
  assert linear_probe.accuracy(minibatch, x, y) > ref.score(xs, y) - 0.03


def test_backbone_epoch_step_equals_cached_step():
  """The bench's two epochs do the same math: one step with the backbone inside equals one
  step on the cached features of the same rows."""
  module = BertModel(BertConfig(vocab_size=1000, hidden_size=16, num_layers=1, num_heads=2,
                                intermediate_size=32, max_position_embeddings=16, pooling='mean'))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  rs = np.random.RandomState(0)
  inputs = {'input_ids': rs.randint(1, 1000, (8, 12)).astype(np.int32),
            'attention_mask': np.ones((8, 12), np.int32)}
  labels = jnp.asarray(rs.randint(0, 5, 8), jnp.int32)
  fn = features.feature_fn(module)
  cached_x = fn(params, inputs)
  mean, std = linear_probe.standardizer(cached_x)
  tx = optax.sgd(0.1)
  wb = (jnp.zeros((16, 5)), jnp.zeros(5))
  step = linear_probe.backbone_epoch_fn(fn, tx, 1e-3, mean, std)
  wb_backbone, _, _ = linear_probe.backbone_epoch(step, params, wb, tx.init(wb),
                                                  [(inputs, labels)])
  epoch = linear_probe.make_epoch_fn(tx, 1e-3, 0, 8)
  wb_cached, _, _ = epoch(wb, tx.init(wb), (cached_x - mean) / std, labels, jax.random.key(0))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               wb_backbone, wb_cached)


# ------------------------------------------------------------------------------------------
# Real MiniLM on BBC News (a small subset).
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def minilm_features(prepared_data_dir):  # noqa: F811
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  out = {}
  for init in ('pretrained', 'random'):
    c = base_config()
    c.model.init = init
    c.data.data_dir = prepared_data_dir
    c.data.max_length = 64
    c.data.eval_batch_size = 32
    out[init] = features.split_features(c, 'test', pieces=pieces_lib.build(c))  # 214 examples
  return out


def test_pretrained_minilm_probes_well_and_logme_ranks_it_above_random(minilm_features):
  acc, logme = {}, {}
  for init, f in minilm_features.items():
    probe = linear_probe.train_probe(f.x[:140], f.y[:140], 5, l2=1e-2, num_steps=200)
    acc[init] = linear_probe.accuracy(probe, f.x[140:], f.y[140:])
    logme[init] = selection.logme(f.x, f.y)
  assert acc['pretrained'] > 0.85 and acc['pretrained'] > acc['random'] + 0.1, acc
  assert logme['pretrained'] > logme['random'], logme
