"""L2-SP (Li, Grandvalet & Davoine 2018, "Explicit inductive bias for transfer learning").

  Ω(w) = α/2 · ||w_S − w0_S||² + β/2 · ||w_new||²

w_S are the weights that exist in the pretrained model (same name and shape), pulled toward the
pretrained values w0 instead of toward 0; w_new are the rest of the model (new heads), with plain
weight decay. Weights other methods own (`objectives/...`) are left to those methods.
Only trainable leaves count: frozen ones equal w0 (or get no gradient), so they only add a
constant. Config: transfer.l2sp_alpha, transfer.l2sp_beta (the paper's α, β).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tl_jax.methods import objectives


def l2sp_terms(trainable: dict[str, jax.Array],
               pretrained: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
  """(||w_S − w0_S||², ||w_new||²) over the trainable leaves, in float32."""
  shared = jnp.zeros((), jnp.float32)
  new = jnp.zeros((), jnp.float32)
  for name, w in trainable.items():
    if name.startswith(objectives.PARAMS_KEY + '/'):
      continue  # other methods' own weights (discriminators) are not part of the model
    w = w.astype(jnp.float32)
    w0 = pretrained.get(name)
    if w0 is not None and w0.shape == w.shape:
      shared = shared + jnp.sum(jnp.square(w - jax.lax.stop_gradient(w0).astype(jnp.float32)))
    else:
      new = new + jnp.sum(jnp.square(w))
  return shared, new


@objectives.register('l2sp', needs=('pretrained',))
def l2sp(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  alpha = float(ctx.config.transfer.l2sp_alpha)
  beta = float(ctx.config.transfer.l2sp_beta)
  shared, new = l2sp_terms(dict(ctx.trainable), dict(ctx.pretrained or {}))
  value = 0.5 * alpha * shared + 0.5 * beta * new
  return value, {'l2sp/shared_sq_dist': shared, 'l2sp/new_sq_norm': new}
