"""Instance-based transfer: importance weights w(x) = p_T(x) / p_S(x) of source examples.

Three estimators of the density ratio on features:
  - a domain classifier: w(x) = P(T|x)/P(S|x) · n_S/n_T (the odds of a probabilistic classifier
    trained to tell target (1) from source (0)); this one also runs inside training, below;
  - KMM (Huang et al. 2007): min_β ½βᵀKβ − κᵀβ, 0 ≤ β ≤ B, |Σβ − n_S| ≤ n_S·ε, κ_i = n_S/n_T ·
    Σ_j k(s_i, t_j), solved by projected gradient;
  - KLIEP (Sugiyama et al. 2008): w(x) = Σ_l α_l k(x, c_l) over target centres c, maximising
    Σ_j log w(t_j) s.t. mean_i w(s_i) = 1, α ≥ 0 (projected gradient ascent).

The objective 'importance_weighting' is the supervised term with the source cross-entropy
weighted by the classifier's w (self-normalised over the source rows, clipped, no gradient):
  L = L_T + λ · Σ_i w_i CE_i / Σ_i w_i + weight · BCE(domain classifier on stop_grad(features))
It replaces 'cross_entropy' in transfer.objectives. Config: transfer.importance.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.transfer import dann as dann_lib
from tl_jax.transfer import mmd as mmd_lib
from tl_jax.transfer import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,  # scale of the domain classifier's BCE (it only trains the classifier)
      hidden=(),  # domain classifier hidden widths; () = logistic regression on the features
      max_weight=10.0,  # clip of the self-normalised weights (variance control)
  ))


# -------------------------------------------------------------------------------------------
# Estimators on given features.
# -------------------------------------------------------------------------------------------

def ratio_from_logits(logits: jax.Array, n_source: int | float = 1, n_target: int | float = 1,
                      ) -> jax.Array:
  """p_T/p_S from a domain classifier's logit log P(T|x)/P(S|x), corrected for class sizes."""
  return jnp.exp(logits.astype(jnp.float32)) * (n_source / n_target)


def gaussian_gram(x: jax.Array, y: jax.Array, sigma: float | jax.Array) -> jax.Array:
  return jnp.exp(-mmd_lib.sq_distances(x.astype(jnp.float32), y.astype(jnp.float32))
                 / (2.0 * sigma ** 2))


def median_sigma(x: jax.Array, y: jax.Array) -> jax.Array:
  """The median heuristic bandwidth over all pairs of the pooled rows."""
  z = jnp.concatenate([x, y]).astype(jnp.float32)
  return jnp.sqrt(0.5 * jnp.median(mmd_lib.sq_distances(z, z)) + 1e-12)


def kmm_weights(x_s: jax.Array, x_t: jax.Array, *, sigma: float | None = None,
                bound: float = 1000.0, eps: float | None = None,
                steps: int = 2000) -> jax.Array:
  """Kernel mean matching weights β of the source rows (mean ≈ 1)."""
  n_s, n_t = x_s.shape[0], x_t.shape[0]
  sigma = median_sigma(x_s, x_t) if sigma is None else sigma
  eps = (jnp.sqrt(n_s) - 1) / jnp.sqrt(n_s) if eps is None else eps
  k = gaussian_gram(x_s, x_s, sigma) + 1e-6 * jnp.eye(n_s)
  kappa = (n_s / n_t) * jnp.sum(gaussian_gram(x_s, x_t, sigma), axis=1)
  lr = 1.0 / jnp.linalg.eigvalsh(k)[-1]
  lo, hi = n_s * (1 - eps), n_s * (1 + eps)

  def project(beta):
    beta = jnp.clip(beta, 0.0, bound)
    total = jnp.sum(beta)
    return jnp.clip(beta * jnp.clip(total, lo, hi) / jnp.maximum(total, 1e-12), 0.0, bound)

  def body(_, beta):
    return project(beta - lr * (k @ beta - kappa))
  return jax.lax.fori_loop(0, steps, body, jnp.ones(n_s, jnp.float32))


