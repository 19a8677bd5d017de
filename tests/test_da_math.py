"""The math of the domain-adaptation terms on tiny inputs: gradient reversal against finite
differences, MMD estimators against naive loops, CORAL against numpy, the DANN loss by hand."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from tl_jax.config import base_config
from tl_jax.models.outputs import ModelOutput
from tl_jax.methods import coral as coral_lib
from tl_jax.methods import dann as dann_lib
from tl_jax.methods import grl
from tl_jax.methods import mmd as mmd_lib
from tl_jax.methods import objectives

def smooth(x, np=jnp):
  return np.sum(np.sin(x) * np.arange(1.0, x.size + 1).reshape(x.shape) + x ** 3)


@pytest.mark.parametrize('coeff', [0.0, 0.3, 1.7])
def test_gradient_reversal_is_minus_coeff_times_finite_differences(coeff):
  x = np.random.RandomState(0).randn(2, 3)
  forward = jax.jit(grl.gradient_reversal)(jnp.asarray(x, jnp.float32), coeff)
  assert np.array_equal(forward, x.astype(np.float32))  # identity forward
  grads = jax.jit(jax.grad(lambda v, c: smooth(grl.gradient_reversal(v, c)), argnums=(0, 1)))
  got, got_coeff = grads(jnp.asarray(x, jnp.float32), jnp.float32(coeff))
  eps = 1e-5
  fd = np.zeros(x.shape)
  for idx in np.ndindex(x.shape):  # central differences of the plain function, in float64
    e = np.zeros(x.shape)
    e[idx] = eps
    fd[idx] = (smooth(x + e, np) - smooth(x - e, np)) / (2 * eps)
  np.testing.assert_allclose(got, -coeff * fd, rtol=1e-5, atol=1e-5)
  # No gradient flows into the coefficient (it is a schedule, not a parameter).
  assert float(got_coeff) == 0.0


def naive_mmd2_unbiased(x, y, base, num, mul):
  k = lambda a, b: sum(np.exp(-np.sum((a - b) ** 2) / (base * mul ** (u - num // 2)))
                       for u in range(num))
  m, n = len(x), len(y)
  kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return kxx + kyy - 2 * kxy, k


def test_mmd_estimators_match_naive_loops():
  rs = np.random.RandomState(1)
  x, y = rs.randn(6, 3), rs.randn(6, 3) + 0.5
  z = np.concatenate([x, y])
  d = [np.sum((z[i] - z[j]) ** 2) for i in range(12) for j in range(12) if i != j]
  base = np.mean(d)
  want, k = naive_mmd2_unbiased(x, y, base, 5, 2.0)
  unbiased = jax.jit(mmd_lib.mmd2_unbiased)
  got = unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  lin = np.mean([k(x[2 * i], x[2 * i + 1]) + k(y[2 * i], y[2 * i + 1])
                 - k(x[2 * i], y[2 * i + 1]) - k(x[2 * i + 1], y[2 * i]) for i in range(3)])
  got = jax.jit(mmd_lib.mmd2_linear)(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
  np.testing.assert_allclose(got, lin, rtol=1e-4, atol=1e-6)
  # Padding rows (mask 0) are left out: same value as without them.
  xp = np.concatenate([x, 100 + rs.randn(2, 3)])
  wp = np.r_[np.ones(6), 0, 0]
  got = unbiased(jnp.asarray(xp, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(wp),
                 jnp.ones(6))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_mmd_separates_shifted_from_same_distribution():
  rs = np.random.RandomState(2)
  a, b, c = (jnp.asarray(rs.randn(200, 4), jnp.float32) for _ in range(3))
  unbiased = jax.jit(mmd_lib.mmd2_unbiased)
  same = float(unbiased(a, b))
  moved = float(unbiased(a, c + 1.0))
  assert abs(same) < 0.02 and moved > 10 * max(abs(same), 0.01), (same, moved)


def test_coral_is_frobenius_distance_of_numpy_covariances():
  rs = np.random.RandomState(3)
  xs, xt = rs.randn(20, 4), rs.randn(15, 4) * np.array([1, 2, 0.5, 1]) + 1
  want = np.sum((np.cov(xs, rowvar=False) - np.cov(xt, rowvar=False)) ** 2) / (4 * 16)
  got = jax.jit(coral_lib.coral_loss)(jnp.asarray(xs, jnp.float32), jnp.asarray(xt, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def ctx_for(f_s, f_t, params, step=0, num_steps=10, **transfer):
  config = base_config()
  config.data.source.name = 'synthetic'
  config.data.target.labeled = False
  config.train.num_steps = num_steps
  for k, v in transfer.items():
    config.transfer[k] = v
  outputs = {d: ModelOutput(last_hidden_state=f, pooled=f, logits=None)
             for d, f in (('source', f_s), ('target', f_t))}
  batches = {d: {'label': -jnp.ones(o.pooled.shape[0], jnp.int32)} for d, o in outputs.items()}
  return objectives.Context(outputs=outputs, batches=batches, params=params, trainable={},
                            pretrained=None, step=jnp.asarray(step), lam=jnp.float32(1.0),
                            config=config, axis_name=None)


def test_dann_loss_by_hand_and_reversed_gradient_signs():
  """Linear discriminator d(f) = w·f + b: loss = ½(mean softplus(−d_s) + mean softplus(d_t)).
  The discriminator descends the loss; the features get −coeff times its gradient."""
  rs = np.random.RandomState(4)
  f_s, f_t = (jnp.asarray(rs.randn(4, 3), jnp.float32) for _ in range(2))
  w = jnp.asarray(rs.randn(3, 1), jnp.float32)
  disc = {'layer_0': {'kernel': w, 'bias': jnp.asarray([0.1])}}
  cfg = dann_lib.default_config()
  step, total = 5, 10
  coeff = 2 / (1 + np.exp(-10 * step / total)) - 1

  def loss(disc, f_s, f_t):
    ctx = ctx_for(f_s, f_t, {'objectives': {'dann': disc}}, step=step, num_steps=total,
                  dann=cfg)
    return objectives.get('dann').fn(ctx)

  value, metrics = loss(disc, f_s, f_t)
  d_s, d_t = np.asarray(f_s @ w).ravel() + 0.1, np.asarray(f_t @ w).ravel() + 0.1
  softplus = lambda v: np.log1p(np.exp(v))
  want = 0.5 * (softplus(-d_s).mean() + softplus(d_t).mean())
  np.testing.assert_allclose(value, want, rtol=1e-5)
  np.testing.assert_allclose(metrics['dann/coeff'], coeff, rtol=1e-5)
  g_disc, g_s, g_t = jax.grad(lambda *a: loss(*a)[0], argnums=(0, 1, 2))(disc, f_s, f_t)
  # Without reversal the feature gradient of the same loss, by hand: ∂/∂f_s = ½·(−σ(−d_s))/n·w.
  sig = lambda v: 1 / (1 + np.exp(-v))
  plain_s = 0.5 * (-sig(-d_s))[:, None] / 4 * np.asarray(w).T
  plain_t = 0.5 * sig(d_t)[:, None] / 4 * np.asarray(w).T
  np.testing.assert_allclose(g_s, -coeff * plain_s, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(g_t, -coeff * plain_t, rtol=1e-4, atol=1e-7)
  # The discriminator's own gradient is NOT reversed: a small step lowers the domain loss.
  stepped = jax.tree.map(lambda p, g: p - 0.1 * g, disc, g_disc)
  assert float(loss(stepped, f_s, f_t)[0]) < float(value)
