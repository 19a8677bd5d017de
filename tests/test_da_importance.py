"""Importance weights recover a known density ratio: source N(0, 1), target N(0.5, 0.7²), so
w(x) = p_T(x)/p_S(x) is known in closed form. The domain classifier of the
'importance_weighting' objective (trained through the objective), KMM and KLIEP must all
correlate with it; the objective's weights must then reweight the source loss."""

import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest

from tl_jax.config import base_config
from tl_jax.models.outputs import ModelOutput
from tl_jax.transfer import importance
from tl_jax.transfer import objectives

N = 300
MU_T, SD_T = 0.5, 0.7


def normal_pdf(x, mu, sd):
  return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


@pytest.fixture(scope='module')
def samples():
  rs = np.random.RandomState(0)
  x_s = rs.randn(N).astype(np.float32)
  x_t = (MU_T + SD_T * rs.randn(N)).astype(np.float32)
  true = normal_pdf(x_s, MU_T, SD_T) / normal_pdf(x_s, 0.0, 1.0)
  return x_s, x_t, true


def corr(a, b):
  return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def test_domain_classifier_of_the_objective_recovers_the_ratio(samples):
  x_s, x_t, true = samples
  # Features [x, x²]: the true log-ratio is quadratic, so logistic regression can represent it.
  feats = lambda x: jnp.stack([x, x * x], -1)
  config = base_config()
  config.data.source.name = 'synthetic'
  config.data.target.labeled = False
  joint = objectives.JointObjective(('importance_weighting',))
  clf = joint.init_params(jax.random.key(0), objectives.FeatureDims(2, 2),
                          config)['importance_weighting']
  logits = jnp.zeros((N, 2))
  outputs = {'source': ModelOutput(feats(x_s), feats(x_s), logits=logits),
             'target': ModelOutput(feats(x_t), feats(x_t), logits=logits)}
  batches = {'source': {'label': jnp.zeros(N, jnp.int32)},
             'target': {'label': -jnp.ones(N, jnp.int32)}}

  def loss(clf):
    ctx = objectives.Context(outputs=outputs, batches=batches,
                             params={'objectives': {'importance_weighting': clf}}, trainable={},
                             pretrained=None, step=jnp.int32(0), lam=jnp.float32(1.0),
                             config=config, axis_name=None)
    return joint(ctx)

  tx = optax.adam(0.05)

  @jax.jit
  def fit(clf):
    def body(carry, _):
      p, opt = carry
      grads = jax.grad(lambda q: loss(q)[0])(p)
      updates, opt = tx.update(grads, opt, p)
      return (optax.apply_updates(p, updates), opt), None
    (p, _), _ = jax.lax.scan(body, (clf, tx.init(clf)), None, length=500)
    return p, loss(p)[1]

  clf, metrics = fit(clf)
  w = importance.ratio_from_logits(
      importance.dann_lib.mlp_apply(clf, feats(jnp.asarray(x_s))).reshape(-1))
  assert corr(w, true) > 0.95, corr(w, true)
  np.testing.assert_allclose(np.mean(w), np.mean(true), rtol=0.25)  # ≈ 1: same sizes
  assert metrics['importance/domain_accuracy'] > 0.55  # the domains are told apart
  assert 0.2 < metrics['importance/effective_sample_fraction'] < 1.0  # weights really vary


def test_kmm_recovers_the_ratio(samples):
  x_s, x_t, true = samples
  beta = jax.jit(importance.kmm_weights)(jnp.asarray(x_s)[:, None], jnp.asarray(x_t)[:, None])
  assert corr(beta, true) > 0.9, corr(beta, true)
  assert float(jnp.min(beta)) >= 0.0
  assert abs(float(jnp.mean(beta)) - 1.0) < 0.1


def test_kliep_recovers_the_ratio(samples):
  x_s, x_t, true = samples
  w = jax.jit(importance.kliep_weights)(jnp.asarray(x_s)[:, None], jnp.asarray(x_t)[:, None])
  assert corr(w, true) > 0.9, corr(w, true)
  np.testing.assert_allclose(float(jnp.mean(w)), 1.0, atol=0.02)  # the KLIEP constraint


def test_weighted_source_loss_follows_the_weights():
  """A source row the classifier calls target-like dominates the weighted source loss."""
  config = base_config()
  config.data.source.name = 'synthetic'
  f_s = jnp.asarray([[0.0], [2.0]])  # logit = w·f: row 1 has ratio e^2 times row 0's
  clf = {'layer_0': {'kernel': jnp.ones((1, 1)), 'bias': jnp.zeros(1)}}
  logits = jnp.asarray([[5.0, 0.0], [0.0, 5.0]])  # row 0 right, row 1 wrong (label 0)
  outputs = {d: ModelOutput(f_s, f_s, logits=logits) for d in ('source', 'target')}
  batches = {'source': {'label': jnp.zeros(2, jnp.int32)},
             'target': {'label': -jnp.ones(2, jnp.int32)}}
  ctx = objectives.Context(outputs=outputs, batches=batches,
                           params={'objectives': {'importance_weighting': clf}}, trainable={},
                           pretrained=None, step=jnp.int32(0), lam=jnp.float32(1.0),
                           config=config, axis_name=None)
  _, m = objectives.get('importance_weighting').fn(ctx)
  ce = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.zeros(2, int)))
  r = np.exp([0.0, 2.0])
  np.testing.assert_allclose(m['importance/weighted_source_loss'], np.sum(r * ce) / np.sum(r),
                             rtol=1e-5)
  np.testing.assert_allclose(m['source/loss'], ce.mean(), rtol=1e-5)
