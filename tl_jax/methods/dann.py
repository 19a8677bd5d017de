"""DANN (Ganin & Lempitsky 2015, "Unsupervised domain adaptation by backpropagation").

A domain discriminator D (an MLP on the pooled features, owned by this objective) learns to tell
source (1) from target (0) through a gradient reversal layer, so the same minimisation makes the
features domain-invariant:

  L_dann = weight · ½ (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)),  R = grl.gradient_reversal(·, c)

with the reversal coefficient warmed up from the step, c = coeff·(2/(1+exp(−γp))−1), p = step /
train.num_steps (the paper's schedule, lambdas.dann). Config: transfer.dann (default_config()).
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
      weight=1.0,  # scale of the domain loss in the joint objective
      coeff=1.0,  # final gradient-reversal coefficient
      gamma=10.0,  # warm-up speed of the coefficient (the paper's 10)
      hidden=(256, 256),  # discriminator hidden widths (ReLU)
      # The discriminator's own optimisation (its params live under objectives/dann/):
      # LR = optimizer.learning_rate x lr_multiplier, two time scales, 10 as in the reference
      # code (Ganin's and thuml's discriminators train at lr_mult 10; on the tiny test at 1 the
      # discriminator is outrun by the reversed features, domain loss 3.0 after 30 steps, at
      # 10 it holds at 0.98), and its own optimizer ('' = optimizer.name). Health:
      # dann/domain_accuracy and dann/domain_loss are watched (tl_jax/train/health.py; chance
      # 0.5 and ln 2); a collapse is warned about and reported.
      lr_multiplier=10.0,
      optimizer='',
  ))


def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = objectives.method_settings(config, 'dann', default_config())
  return adversarial.mlp_init(rng, (dims.feature_dim, *cfg.hidden, 1))


@objectives.register('dann', init=_init)
def dann(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'dann', default_config())
  coeff = adversarial.warmup_coeff(ctx, cfg.coeff, cfg.gamma)
  disc = ctx.method_params('dann')
  f_s = adversarial.pooled_features(ctx, 'source')
  f_t = adversarial.pooled_features(ctx, 'target')
  d_s = adversarial.mlp_apply(disc, grl.gradient_reversal(f_s, coeff))
  d_t = adversarial.mlp_apply(disc, grl.gradient_reversal(f_t, coeff))
  loss, acc = adversarial.domain_bce(ctx, d_s, d_t, adversarial.row_weights(ctx.batches['source']),
                                     adversarial.row_weights(ctx.batches['target']))
  return cfg.weight * loss, {'dann/domain_loss': loss, 'dann/domain_accuracy': acc,
                             'dann/coeff': coeff}
