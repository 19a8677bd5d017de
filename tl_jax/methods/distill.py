"""Distillation from a frozen teacher: the pretrained model itself (the params training started
from, `ctx.pretrained`), run with the same module in eval mode, so fine-tuning keeps what the
pretrained backbone knew.

  'rkd'            relational KD (Park et al. 2019): Huber loss between the teacher's and the
                   student's pairwise-distance relations (each normalised by its mean distance)
                   and angle relations (cosines of the angle at j in every triplet i, j, k), on
                   the pooled features of the batch: w_d · L_dist + w_a · L_angle.
  'hidden_distill' hidden-state distillation: mean over the chosen layers of the masked mean
                   squared error between student and teacher hidden states.
  'attention_distill' attention distillation (MiniLM's self-attention transfer, Wang et al.
                   2020): KL(teacher ‖ student) between the attention distributions of every
                   head and query token, averaged over the valid tokens and the chosen layers.

Relations are between the examples of each device's local batch; rows with mask False are left
out.
Config: `config.transfer.distill = distill.default_config()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      domain='target',  # whose batch the teacher sees
      distance_weight=1.0,  # RKD λ_D (the paper: 1)
      angle_weight=2.0,  # RKD λ_A (the paper: 2)
      rkd_weight=1.0,  # the whole RKD term
      hidden_weight=1.0,  # the whole hidden-state term
      attention_weight=1.0,  # the whole attention term
      layers=(),  # hidden_states indices to match (0 = embeddings); () = every layer
      attention_layers=(),  # encoder layers whose attention to match (0 = first); () = all
  ))


def settings(ctx: objectives.Context) -> mlc.ConfigDict:
  return objectives.method_settings(ctx.config, 'distill', example='configs/distill_bbc.py')


def teacher_outputs(ctx: objectives.Context, domain: str) -> Any:
  """The pretrained model on `domain`'s batch, with no gradient into anything."""
  if ctx.forward is None or ctx.pretrained is None:
    raise objectives.ObjectiveError('distillation needs the train step to pass the model '
                                    '(ctx.forward) and the pretrained params')
  teacher = flax.traverse_util.unflatten_dict(jax.lax.stop_gradient(dict(ctx.pretrained)), sep='/')
  return jax.tree.map(jax.lax.stop_gradient, ctx.forward(teacher, ctx.batches[domain]))


# -------------------------------------------------------------------------------------------
# Relational KD.
# -------------------------------------------------------------------------------------------

def huber(x: jax.Array, delta: float = 1.0) -> jax.Array:
  """Elementwise Huber (smooth L1 for delta=1), as the paper's l_δ."""
  a = jnp.abs(x)
  return jnp.where(a < delta, 0.5 * jnp.square(x), delta * (a - 0.5 * delta))


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def pairwise_distances(x: jax.Array) -> jax.Array:
  """(B, B) Euclidean distances; the sqrt is kept off exact zeros so its gradient is finite."""
  sq = jnp.sum(jnp.square(x[:, None, :] - x[None, :, :]), -1)
  return jnp.sqrt(jnp.maximum(sq, 1e-12))


def distance_relations(x: jax.Array, valid: jax.Array) -> jax.Array:
  """ψ_D: distances divided by their mean over the valid pairs i ≠ j."""
  d = pairwise_distances(x)
  mu = _weighted_mean(d, _pair_weights(valid))
  return d / jnp.maximum(mu, 1e-12)


def angle_relations(x: jax.Array) -> jax.Array:
  """ψ_A[i, j, k] = <e_ji, e_jk>, the cosine of the angle at x_j, e_ji = unit(x_i − x_j)."""
  diff = x[None, :, :] - x[:, None, :]  # [j, i] = x_i − x_j
  norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(diff), -1, keepdims=True), 1e-12))
  e = diff / norm  # zero (not NaN, nor a NaN gradient) on the diagonal
  return jnp.einsum('jid,jkd->ijk', e, e)


def _pair_weights(valid: jax.Array) -> jax.Array:
  v = valid.astype(jnp.float32)
  return v[:, None] * v[None, :] * (1.0 - jnp.eye(v.shape[0]))


def _triplet_weights(valid: jax.Array) -> jax.Array:
  v = valid.astype(jnp.float32)
  n = v.shape[0]
  distinct = ((1 - jnp.eye(n))[:, :, None] * (1 - jnp.eye(n))[None, :, :]
              * (1 - jnp.eye(n))[:, None, :])  # i≠j, j≠k, i≠k
  return v[:, None, None] * v[None, :, None] * v[None, None, :] * distinct


