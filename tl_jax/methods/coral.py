"""Deep CORAL (Sun & Saenko 2016): match the second-order statistics of the features.

  L_coral = weight · ||C_S − C_T||²_F / N,   C = the (n−1)-normalised covariance, d the width,
  N = 4d² (normalize='d2', the paper's) or ||C_S||²_F, gradient stopped (normalize='source').

The paper's 1/(4d²) makes the value depend on the feature scale: ~1e-3 on MiniLM's 384-d mean
pooled features (entries of C ~ 1e-2), so `weight` must be tuned per backbone (configs/
coral_digits.py uses 10). 'source' is scale-free (multiplying the features by a leaves it
unchanged): 0 for equal covariances, ~1 for unrelated ones of similar size, so weight ~1 is a
sensible start on any backbone. Computed on each device's rows; the step averages the devices'
values. Config: transfer.coral (default_config()).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import adversarial
from tl_jax.methods import objectives

NORMALIZE = ('d2', 'source')


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,
      normalize='d2',  # 'd2': / 4d² (the paper; ~1e-3 on 384-d features) | 'source': / ||C_S||²
  ))


def covariance(x: jax.Array, w: jax.Array | None = None) -> jax.Array:
  """Unbiased covariance (d, d) of the rows of x with w = 1 (w = 0: padding, left out)."""
  x = x.astype(jnp.float32)
  w = jnp.ones(x.shape[:1], jnp.float32) if w is None else w.astype(jnp.float32)
  n = jnp.sum(w)
  mean = jnp.sum(x * w[:, None], 0) / jnp.maximum(n, 1.0)
  xc = (x - mean) * w[:, None]
  return xc.T @ xc / jnp.maximum(n - 1.0, 1.0)


def coral_loss(x_s: jax.Array, x_t: jax.Array, w_s: jax.Array | None = None,
               w_t: jax.Array | None = None, normalize: str = 'd2') -> jax.Array:
  d = x_s.shape[-1]
  c_s = covariance(x_s, w_s)
  diff = c_s - covariance(x_t, w_t)
  if normalize == 'd2':
    return jnp.sum(jnp.square(diff)) / (4.0 * d * d)
  if normalize == 'source':
    # Stopped, so the features cannot lower the loss by inflating the source covariance.
    return jnp.sum(jnp.square(diff)) / (jax.lax.stop_gradient(jnp.sum(jnp.square(c_s))) + 1e-12)
  raise objectives.ObjectiveError(f'unknown transfer.coral.normalize={normalize!r}; valid: '
                                  f'{", ".join(NORMALIZE)}')


@objectives.register('coral')
def coral(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'coral', default_config())
  value = coral_loss(adversarial.pooled_features(ctx, 'source'),
                     adversarial.pooled_features(ctx, 'target'),
                     adversarial.row_weights(ctx.batches['source']),
                     adversarial.row_weights(ctx.batches['target']),
                     normalize=cfg.get('normalize', 'd2'))
  return cfg.weight * value, {'coral/loss': value}
