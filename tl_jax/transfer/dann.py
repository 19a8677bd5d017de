"""DANN (Ganin & Lempitsky 2015, "Unsupervised domain adaptation by backpropagation").

A domain discriminator D (an MLP on the pooled features, owned by this objective) learns to tell
source (1) from target (0) through a gradient reversal layer, so the same minimisation makes the
features domain-invariant:

  L_dann = weight · ½ (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)),  R = grl.gradient_reversal(·, c)

with the reversal coefficient warmed up from the step, c = coeff·(2/(1+exp(−γp))−1), p = step /
train.num_steps (the paper's schedule, lambdas.dann). Config: transfer.dann (default_config()).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from tl_jax.transfer import grl
from tl_jax.transfer import lambdas
from tl_jax.transfer import objectives

SOURCE, TARGET = 1.0, 0.0  # domain labels of the discriminator


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


# -------------------------------------------------------------------------------------------
# A small MLP in plain jnp (discriminators and adversarial heads of the DA methods).
# -------------------------------------------------------------------------------------------

def mlp_init(rng: jax.Array, sizes: Sequence[int]) -> dict[str, Any]:
  """{'layer_i': {'kernel', 'bias'}} for widths sizes[0] -> ... -> sizes[-1] (He init)."""
  params = {}
  for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    kernel = jax.random.normal(jax.random.fold_in(rng, i), (n_in, n_out)) * jnp.sqrt(2.0 / n_in)
    params[f'layer_{i}'] = {'kernel': kernel.astype(jnp.float32),
                            'bias': jnp.zeros((n_out,), jnp.float32)}
  return params


def mlp_apply(params: Mapping[str, Any], x: jax.Array) -> jax.Array:
  """ReLU between layers, linear output."""
  n = len(params)
  x = x.astype(jnp.float32)
  for i in range(n):
    layer = params[f'layer_{i}']
    x = x @ layer['kernel'] + layer['bias']
    if i < n - 1:
      x = jax.nn.relu(x)
  return x


# -------------------------------------------------------------------------------------------
# Pieces shared by the adversarial methods.
# -------------------------------------------------------------------------------------------

def row_weights(batch: Mapping[str, jax.Array]) -> jax.Array:
  """1 for every real row (labelled or not), 0 for padding."""
  if 'mask' in batch:
    return batch['mask'].astype(jnp.float32)
  first = next(iter(batch.values()))
  return jnp.ones(first.shape[:1], jnp.float32)


def features(ctx: objectives.Context, domain: str) -> jax.Array:
  if domain not in ctx.outputs:
    raise objectives.ObjectiveError(
        f'domain adaptation needs a source and a target batch; set data.source.name (and '
        f'data.target.labeled=False for unsupervised DA)')
  return ctx.outputs[domain].pooled.astype(jnp.float32)


def warmup_coeff(ctx: objectives.Context, coeff: float, gamma: float) -> jax.Array:
  """coeff·(2/(1+exp(−γp))−1), p = step / train.num_steps."""
  return lambdas.dann(coeff, gamma, int(ctx.config.train.num_steps))(ctx.step)


def domain_bce(ctx: objectives.Context, logits_s: jax.Array, logits_t: jax.Array,
               w_s: jax.Array, w_t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(½(BCE_s + BCE_t), discriminator accuracy) over the global batch."""
  logits_s, logits_t = logits_s.reshape(-1), logits_t.reshape(-1)
  bce_s = optax.sigmoid_binary_cross_entropy(logits_s, jnp.full_like(logits_s, SOURCE))
  bce_t = optax.sigmoid_binary_cross_entropy(logits_t, jnp.full_like(logits_t, TARGET))
  loss = 0.5 * (ctx.mean(bce_s, w_s) + ctx.mean(bce_t, w_t))
  acc = 0.5 * (ctx.mean((logits_s > 0).astype(jnp.float32), w_s)
               + ctx.mean((logits_t <= 0).astype(jnp.float32), w_t))
  return loss, acc


def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = objectives.method_settings(config, 'dann', default_config())
  return mlp_init(rng, (dims.feature_dim, *cfg.hidden, 1))


@objectives.register('dann', init=_init)
def dann(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = objectives.method_settings(ctx.config, 'dann', default_config())
  coeff = warmup_coeff(ctx, cfg.coeff, cfg.gamma)
  disc = ctx.method_params('dann')
  f_s, f_t = features(ctx, 'source'), features(ctx, 'target')
  d_s = mlp_apply(disc, grl.gradient_reversal(f_s, coeff))
  d_t = mlp_apply(disc, grl.gradient_reversal(f_t, coeff))
  loss, acc = domain_bce(ctx, d_s, d_t, row_weights(ctx.batches['source']),
                         row_weights(ctx.batches['target']))
  return cfg.weight * loss, {'dann/domain_loss': loss, 'dann/domain_accuracy': acc,
                             'dann/coeff': coeff}