def kliep_fit(x_s: jax.Array, x_t: jax.Array, *, sigma: float | None = None,
              num_centres: int = 100, steps: int = 2000, lr: float = 1e-3):
  """KLIEP: returns w(x) as a function, with centres = the first `num_centres` target rows."""
  sigma = median_sigma(x_s, x_t) if sigma is None else sigma
  centres = x_t[:num_centres]
  a = gaussian_gram(x_t, centres, sigma)  # (n_t, b)
  b = jnp.mean(gaussian_gram(x_s, centres, sigma), axis=0)  # (b,) mean over the source

  def normalise(alpha):
    alpha = jnp.maximum(alpha, 0.0)
    return alpha / jnp.maximum(b @ alpha, 1e-12)

  def body(_, alpha):
    grad = a.T @ (1.0 / jnp.maximum(a @ alpha, 1e-12))
    alpha = alpha + lr * grad
    alpha = alpha + b * (1.0 - b @ alpha) / (b @ b)
    return normalise(alpha)
  alpha = jax.lax.fori_loop(0, steps, body, normalise(jnp.ones(centres.shape[0], jnp.float32)))
  return lambda x: gaussian_gram(x, centres, sigma) @ alpha


def kliep_weights(x_s: jax.Array, x_t: jax.Array, **kw) -> jax.Array:
  return kliep_fit(x_s, x_t, **kw)(x_s)


# -------------------------------------------------------------------------------------------
# In training: a domain classifier on the (stopped) features weights the source loss.
# -------------------------------------------------------------------------------------------

def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = dann_lib.method_config(config, 'importance', default_config())
  return dann_lib.mlp_init(rng, (dims.feature_dim, *cfg.hidden, 1))


def self_normalised(ratio: jax.Array, w: jax.Array, ctx: objectives.Context,
                    max_weight: float) -> jax.Array:
  """ratio / its weighted global mean over the real rows, clipped; 0 on padding rows."""
  ratio = jax.lax.stop_gradient(ratio)
  mean = ctx.mean(ratio, w)
  if ctx.axis_name is not None:  # ctx.mean is arranged for a later pmean: do it here
    mean = jax.lax.pmean(mean, ctx.axis_name)
  return jnp.minimum(ratio / jnp.maximum(mean, 1e-12), max_weight) * w


@objectives.register('importance_weighting', init=_init)
def importance_weighting(ctx: objectives.Context) -> tuple[jax.Array, objectives.Metrics]:
  cfg = dann_lib.method_config(ctx.config, 'importance', default_config())
  clf = ctx.method_params('importance_weighting')
  f_s = jax.lax.stop_gradient(dann_lib.features(ctx, 'source'))
  f_t = jax.lax.stop_gradient(dann_lib.features(ctx, 'target'))
  w_s, w_t = dann_lib.row_weights(ctx.batches['source']), dann_lib.row_weights(
      ctx.batches['target'])
  logit_s = dann_lib.mlp_apply(clf, f_s).reshape(-1)
  logit_t = dann_lib.mlp_apply(clf, f_t).reshape(-1)
  # dann.domain_bce labels source 1, target 0: flip the sign so the logit is log P(T|x)/P(S|x).
  bce, acc = dann_lib.domain_bce(ctx, -logit_s, -logit_t, w_s, w_t)
  total = cfg.weight * bce
  metrics: objectives.Metrics = {'importance/domain_loss': bce, 'importance/domain_accuracy': acc}
  if ctx.labeled('target'):
    ce, correct = objectives.cross_entropy_terms(ctx.logits('target'),
                                                 ctx.batches['target']['label'])
    w = ctx.weights('target')
    metrics['target/loss'] = ctx.mean(ce, w)
    metrics['target/accuracy'] = ctx.mean(correct, w)
    total = total + metrics['target/loss']
  if ctx.labeled('source'):
    ce, correct = objectives.cross_entropy_terms(ctx.logits('source'),
                                                 ctx.batches['source']['label'])
    labelled = ctx.weights('source')
    weights = self_normalised(ratio_from_logits(logit_s), labelled, ctx, cfg.max_weight)
    metrics['source/loss'] = ctx.mean(ce, labelled)
    metrics['source/accuracy'] = ctx.mean(correct, labelled)
    metrics['importance/weighted_source_loss'] = ctx.mean(ce, weights)
    metrics['importance/max_weight'] = jnp.max(weights)
    metrics['importance/effective_sample_fraction'] = (
        jnp.sum(weights) ** 2 / jnp.maximum(jnp.sum(weights ** 2) * jnp.sum(labelled), 1e-12))
    total = total + ctx.lam * metrics['importance/weighted_source_loss']
  return total, metrics
