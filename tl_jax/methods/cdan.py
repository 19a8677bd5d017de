"""CDAN / CDAN+E (Long et al. 2018, "Conditional adversarial domain adaptation").

Like DANN, but the discriminator D sees the multilinear map h = f ⊗ g of the features f and the
classifier's softmax g (gradient stopped, as in the authors' and TLlib's code), behind gradient
reversal; with `random_dim` > 0 the randomized map (R_f f) ⊙ (R_g g) / √random_dim (fixed
Gaussian R) keeps the input of D small. CDAN+E (`entropy=True`) weights each example by
1 + exp(−H(g)), normalised within each domain, so confident examples count more:

  L_cdan = weight · ½ (Σ_s ŵ BCE(D(R(h_s)), 1) + Σ_t ŵ BCE(D(R(h_t)), 0))

Config: transfer.cdan (default_config()).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import adversarial
from tl_jax.methods import grl
from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,  # scale of the conditional domain loss
      coeff=1.0,  # final gradient-reversal coefficient (warmed up as in DANN)
      gamma=10.0,
      hidden=(256, 256),  # discriminator hidden widths
      entropy=True,  # CDAN+E: entropy conditioning
      random_dim=0,  # > 0: randomized multilinear map of this width (for large d x C)
      lr_multiplier=10.0,  # the discriminator's LR factor (see dann.default_config)
      optimizer='',  # the discriminator's optimizer; '' = optimizer.name
  ))


def _input_dim(dims: objectives.FeatureDims, cfg: Any) -> int:
  return int(cfg.random_dim) or dims.feature_dim * dims.num_classes


def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = objectives.method_settings(config, 'cdan', default_config())
  if not dims.num_classes:
    raise objectives.ObjectiveError('cdan conditions on the classifier: the model needs a head')
  return adversarial.mlp_init(rng, (_input_dim(dims, cfg), *cfg.hidden, 1))


def multilinear_map(f: jax.Array, g: jax.Array, random_dim: int = 0) -> jax.Array:
  """f ⊗ g flattened (B, d·C), or its randomized version (B, random_dim)."""
  if not random_dim:
    return (f[:, :, None] * g[:, None, :]).reshape(f.shape[0], -1)
  key = jax.random.key(0)  # fixed projections, the same in every step and on every device
  r_f = jax.random.normal(jax.random.fold_in(key, 0), (f.shape[-1], random_dim))
  r_g = jax.random.normal(jax.random.fold_in(key, 1), (g.shape[-1], random_dim))
  return (f @ r_f) * (g @ r_g) / jnp.sqrt(float(random_dim))


def entropy_weights(probs: jax.Array) -> jax.Array:
  """1 + exp(−H(p)) per row, no gradient."""
  h = -jnp.sum(probs * jnp.log(probs + 1e-12), axis=-1)
  return jax.lax.stop_gradient(1.0 + jnp.exp(-h))


@objectives.register('cdan', init=_init)
def cdan(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'cdan', default_config())
  coeff = adversarial.warmup_coeff(ctx, cfg.coeff, cfg.gamma)
  disc = ctx.method_params('cdan')
  logits, weights = {}, {}
  for domain in ('source', 'target'):
    f = adversarial.pooled_features(ctx, domain)
    g = jax.lax.stop_gradient(jax.nn.softmax(ctx.logits(domain).astype(jnp.float32)))
    h = multilinear_map(f, g, int(cfg.random_dim))
    logits[domain] = adversarial.mlp_apply(disc, grl.gradient_reversal(h, coeff))
    w = adversarial.row_weights(ctx.batches[domain])
    weights[domain] = w * entropy_weights(g) if cfg.entropy else w
  loss, acc = adversarial.domain_bce(ctx, logits['source'], logits['target'], weights['source'],
                                  weights['target'])
  return cfg.weight * loss, {'cdan/domain_loss': loss, 'cdan/domain_accuracy': acc,
                             'cdan/coeff': coeff}
