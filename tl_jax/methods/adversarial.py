"""What the domain-adaptation methods share: a small MLP (discriminators, adversarial heads), the
pooled features of a domain, the padding mask, the warmed-up reversal coefficient, the domain BCE.

No objective is registered here; dann.py, cdan.py, mdd.py, coral.py, mmd.py and importance.py
build on these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tl_jax.methods import lambdas
from tl_jax.methods import objectives

SOURCE, TARGET = 1.0, 0.0  # domain labels of the discriminator


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


def pooled_features(ctx: objectives.Context, domain: str) -> jax.Array:
  """The pooled features of `domain`'s batch in float32; one error when that domain is absent."""
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