def rkd_losses(student: jax.Array, teacher: jax.Array,
               valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(distance loss, angle loss): mean Huber over valid pairs / triplets of distinct rows."""
  student = student.astype(jnp.float32)
  teacher = jax.lax.stop_gradient(teacher.astype(jnp.float32))
  if valid is None:
    valid = jnp.ones(student.shape[:1], bool)
  dist = _weighted_mean(huber(distance_relations(student, valid)
                              - distance_relations(teacher, valid)), _pair_weights(valid))
  angle = _weighted_mean(huber(angle_relations(student) - angle_relations(teacher)),
                         _triplet_weights(valid))
  return dist, angle


@objectives.register('rkd', needs=('pretrained',))
def rkd(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  batch = ctx.batches[cfg.domain]
  valid = batch['mask'] if 'mask' in batch else jnp.ones(ctx.outputs[cfg.domain].pooled.shape[:1],
                                                         bool)
  dist, angle = rkd_losses(ctx.outputs[cfg.domain].pooled,
                           teacher_outputs(ctx, cfg.domain).pooled, valid)
  value = float(cfg.rkd_weight) * (float(cfg.distance_weight) * dist
                                   + float(cfg.angle_weight) * angle)
  return value, {'rkd/distance': dist, 'rkd/angle': angle}


# -------------------------------------------------------------------------------------------
# Hidden-state distillation.
# -------------------------------------------------------------------------------------------

def hidden_state_mse(student: tuple[jax.Array, ...], teacher: tuple[jax.Array, ...],
                     token_mask: jax.Array | None, layers=()) -> jax.Array:
  """Mean over `layers` (all when empty) of the token-masked mean squared error (B, L, D)."""
  chosen = list(layers) or list(range(len(student)))
  total = jnp.zeros((), jnp.float32)
  for i in chosen:
    s = student[i].astype(jnp.float32)
    t = jax.lax.stop_gradient(teacher[i].astype(jnp.float32))
    err = jnp.mean(jnp.square(s - t), -1)  # (B, L)
    w = jnp.ones(err.shape, jnp.float32) if token_mask is None else token_mask.astype(
        jnp.float32).reshape(err.shape)
    total = total + _weighted_mean(err, w)
  return total / len(chosen)


def _token_mask(batch: Mapping[str, jax.Array], hidden: jax.Array) -> jax.Array | None:
  rows = batch['mask'].astype(jnp.float32) if 'mask' in batch else None
  tokens = batch.get('attention_mask')
  if tokens is not None and tokens.shape == hidden.shape[:2]:
    m = tokens.astype(jnp.float32)
  else:  # images: every patch counts
    m = jnp.ones(hidden.shape[:2], jnp.float32)
  return m if rows is None else m * rows[:, None]


def chosen_layers(cfg: mlc.ConfigDict, key: str, n: int, what: str) -> tuple[int, ...]:
  """cfg[key] as ints, each checked against the n per-layer outputs the model returned."""
  layers = tuple(int(i) for i in cfg[key])
  bad = [i for i in layers if not 0 <= i < n]
  if bad:
    raise objectives.ObjectiveError(f'transfer.distill.{key} {list(bad)} out of range: the model '
                                    f'has {n} {what} (0 .. {n - 1})')
  return layers


@objectives.register('hidden_distill', needs=('pretrained', 'hidden_states'))
def hidden_distill(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  student = ctx.outputs[cfg.domain].hidden_states
  layers = chosen_layers(cfg, 'layers', len(student), 'hidden states (0 = embeddings)')
  teacher = teacher_outputs(ctx, cfg.domain).hidden_states
  mse = hidden_state_mse(student, teacher, _token_mask(ctx.batches[cfg.domain], student[0]),
                         layers)
  return float(cfg.hidden_weight) * mse, {'distill/hidden_mse': mse}


# -------------------------------------------------------------------------------------------
# Attention distillation.
# -------------------------------------------------------------------------------------------

def attention_kl(student: tuple[jax.Array, ...], teacher: tuple[jax.Array, ...],
                 token_mask: jax.Array | None, layers=()) -> jax.Array:
  """Mean over `layers` (all when empty) of KL(teacher ‖ student) per (head, query) row of the
  (B, H, L, L) attention probabilities, averaged over the valid query tokens. Masked keys carry
  zero teacher probability, so they add nothing."""
  chosen = list(layers) or list(range(len(student)))
  total = jnp.zeros((), jnp.float32)
  for i in chosen:
    s = student[i].astype(jnp.float32)
    t = jax.lax.stop_gradient(teacher[i].astype(jnp.float32))
    log_ratio = jnp.log(jnp.maximum(t, 1e-30)) - jnp.log(jnp.maximum(s, 1e-30))
    kl = jnp.sum(jnp.where(t > 0, t * log_ratio, 0.0), -1).mean(1)  # (B, L): mean over heads
    w = jnp.ones(kl.shape, jnp.float32) if token_mask is None else token_mask.astype(
        jnp.float32).reshape(kl.shape)
    total = total + _weighted_mean(kl, w)
  return total / len(chosen)


@objectives.register('attention_distill', needs=('pretrained', 'attentions'))
def attention_distill(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = settings(ctx)
  student = ctx.outputs[cfg.domain].attentions
  layers = chosen_layers(cfg, 'attention_layers', len(student), 'layers')
  teacher = teacher_outputs(ctx, cfg.domain).attentions
  hidden = ctx.outputs[cfg.domain].last_hidden_state
  kl = attention_kl(student, teacher, _token_mask(ctx.batches[cfg.domain], hidden), layers)
  return float(cfg.attention_weight) * kl, {'distill/attention_kl': kl}
