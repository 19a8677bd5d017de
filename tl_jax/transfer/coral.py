"""Deep CORAL (Sun & Saenko 2016): match the second-order statistics of the features.

  L_coral = weight · ||C_S − C_T||²_F / (4 d²),   C = the (n−1)-normalised covariance, d the
  feature width. Computed on each device's rows; the step averages the devices' values.
Config: transfer.coral (default_config()).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.transfer import dann as dann_lib
from tl_jax.transfer import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(weight=1.0))


def covariance(x: jax.Array, w: jax.Array | None = None) -> jax.Array:
  """Unbiased covariance (d, d) of the rows of x with w = 1 (w = 0: padding, left out)."""
  x = x.astype(jnp.float32)
  w = jnp.ones(x.shape[:1], jnp.float32) if w is None else w.astype(jnp.float32)
  n = jnp.sum(w)
  mean = jnp.sum(x * w[:, None], 0) / jnp.maximum(n, 1.0)
  xc = (x - mean) * w[:, None]
  return xc.T @ xc / jnp.maximum(n - 1.0, 1.0)


def coral_loss(x_s: jax.Array, x_t: jax.Array, w_s: jax.Array | None = None,
               w_t: jax.Array | None = None) -> jax.Array:
  d = x_s.shape[-1]
  diff = covariance(x_s, w_s) - covariance(x_t, w_t)
  return jnp.sum(jnp.square(diff)) / (4.0 * d * d)


@objectives.register('coral')
def coral(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'coral', default_config())
  value = coral_loss(dann_lib.features(ctx, 'source'), dann_lib.features(ctx, 'target'),
                     dann_lib.row_weights(ctx.batches['source']),
                     dann_lib.row_weights(ctx.batches['target']))
  return cfg.weight * value, {'coral/loss': value}
