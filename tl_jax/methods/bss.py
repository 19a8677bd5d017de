"""Batch Spectral Shrinkage (Chen et al. 2019, "Catastrophic forgetting meets negative transfer").

  L_bss = η · Σ_{i=1..k} σ_{-i}²

the k smallest singular values of the batch feature matrix F (B × D, the backbone's pooled
features of the target batch). Fine-tuning on few examples amplifies feature directions the
target labels cannot support; shrinking the small singular values suppresses them. The SVD is
of each device's local batch (as the paper's per-batch term); padding rows are zeroed, so keep
train batches full (they are) or k below the number of real rows.
Config: `config.transfer.bss = bss.default_config()` (the paper: η = 0.001, k = 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      eta=1e-3,  # η, the weight of the term
      k=1,  # how many of the smallest singular values are shrunk
      domain='target',  # whose features: 'target' or 'source'
  ))


def settings(ctx: objectives.Context) -> mlc.ConfigDict:
  return objectives.method_settings(ctx.config, 'bss', example='configs/bss_bbc.py')


def smallest_singular_values_sq(features: jax.Array, k: int) -> jax.Array:
  """Σ of the k smallest squared singular values of a (B, D) matrix, in float32."""
  n = min(features.shape)
  if not 1 <= k <= n:
    raise objectives.ObjectiveError(f'transfer.bss.k={k} must be in [1, {n}] (min of batch rows '
                                    'and feature size)')
  # compute_uv=False: the gradient U diag(·) Vᵀ stays finite even for repeated values.
  sigma = jnp.linalg.svd(features.astype(jnp.float32), compute_uv=False)  # descending
  return jnp.sum(jnp.square(sigma[n - k:]))


@objectives.register('bss')
def bss(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  features = ctx.outputs[cfg.domain].pooled
  batch = ctx.batches[cfg.domain]
  if 'mask' in batch:
    features = features * batch['mask'].astype(features.dtype)[:, None]
  shrink = smallest_singular_values_sq(features, int(cfg.k))
  return float(cfg.eta) * shrink, {'bss/smallest_sigma_sq': shrink}
