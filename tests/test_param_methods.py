"""Parameter-based transfer and regularisers: L1/L2 penalties, mixup soft-label CE, BSS, L2-SP
keeps weights near the pretrained ones, head-only; each config family trains through TrainCore
on a tiny BERT."""

import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tl_jax import config as config_lib
from tl_jax.config import base_config
from tl_jax.train import parallel
from tl_jax.train.step import TrainCore
from tl_jax.methods import bss, objectives, penalties
from tl_jax.train import freezing

from test_step import SEQ, tiny_model as step_tiny_model

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'


# ------------------------------------------------------------------------------------------
# Helpers shared with test_relation_methods.py and test_multitask.py.
# ------------------------------------------------------------------------------------------

def tiny_model(**kw):
  """test_step's tiny BERT, pooling the [CLS] token."""
  return step_tiny_model(**{'pooling': 'cls', **kw})


def synthetic_batch(n=32, seed=0, num_classes=3, position=0):
  """A learnable task: the label is the token at `position` modulo num_classes."""
  rs = np.random.RandomState(seed)
  ids = rs.randint(1, 50, (n, SEQ)).astype(np.int32)
  return {'input_ids': ids, 'attention_mask': np.ones((n, SEQ), np.int32),
          'label': (ids[:, position] % num_classes).astype(np.int32)}


def load_config(spec, steps=6, lr=1e-2):
  """A configs/ file (name[:arg]) shortened for a tiny model."""
  config = config_lib.from_file(CONFIGS / spec)
  config.train.num_steps = steps
  config.optimizer.learning_rate = lr
  config.optimizer.schedule = 'constant'
  config.optimizer.warmup_steps = 0
  config.parallel.mode = 'shard_map'
  return config


def train_tiny(config, model, batches):
  """Trains through TrainCore on one device; (initial flat params, final flat params, metrics)."""
  module, params = model
  core = TrainCore(config, module, params, pretrained_params=params,
                   launcher=parallel.make_launcher('shard_map', jax.devices()[:1]))
  state = core.init_state(params, rng=0)
  metrics = []
  for batch in batches:
    state, m = core.train_step(state, batch)
    metrics.append(core.host_metrics(m))
  final = freezing.flatten(jax.device_get(core.to_host(state).params))
  return freezing.flatten(jax.device_get(params)), final, metrics


def ctx_for(config, outputs, batches, trainable=None):
  return objectives.Context(outputs=outputs, batches=batches, params={},
                            trainable=trainable or {}, pretrained=None, step=jnp.int32(0),
                            lam=jnp.float32(1.0), config=config, axis_name=None)


# ------------------------------------------------------------------------------------------
# L1 / L2 penalties.
# ------------------------------------------------------------------------------------------

def test_l1_l2_values_and_gradients_match_the_closed_form():
  rs = np.random.RandomState(0)
  trainable = {'encoder/dense/kernel': rs.randn(4, 3).astype(np.float32),
               'encoder/dense/bias': rs.randn(3).astype(np.float32),
               'encoder/LayerNorm/scale': rs.randn(3).astype(np.float32),
               'head/kernel': rs.randn(3, 2).astype(np.float32)}
  config = base_config()
  config.transfer.penalties = penalties.default_config()
  config.transfer.penalties.l1, config.transfer.penalties.l2 = 0.3, 0.05
  kernels = ('encoder/dense/kernel', 'head/kernel')

  def value(fn, t):
    return fn(ctx_for(config, {}, {}, trainable=t))[0]

  v1, g1 = jax.value_and_grad(lambda t: value(penalties.l1, t))(trainable)
  v2, g2 = jax.value_and_grad(lambda t: value(penalties.l2, t))(trainable)
  np.testing.assert_allclose(v1, 0.3 * sum(np.abs(trainable[k]).sum() for k in kernels),
                             rtol=1e-6)
  np.testing.assert_allclose(v2, 0.5 * 0.05 * sum((trainable[k] ** 2).sum() for k in kernels),
                             rtol=1e-6)
  for k in kernels:
    np.testing.assert_allclose(g1[k], 0.3 * np.sign(trainable[k]), rtol=1e-6)
    np.testing.assert_allclose(g2[k], 0.05 * trainable[k], rtol=1e-6)
  for k in ('encoder/dense/bias', 'encoder/LayerNorm/scale'):  # excluded by default
    assert not np.any(g1[k]) and not np.any(g2[k])
  config.transfer.penalties.exclude = ''  # every leaf counts
  np.testing.assert_allclose(value(penalties.l2, trainable),
                             0.025 * sum((w ** 2).sum() for w in trainable.values()), rtol=1e-6)
  del config.transfer['penalties']
  with pytest.raises(objectives.ObjectiveError, match='penalties.default_config'):
    value(penalties.l1, trainable)


def test_mixup_soft_label_cross_entropy_is_the_convex_combination_of_hard_ones():
  rs = np.random.RandomState(1)
  logits = rs.randn(6, 4).astype(np.float32)
  a = rs.randint(0, 4, 6).astype(np.int32)
  b = a[::-1].copy()
  lam = 0.3
  probs = lam * np.eye(4, dtype=np.float32)[a] + (1 - lam) * np.eye(4, dtype=np.float32)[b]
  config = base_config()
  out = {'target': types.SimpleNamespace(logits=logits)}

  def ce(batch):
    return float(objectives.cross_entropy(ctx_for(config, out, {'target': batch}))[0])

  mixed = ce({'label': a, 'label_probs': probs})
  assert mixed == pytest.approx(lam * ce({'label': a}) + (1 - lam) * ce({'label': b}), rel=1e-6)
  assert mixed != pytest.approx(ce({'label': a}), rel=1e-3)  # the soft labels were used


