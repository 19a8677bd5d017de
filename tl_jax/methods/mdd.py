"""MDD (Zhang et al. 2019, "Bridging theory and algorithm for domain adaptation"): margin
disparity discrepancy with an adversarial auxiliary head f' (owned by this objective) on the
features behind gradient reversal. With ŷ = argmax of the main head (gradient stopped):

  D_γ = E_t log(1 − softmax(f'(x_t))[ŷ_t]) − γ · E_s CE(f'(x_s), ŷ_s)
  L_mdd = −weight · D_γ   (f' descends it, so it maximises D_γ: agree with f on the source,
                           disagree on the target; the features, reversed, minimise D_γ)

γ is the margin factor (the paper's γ, 4 by default as in TLlib); the reversal coefficient
warms up from the step to `coeff` (0.1, TLlib's default). Config: transfer.mdd.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from tl_jax.methods import adversarial
from tl_jax.methods import grl
from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,  # trade-off of the discrepancy term
      margin=4.0,  # γ
      coeff=0.1,  # final gradient-reversal coefficient
      gamma=10.0,  # warm-up speed of the coefficient
      hidden=(256,),  # auxiliary head hidden widths
      lr_multiplier=10.0,  # the auxiliary head's LR factor (see dann.default_config)
      optimizer='',  # the auxiliary head's optimizer; '' = optimizer.name
  ))


def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = objectives.method_settings(config, 'mdd', default_config())
  if not dims.num_classes:
    raise objectives.ObjectiveError('mdd needs the classification head of the model')
  return adversarial.mlp_init(rng, (dims.feature_dim, *cfg.hidden, dims.num_classes))


def disparity_terms(main_s: jax.Array, adv_s: jax.Array, main_t: jax.Array,
                    adv_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-example (CE(f'_s, ŷ_s), log(1 − p'_t[ŷ_t])) with ŷ the main head's argmax."""
  y_s = jnp.argmax(main_s, -1)
  y_t = jnp.argmax(main_t, -1)
  ce_s = optax.softmax_cross_entropy_with_integer_labels(adv_s.astype(jnp.float32), y_s)
  p_t = jnp.take_along_axis(jax.nn.softmax(adv_t.astype(jnp.float32)), y_t[:, None], -1)[:, 0]
  return ce_s, jnp.log(jnp.clip(1.0 - p_t, 1e-6, 1.0))


@objectives.register('mdd', init=_init)
def mdd(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'mdd', default_config())
  coeff = adversarial.warmup_coeff(ctx, cfg.coeff, cfg.gamma)
  head = ctx.method_params('mdd')
  adv = {d: adversarial.mlp_apply(
             head, grl.gradient_reversal(adversarial.pooled_features(ctx, d), coeff))
         for d in ('source', 'target')}
  ce_s, log_t = disparity_terms(ctx.logits('source'), adv['source'], ctx.logits('target'),
                                adv['target'])
  source = ctx.mean(ce_s, adversarial.row_weights(ctx.batches['source']))
  target = ctx.mean(log_t, adversarial.row_weights(ctx.batches['target']))
  discrepancy = target - cfg.margin * source
  # How often the adversarial head agrees with the main one (on the source it should, on the
  # target it should not): logged with the disparity to judge the adversary's health.
  agree = {d: (jnp.argmax(adv[d], -1) == jnp.argmax(ctx.logits(d), -1)).astype(jnp.float32)
           for d in ('source', 'target')}
  return -cfg.weight * discrepancy, {
      'mdd/discrepancy': discrepancy, 'mdd/disparity': discrepancy, 'mdd/source_ce': source,
      'mdd/coeff': coeff,
      'mdd/source_agreement': ctx.mean(agree['source'],
                                       adversarial.row_weights(ctx.batches['source'])),
      'mdd/target_agreement': ctx.mean(agree['target'],
                                       adversarial.row_weights(ctx.batches['target']))}
