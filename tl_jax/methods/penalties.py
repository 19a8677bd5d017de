"""L1 / L2 penalties on the trainable weights (against overfitting a small target set).

  'l1':  l1 · Σ |w|          'l2':  l2 / 2 · Σ w²

over the trainable leaves, leaving out biases and LayerNorm scales by default (`exclude`, a
regex over '/'-joined names; '' counts every leaf). Unlike optimizer.weight_decay (decoupled,
AdamW), these terms are part of the loss, so Adam rescales their gradients like any other.
Config: `config.transfer.penalties = penalties.default_config()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      l1=0.0,  # weight of Σ|w| in objective 'l1'
      l2=0.0,  # weight of ½Σw² in objective 'l2'
      exclude=r'.*/(bias|scale)',  # leaves left out (biases, LayerNorm scales); '' = none
  ))


def settings(ctx: objectives.Context) -> mlc.ConfigDict:
  return objectives.method_settings(ctx.config, 'penalties', example='configs/regularized.py')


def penalized(trainable: Mapping[str, jax.Array], exclude: str) -> dict[str, jax.Array]:
  """The trainable leaves the penalties count (names not matching `exclude`)."""
  pattern = re.compile(exclude) if exclude else None
  return {n: w for n, w in trainable.items() if pattern is None or not pattern.fullmatch(n)}


def l1_norm(leaves: Mapping[str, jax.Array]) -> jax.Array:
  return sum((jnp.sum(jnp.abs(w.astype(jnp.float32))) for w in leaves.values()),
             jnp.zeros((), jnp.float32))


def l2_sq_norm(leaves: Mapping[str, jax.Array]) -> jax.Array:
  return sum((jnp.sum(jnp.square(w.astype(jnp.float32))) for w in leaves.values()),
             jnp.zeros((), jnp.float32))


@objectives.register('l1')
def l1(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  norm = l1_norm(penalized(ctx.trainable, cfg.exclude))
  return float(cfg.l1) * norm, {'penalties/l1_norm': norm}


@objectives.register('l2')
def l2(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  sq = l2_sq_norm(penalized(ctx.trainable, cfg.exclude))
  return 0.5 * float(cfg.l2) * sq, {'penalties/l2_sq_norm': sq}