# ------------------------------------------------------------------------------------------
# BSS.
# ------------------------------------------------------------------------------------------

def test_bss_value_and_gradient_match_numpy_svd():
  rs = np.random.RandomState(2)
  f = rs.randn(6, 4).astype(np.float32)
  u, s, vt = np.linalg.svd(f.astype(np.float64), full_matrices=False)
  for k in (1, 2):
    np.testing.assert_allclose(bss.smallest_singular_values_sq(jnp.asarray(f), k),
                               np.sum(s[-k:] ** 2), rtol=1e-5)
  grad = jax.grad(lambda x: bss.smallest_singular_values_sq(x, 1))(jnp.asarray(f))
  np.testing.assert_allclose(grad, 2 * s[-1] * np.outer(u[:, -1], vt[-1]), rtol=1e-4, atol=1e-5)
  with pytest.raises(objectives.ObjectiveError, match=r'transfer.bss.k=5 must be in \[1, 4\]'):
    bss.smallest_singular_values_sq(jnp.asarray(f), 5)


def test_bss_shrinks_the_smallest_singular_value_of_the_features():
  """Features X·W plus a linear head trained by CE, with and without BSS, same steps."""
  rs = np.random.RandomState(3)
  x = jnp.asarray(rs.randn(32, 8).astype(np.float32))
  labels = jnp.asarray(rs.randint(0, 3, 32))
  init = {'w': jnp.asarray(rs.randn(8, 6).astype(np.float32) * 0.5),
          'v': jnp.asarray(rs.randn(6, 3).astype(np.float32) * 0.5)}
  tx = optax.adam(1e-2)

  def sigma_min_after(eta):
    def loss(p):
      f = x @ p['w']
      ce = optax.softmax_cross_entropy_with_integer_labels(f @ p['v'], labels).mean()
      return ce + eta * bss.smallest_singular_values_sq(f, 1)

    def step(carry, _):
      p, s = carry
      updates, s = tx.update(jax.grad(loss)(p), s, p)
      return (optax.apply_updates(p, updates), s), None
    (p, _), _ = jax.lax.scan(step, (init, tx.init(init)), None, length=150)
    return float(np.linalg.svd(np.asarray(x @ p['w']), compute_uv=False)[-1])

  plain, shrunk = sigma_min_after(0.0), sigma_min_after(0.1)
  assert shrunk < 0.5 * plain, (shrunk, plain)


# ------------------------------------------------------------------------------------------
# Through TrainCore, from the configs: L2-SP vs plain fine-tuning, head only, BSS, penalties.
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def model():
  return tiny_model()


def backbone_distance(init, final):
  return float(np.sqrt(sum(np.sum((final[n] - init[n]) ** 2) for n in init
                           if not n.startswith('head/'))))


def test_l2sp_keeps_weights_closer_to_the_pretrained_ones_than_fine_tuning(model):
  batches = [{'target': synthetic_batch(seed=i)} for i in range(8)]
  plain = load_config('finetune_bbc.py', steps=8)
  plain.optimizer.weight_decay = 0.0
  l2sp = load_config('l2sp_bbc.py', steps=8)
  l2sp.transfer.l2sp_alpha = 1.0
  init, ft_final, ft_metrics = train_tiny(plain, model, batches)
  _, sp_final, sp_metrics = train_tiny(l2sp, model, batches)
  d_ft, d_sp = backbone_distance(init, ft_final), backbone_distance(init, sp_final)
  assert d_sp < 0.7 * d_ft, (d_sp, d_ft)
  # The logged ||w − w0||² is the distance the step saw (one step behind the final params).
  assert sp_metrics[-1]['l2sp/shared_sq_dist'] > 0
  assert sp_metrics[-1]['loss'] == pytest.approx(
      sp_metrics[-1]['loss/cross_entropy'] + sp_metrics[-1]['loss/l2sp'], rel=1e-5)
  assert all(m['is_finite'] == 1 for m in ft_metrics + sp_metrics)


def test_head_only_bss_and_regularized_configs_train_through_the_core(model):
  batches = [{'target': synthetic_batch(seed=i)} for i in range(3)]
  init, final, _ = train_tiny(load_config('head_only_bbc.py'), model, batches)
  for name, value in final.items():  # only the head moved
    assert np.array_equal(value, init[name]) != name.startswith('head/'), name

  _, _, metrics = train_tiny(load_config('bss_bbc.py'), model, batches)
  assert metrics[0]['bss/smallest_sigma_sq'] > 0
  assert metrics[0]['loss/bss'] == pytest.approx(1e-3 * metrics[0]['bss/smallest_sigma_sq'],
                                                 rel=1e-5)

  config = load_config('regularized.py')
  assert config.train.early_stopping_patience > 0 and config.model.dropout_rate > 0
  _, _, metrics = train_tiny(config, model, batches)
  m = metrics[0]
  assert m['loss/l1'] == pytest.approx(1e-6 * m['penalties/l1_norm'], rel=1e-5)
  assert m['loss/l2'] == pytest.approx(0.5e-4 * m['penalties/l2_sq_norm'], rel=1e-5)
  assert m['is_finite'] == 1
