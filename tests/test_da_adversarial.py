"""CDAN(+E) and MDD on tiny inputs: the loss equals the hand-computed value, the method's own
params (discriminator / auxiliary head) descend it, the features get exactly −coeff times the
plain gradient (gradient reversal; the plain gradient by finite differences, the forward being
the identity), and the classifier's logits get no gradient from these terms."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from tl_jax.config import base_config
from tl_jax.models.outputs import ModelOutput
from tl_jax.methods import cdan as cdan_lib
from tl_jax.methods import mdd as mdd_lib
from tl_jax.methods import objectives

STEP, TOTAL = 3, 10
COEFF_SCHEDULE = 2 / (1 + np.exp(-10 * STEP / TOTAL)) - 1


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def softplus(v):
  return np.log1p(np.exp(v))


def make_value_fn(name, section, cfg):
  config = base_config()
  config.data.source.name = 'synthetic'
  config.data.target.labeled = False
  config.train.num_steps = TOTAL
  config.transfer[section] = cfg

  @jax.jit
  def value(own, f_s, f_t, z_s, z_t):
    outputs = {'source': ModelOutput(f_s, f_s, logits=z_s),
               'target': ModelOutput(f_t, f_t, logits=z_t)}
    batches = {'source': {'label': jnp.zeros(f_s.shape[0], jnp.int32)},
               'target': {'label': -jnp.ones(f_t.shape[0], jnp.int32)}}
    ctx = objectives.Context(outputs=outputs, batches=batches,
                             params={'objectives': {name: own}}, trainable={}, pretrained=None,
                             step=jnp.int32(STEP), lam=jnp.float32(1.0), config=config,
                             axis_name=None)
    return objectives.get(name).fn(ctx)
  return value


def check_gradients(value, own, inputs, coeff):
  """Own params descend; features reversed (vs finite differences); logits untouched."""
  loss = lambda *a: value(*a)[0]
  grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))(own, *inputs)
  g_own, g_fs, g_ft, g_zs, g_zt = grads
  base = float(loss(own, *inputs))
  stepped = jax.tree.map(lambda p, g: p - 0.05 * g, own, g_own)
  assert float(loss(stepped, *inputs)) < base
  eps = 1e-3
  for k, g in ((0, g_fs), (1, g_ft)):
    x = np.asarray(inputs[k], np.float32)
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
      e = np.zeros_like(x)
      e[idx] = eps
      plus, minus = list(inputs), list(inputs)
      plus[k], minus[k] = x + e, x - e
      fd[idx] = (float(loss(own, *plus)) - float(loss(own, *minus))) / (2 * eps)
    np.testing.assert_allclose(g, -coeff * fd, rtol=2e-2, atol=2e-4)
    assert np.abs(g).max() > 1e-4  # the check is not vacuous
  assert np.all(np.asarray(g_zs) == 0) and np.all(np.asarray(g_zt) == 0)


@pytest.fixture(scope='module')
def tiny():
  rs = np.random.RandomState(0)
  f_s, f_t = rs.randn(3, 2).astype(np.float32), rs.randn(3, 2).astype(np.float32)
  z_s, z_t = rs.randn(3, 2).astype(np.float32), rs.randn(3, 2).astype(np.float32)
  return rs, (f_s, f_t, z_s, z_t)


@pytest.mark.parametrize('entropy', [False, True])
def test_cdan_value_by_hand_and_gradient_signs(tiny, entropy):
  rs, inputs = tiny
  f_s, f_t, z_s, z_t = inputs
  w = rs.randn(4, 1).astype(np.float32)
  disc = {'layer_0': {'kernel': jnp.asarray(w), 'bias': jnp.asarray([0.2], jnp.float32)}}
  cfg = cdan_lib.default_config()
  cfg.entropy = entropy
  value = make_value_fn('cdan', 'cdan', cfg)
  got, metrics = value(disc, *inputs)

  def domain(f, z, sign):
    g = softmax(z)
    h = (f[:, :, None] * g[:, None, :]).reshape(len(f), -1)
    d = (h @ w).ravel() + 0.2
    ent = -np.sum(g * np.log(g), -1)
    weight = 1 + np.exp(-ent) if entropy else np.ones(len(f))
    return np.sum(weight * softplus(sign * d)) / np.sum(weight)
  want = 0.5 * (domain(f_s, z_s, -1) + domain(f_t, z_t, +1))  # source = 1, target = 0
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(metrics['cdan/coeff'], COEFF_SCHEDULE, rtol=1e-5)
  check_gradients(value, disc, inputs, COEFF_SCHEDULE)


def test_cdan_randomized_map_has_the_right_size_and_is_fixed():
  f, g = jnp.ones((2, 5)), jnp.full((2, 3), 1 / 3)
  randomized = jax.jit(cdan_lib.multilinear_map, static_argnums=2)
  a = randomized(f, g, 7)
  assert a.shape == (2, 7)
  np.testing.assert_array_equal(a, randomized(f, g, 7))
  np.testing.assert_allclose(randomized(f, g, 0)[0], np.full(15, 1 / 3), rtol=1e-6)


def test_mdd_value_by_hand_and_gradient_signs(tiny):
  rs, (f_s, f_t, _, _) = tiny
  z_s, z_t = rs.randn(3, 3).astype(np.float32), rs.randn(3, 3).astype(np.float32)
  inputs = (f_s, f_t, z_s, z_t)
  k = rs.randn(2, 3).astype(np.float32)
  head = {'layer_0': {'kernel': jnp.asarray(k), 'bias': jnp.zeros(3, jnp.float32)}}
  cfg = mdd_lib.default_config()
  value = make_value_fn('mdd', 'mdd', cfg)
  got, metrics = value(head, *inputs)
  y_s, y_t = z_s.argmax(-1), z_t.argmax(-1)
  p_s, p_t = softmax(f_s @ k), softmax(f_t @ k)
  ce_s = -np.log(p_s[np.arange(3), y_s]).mean()
  log_t = np.log(1 - p_t[np.arange(3), y_t]).mean()
  discrepancy = log_t - cfg.margin * ce_s
  np.testing.assert_allclose(metrics['mdd/discrepancy'], discrepancy, rtol=1e-5)
  np.testing.assert_allclose(got, -discrepancy, rtol=1e-5)
  coeff = cfg.coeff * COEFF_SCHEDULE
  np.testing.assert_allclose(metrics['mdd/coeff'], coeff, rtol=1e-5)
  # The auxiliary head descends the loss = ascends the discrepancy (the adversary's max).
  check_gradients(value, head, inputs, coeff)


# ---------------------------------------------------------------------------------------------
# The discriminator's own optimisation: transfer.<method>.lr_multiplier / .optimizer (optim.py).

def own_params():
  leaf = lambda *shape: jnp.zeros(shape, jnp.float32)
  return {'head': {'kernel': leaf(4, 3), 'bias': leaf(3)},
          'objectives': {'dann': {'layer_0': {'kernel': leaf(4, 1), 'bias': leaf(1)}},
                         'mdd': {'layer_0': {'kernel': leaf(4, 3), 'bias': leaf(3)}}}}


def one_update(config, grads_value=0.5):
  from tl_jax.train import optim
  from tl_jax.train import freezing
  params = own_params()
  config.optimizer.schedule, config.optimizer.warmup_steps = 'constant', 0
  config.optimizer.grad_clip_norm, config.optimizer.weight_decay = 0.0, 0.0
  schedule = freezing.FreezeSchedule([freezing.Stage(0, (('.*', 'train'),))], params)
  methods = optim.method_settings(config.transfer, params)
  tx = optim.optimizer_for_stage(config.optimizer, schedule, 0, params,
                                 optim.learning_rate_schedule(config.optimizer, 10), methods)
  grads = jax.tree.map(lambda p: jnp.full_like(p, grads_value), params)
  state = tx.init(params)
  updates, _ = tx.update(grads, state, params)
  return freezing.flatten(updates), state


def test_discriminator_lr_multiplier_scales_only_its_own_params():
  config = base_config()
  config.optimizer.learning_rate = 1e-3
  config.transfer.dann.lr_multiplier = 10.0
  config.transfer.mdd.lr_multiplier = 1.0
  updates, _ = one_update(config)
  # Adam's first step is lr·sign(g): the head moves by lr, the DANN discriminator by 10 lr,
  # MDD's head (multiplier 1) by lr.
  np.testing.assert_allclose(updates['head/kernel'], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates['objectives/dann/layer_0/kernel'], -1e-2, rtol=1e-4)
  np.testing.assert_allclose(updates['objectives/mdd/layer_0/bias'], -1e-3, rtol=1e-4)


def test_discriminator_own_optimizer_gets_its_own_state():
  config = base_config()
  config.optimizer.learning_rate = 1e-3
  config.transfer.dann.optimizer = 'sgd'
  config.transfer.dann.lr_multiplier = 4.0
  updates, state = one_update(config, grads_value=0.5)
  # SGD (momentum from config.optimizer; its first step is g) on the discriminator: −lr·4·g;
  # Adam elsewhere: −lr·sign(g).
  np.testing.assert_allclose(updates['objectives/dann/layer_0/kernel'], -1e-3 * 4 * 0.5,
                             rtol=1e-5)
  np.testing.assert_allclose(updates['head/kernel'], -1e-3, rtol=1e-4)
  labels = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]}
  assert any(':dann' in label for label in labels), labels  # a label of its own
  # Unset, the state layout is the one without the feature (old checkpoints resume).
  _, plain = one_update(base_config())
  assert not any(':' in jax.tree_util.keystr(p)
                 for p, _ in jax.tree_util.tree_flatten_with_path(plain)[0])


@pytest.mark.parametrize('key,value,match', [
    ('lr_multiplier', 0.0, r'transfer.dann.lr_multiplier=0.0 must be a finite number > 0'),
    ('lr_multiplier', float('inf'), r'transfer.dann.lr_multiplier=inf'),
    ('optimizer', 'adamx', r"transfer.dann.optimizer='adamx'.*adamw, sgd, adafactor")])
def test_discriminator_optimizer_settings_are_checked(key, value, match):
  from tl_jax.train import optim
  config = base_config()
  config.transfer.dann[key] = value
  with pytest.raises(optim.OptimizerConfigError, match=match):
    optim.method_settings(config.transfer, own_params())
