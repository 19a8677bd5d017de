"""MMD / multi-kernel MMD between source and target features (DAN, Long et al. 2015).

  MMD²(S, T) = E k(s, s') + E k(t, t') − 2 E k(s, t),   k = Σ_u exp(−||x − y||² / (2σ_u²))

a family of Gaussian kernels whose squared bandwidths 2σ_u² = b · mul^(u − ⌊num/2⌋) spread around
b, the mean squared pairwise distance of the batch (gradient stopped), as DAN's code does.
Estimators: 'unbiased' (the quadratic-time U-statistic, i ≠ j) and 'linear' (Gretton et al.'s
linear-time statistic over consecutive pairs). Computed on each device's rows; the step averages
the devices' estimates. Config: transfer.mmd (default_config()).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import adversarial
from tl_jax.methods import objectives

ESTIMATORS = ('unbiased', 'linear')


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,  # scale of MMD² in the joint objective
      estimator='unbiased',  # 'unbiased' (quadratic time) | 'linear' (linear time)
      kernel_num=5,  # Gaussian kernels in the family (1 = single-kernel MMD)
      kernel_mul=2.0,  # ratio of consecutive squared bandwidths
  ))


def sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """||x_i − y_j||², clipped at 0 against rounding."""
  d = (jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * x @ y.T)
  return jnp.maximum(d, 0.0)


def base_bandwidth(x: jax.Array, y: jax.Array, w_x: jax.Array, w_y: jax.Array) -> jax.Array:
  """Mean squared distance over distinct pairs of the pooled rows (no gradient)."""
  z = jnp.concatenate([x, y])
  w = jnp.concatenate([w_x, w_y])
  pw = w[:, None] * w[None, :] * (1.0 - jnp.eye(z.shape[0]))
  d = sq_distances(z, z)
  return jax.lax.stop_gradient(jnp.sum(d * pw) / jnp.maximum(jnp.sum(pw), 1.0) + 1e-8)


def multi_kernel(d2: jax.Array, base: jax.Array, kernel_num: int, kernel_mul: float) -> jax.Array:
  """Σ_u exp(−d² / (base · mul^(u − ⌊num/2⌋))) on squared distances."""
  scales = [kernel_mul ** (u - kernel_num // 2) for u in range(kernel_num)]
  return sum(jnp.exp(-d2 / (base * s)) for s in scales)


def mmd2_unbiased(x: jax.Array, y: jax.Array, w_x: jax.Array | None = None,
                  w_y: jax.Array | None = None, *, kernel_num: int = 5, kernel_mul: float = 2.0,
                  base: jax.Array | None = None) -> jax.Array:
  """Quadratic-time unbiased MMD² (U-statistic) of rows x vs rows y; w_*: 0/1 row masks."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  w_x = jnp.ones(x.shape[:1]) if w_x is None else w_x.astype(jnp.float32)
  w_y = jnp.ones(y.shape[:1]) if w_y is None else w_y.astype(jnp.float32)
  if base is None:
    base = base_bandwidth(x, y, w_x, w_y)
  k = lambda a, b: multi_kernel(sq_distances(a, b), base, kernel_num, kernel_mul)

  def within(a, w):
    pw = w[:, None] * w[None, :] * (1.0 - jnp.eye(a.shape[0]))
    return jnp.sum(k(a, a) * pw) / jnp.maximum(jnp.sum(pw), 1.0)
  cross = jnp.sum(k(x, y) * w_x[:, None] * w_y[None, :]) / jnp.maximum(
      jnp.sum(w_x) * jnp.sum(w_y), 1.0)
  return within(x, w_x) + within(y, w_y) - 2.0 * cross


def mmd2_linear(x: jax.Array, y: jax.Array, w_x: jax.Array | None = None,
                w_y: jax.Array | None = None, *, kernel_num: int = 5, kernel_mul: float = 2.0,
                base: jax.Array | None = None) -> jax.Array:
  """Linear-time MMD² over consecutive pairs (2i, 2i+1) of equally many rows x and y:
  mean of h = k(x, x') + k(y, y') − k(x, y') − k(x', y)."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  if x.shape[0] != y.shape[0]:
    raise objectives.ObjectiveError(f'linear-time MMD needs as many source as target rows, got '
                                    f'{x.shape[0]} and {y.shape[0]}; use estimator=unbiased')
  n = (x.shape[0] // 2) * 2
  if n == 0:
    raise objectives.ObjectiveError('linear-time MMD needs at least 2 rows per device')
  w_x = jnp.ones(x.shape[:1]) if w_x is None else w_x.astype(jnp.float32)
  w_y = jnp.ones(y.shape[:1]) if w_y is None else w_y.astype(jnp.float32)
  if base is None:
    base = base_bandwidth(x, y, w_x, w_y)
  k = lambda a, b: multi_kernel(jnp.sum(jnp.square(a - b), -1), base, kernel_num, kernel_mul)
  x1, x2, y1, y2 = x[0:n:2], x[1:n:2], y[0:n:2], y[1:n:2]
  w = w_x[0:n:2] * w_x[1:n:2] * w_y[0:n:2] * w_y[1:n:2]
  h = k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)
  return jnp.sum(h * w) / jnp.maximum(jnp.sum(w), 1.0)


def mmd2(x, y, w_x=None, w_y=None, *, estimator: str = 'unbiased', **kw) -> jax.Array:
  if estimator == 'unbiased':
    return mmd2_unbiased(x, y, w_x, w_y, **kw)
  if estimator == 'linear':
    return mmd2_linear(x, y, w_x, w_y, **kw)
  raise objectives.ObjectiveError(f'unknown MMD estimator {estimator!r} '
                                  f'(transfer.mmd.estimator); valid: {", ".join(ESTIMATORS)}')


@objectives.register('mmd')
def mmd(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'mmd', default_config())
  f_s, f_t = adversarial.pooled_features(ctx, 'source'), adversarial.pooled_features(ctx, 'target')
  value = mmd2(f_s, f_t, adversarial.row_weights(ctx.batches['source']),
               adversarial.row_weights(ctx.batches['target']), estimator=cfg.estimator,
               kernel_num=int(cfg.kernel_num), kernel_mul=float(cfg.kernel_mul))
  return cfg.weight * value, {'mmd/mmd2': value}
