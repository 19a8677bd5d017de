"""Multi-task learning: several heads on one backbone, one supervised loss per task.

A task is a domain stream with its own head (`data.<domain>.head`, e.g. target 'topic' with 5
classes and source 'digit' with 10): each gets softmax cross-entropy on its own head's logits,
weighted by `transfer.multitask.weights.<domain>`, all in the same step:

  L = Σ_task w_task · CE_task

Use it instead of 'cross_entropy' (whose fixed weights are 1 for the target and λ(step) for
the source). Config: `config.transfer.multitask = multitask.default_config()`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      # Per-task loss weights, by the domain that feeds the task.
      weights=mlc.ConfigDict(dict(target=1.0, source=1.0)),
  ))


def settings(ctx: objectives.Context) -> mlc.ConfigDict:
  return objectives.method_settings(ctx.config, 'multitask', example='configs/multitask_bbc.py')


@objectives.register('multitask')
def multitask(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  weights = settings(ctx).weights
  total = jnp.zeros((), jnp.float32)
  metrics: objectives.Metrics = {}
  for domain in objectives.DOMAINS:
    if domain not in ctx.outputs or not ctx.labeled(domain):
      continue
    batch = ctx.batches[domain]
    ce, correct = objectives.cross_entropy_terms(ctx.logits(domain), batch['label'])
    if 'label_probs' in batch:
      ce = objectives.soft_cross_entropy(ctx.logits(domain), batch['label_probs'])
    w = ctx.weights(domain)
    loss = ctx.mean(ce, w)
    metrics[f'{domain}/loss'] = loss
    metrics[f'{domain}/accuracy'] = ctx.mean(correct, w)
    total = total + float(weights[domain]) * loss
  return total, metrics
