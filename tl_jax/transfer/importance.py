"""Instance-based transfer: importance weights w(x) = p_T(x) / p_S(x) of source examples.

Three estimators of the density ratio on features:
  - a domain classifier: w(x) = P(T|x)/P(S|x) · n_S/n_T (the odds of a probabilistic classifier
    trained to tell target (1) from source (0)); this one also runs inside training, below;
  - KMM (Huang et al. 2007): min_β ½βᵀKβ − κᵀβ, 0 ≤ β ≤ B, |Σβ − n_S| ≤ n_S·ε, κ_i = n_S/n_T ·
    Σ_j k(s_i, t_j), solved by projected gradient;
  - KLIEP (Sugiyama et al. 2008): w(x) = Σ_l α_l k(x, c_l) over target centres c, maximising
    Σ_j log w(t_j) s.t. mean_i w(s_i) = 1, α ≥ 0 (projected gradient ascent).

The objective 'importance_weighting' is the supervised term with the source cross-entropy
weighted by w (self-normalised over the source rows, clipped, no gradient):
  L = L_T + λ · Σ_i w_i CE_i / Σ_i w_i  [+ weight · BCE(domain classifier on stop_grad(features))]
transfer.importance.estimator picks w: 'classifier' (the domain classifier above, trained by the
BCE term, the only case with params), 'kmm' or 'kliep' (re-estimated every step on the stopped
pooled features of the GLOBAL batch: gathered over the data axis, padding rows masked, so the
weights do not depend on the device count). It replaces 'cross_entropy' in transfer.objectives.
Config: transfer.importance.
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
      estimator='classifier',  # one of ESTIMATORS: where the source weights come from
      sigma=0.0,  # KMM/KLIEP Gaussian kernel bandwidth; 0 = median heuristic on each batch
      kmm_steps=300,  # projected-gradient iterations per train step (global batch: 2 x 64 rows)
      kmm_bound=1000.0,  # KMM's upper bound B on each weight
      kliep_steps=300,  # projected-gradient-ascent iterations per train step
      kliep_lr=1e-3,  # KLIEP's step size
      kliep_centres=64,  # kernel centres: the first min(this, global target batch) target rows
  ))


ESTIMATORS = ('classifier', 'kmm', 'kliep')


class ImportanceConfigError(objectives.ObjectiveError):
  """A transfer.importance setting that cannot be used."""


def check_estimator(name: str) -> str:
  """`name` when it is one of ESTIMATORS; one clear error otherwise."""
  if name not in ESTIMATORS:
    raise ImportanceConfigError(f'transfer.importance.estimator {name!r} is unknown; valid: '
                                f'{", ".join(ESTIMATORS)} (configs/importance_digits.py:kmm)')
  return name


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


def _rows(x: jax.Array, w: jax.Array | None) -> jax.Array:
  """w as float32, or 1 per row of x (per device like x under shard_map: loop carries must be)."""
  return jnp.ones_like(x[:, 0], jnp.float32) if w is None else w.astype(jnp.float32)


def median_sigma(x: jax.Array, y: jax.Array, w_x: jax.Array | None = None,
                 w_y: jax.Array | None = None) -> jax.Array:
  """The median heuristic bandwidth over all pairs of the pooled real rows (w = 0: padding)."""
  z = jnp.concatenate([x, y]).astype(jnp.float32)
  real = jnp.concatenate([_rows(x, w_x), _rows(y, w_y)]) > 0
  d = jnp.where(real[:, None] & real[None, :], mmd_lib.sq_distances(z, z), jnp.nan)
  return jnp.sqrt(0.5 * jnp.nanmedian(d) + 1e-12)


def kmm_weights(x_s: jax.Array, x_t: jax.Array, *, sigma: float | jax.Array | None = None,
                bound: float = 1000.0, eps: float | None = None, steps: int = 2000,
                w_s: jax.Array | None = None, w_t: jax.Array | None = None) -> jax.Array:
  """Kernel mean matching weights β of the source rows (mean ≈ 1). w_s / w_t: 1 for a real
  row, 0 for padding (padding rows take no part and get β = 0); shapes stay static."""
  m_s, m_t = _rows(x_s, w_s), _rows(x_t, w_t)
  n_s, n_t = jnp.sum(m_s), jnp.sum(m_t)
  sigma = median_sigma(x_s, x_t, m_s, m_t) if sigma is None else sigma
  eps = (jnp.sqrt(n_s) - 1) / jnp.sqrt(n_s) if eps is None else eps
  k = gaussian_gram(x_s, x_s, sigma) * m_s[:, None] * m_s[None, :] + 1e-6 * jnp.eye(x_s.shape[0])
  kappa = (n_s / n_t) * (gaussian_gram(x_s, x_t, sigma) @ m_t) * m_s
  lr = 1.0 / jnp.linalg.eigvalsh(k)[-1]
  lo, hi = n_s * (1 - eps), n_s * (1 + eps)

  def project(beta):
    beta = jnp.clip(beta, 0.0, bound) * m_s
    total = jnp.sum(beta)
    return jnp.clip(beta * jnp.clip(total, lo, hi) / jnp.maximum(total, 1e-12), 0.0, bound)

  def body(_, beta):
    return project(beta - lr * (k @ beta - kappa))
  return jax.lax.fori_loop(0, steps, body, m_s)


def kliep_fit(x_s: jax.Array, x_t: jax.Array, *, sigma: float | jax.Array | None = None,
              num_centres: int = 100, steps: int = 2000, lr: float = 1e-3,
              w_s: jax.Array | None = None, w_t: jax.Array | None = None):
  """KLIEP: returns w(x) as a function, with centres = the first `num_centres` target rows.
  w_s / w_t: 1 for a real row, 0 for padding (padding rows and centres take no part)."""
  m_s, m_t = _rows(x_s, w_s), _rows(x_t, w_t)
  sigma = median_sigma(x_s, x_t, m_s, m_t) if sigma is None else sigma
  centres, m_c = x_t[:num_centres], m_t[:num_centres]
  a = gaussian_gram(x_t, centres, sigma)  # (n_t, b)
  b = (m_s @ gaussian_gram(x_s, centres, sigma)) / jnp.sum(m_s)  # (b,) mean over the source

  def normalise(alpha):
    alpha = jnp.maximum(alpha, 0.0) * m_c
    return alpha / jnp.maximum(b @ alpha, 1e-12)

  def body(_, alpha):
    grad = a.T @ (m_t / jnp.maximum(a @ alpha, 1e-12))
    alpha = alpha + lr * grad
    alpha = alpha + b * (1.0 - b @ alpha) / (b @ b)
    return normalise(alpha)
  alpha = jax.lax.fori_loop(0, steps, body, normalise(jnp.ones(centres.shape[0], jnp.float32)))
  return lambda x: gaussian_gram(x, centres, sigma) @ alpha


def kliep_weights(x_s: jax.Array, x_t: jax.Array, **kw) -> jax.Array:
  """KLIEP's w at the source rows (0 on padding rows when w_s is given)."""
  return kliep_fit(x_s, x_t, **kw)(x_s) * _rows(x_s, kw.get('w_s'))


# -------------------------------------------------------------------------------------------
# In training: source weights from a domain classifier (trained by its BCE) or from KMM/KLIEP
# on the global batch's stopped features.
# -------------------------------------------------------------------------------------------

def _init(rng: jax.Array, dims: objectives.FeatureDims, config: Any) -> dict[str, Any]:
  cfg = objectives.method_settings(config, 'importance', default_config())
  if check_estimator(cfg.get('estimator', 'classifier')) != 'classifier':
    return {}  # KMM/KLIEP own no params (JointObjective.init_params leaves them out)
  return dann_lib.mlp_init(rng, (dims.feature_dim, *cfg.hidden, 1))


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def batch_ratio(ctx: objectives.Context, f_s: jax.Array, f_t: jax.Array, w_s: jax.Array,
                w_t: jax.Array, cfg: Any) -> jax.Array:
  """KMM or KLIEP weights of this device's source rows, estimated on the global batch (every
  device computes the same global estimate, then keeps its own rows)."""
  g_s, g_t = _gather(f_s, ctx.axis_name), _gather(f_t, ctx.axis_name)
  gw_s, gw_t = _gather(w_s, ctx.axis_name), _gather(w_t, ctx.axis_name)
  sigma = float(cfg.sigma) if cfg.sigma else None
  if cfg.estimator == 'kmm':
    ratio = kmm_weights(g_s, g_t, sigma=sigma, bound=float(cfg.kmm_bound),
                        steps=int(cfg.kmm_steps), w_s=gw_s, w_t=gw_t)
  else:
    ratio = kliep_weights(g_s, g_t, sigma=sigma, num_centres=int(cfg.kliep_centres),
                          steps=int(cfg.kliep_steps), lr=float(cfg.kliep_lr), w_s=gw_s,
                          w_t=gw_t)
  if ctx.axis_name is None:
    return ratio
  n = f_s.shape[0]
  return jax.lax.dynamic_slice_in_dim(ratio, jax.lax.axis_index(ctx.axis_name) * n, n)


def _psum(x: jax.Array, ctx: objectives.Context) -> jax.Array:
  return x if ctx.axis_name is None else jax.lax.psum(x, ctx.axis_name)


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
  cfg = objectives.method_settings(ctx.config, 'importance', default_config())
  estimator = check_estimator(cfg.get('estimator', 'classifier'))
  f_s = jax.lax.stop_gradient(dann_lib.features(ctx, 'source'))
  f_t = jax.lax.stop_gradient(dann_lib.features(ctx, 'target'))
  w_s, w_t = dann_lib.row_weights(ctx.batches['source']), dann_lib.row_weights(
      ctx.batches['target'])
  total = jnp.zeros((), jnp.float32)
  metrics: objectives.Metrics = {}
  if estimator == 'classifier':
    clf = ctx.method_params('importance_weighting')
    logit_s = dann_lib.mlp_apply(clf, f_s).reshape(-1)
    logit_t = dann_lib.mlp_apply(clf, f_t).reshape(-1)
    # dann.domain_bce labels source 1, target 0: flip the sign so the logit is log P(T|x)/P(S|x).
    bce, acc = dann_lib.domain_bce(ctx, -logit_s, -logit_t, w_s, w_t)
    total = cfg.weight * bce
    metrics.update({'importance/domain_loss': bce, 'importance/domain_accuracy': acc})
    ratio = ratio_from_logits(logit_s)
  else:
    ratio = batch_ratio(ctx, f_s, f_t, w_s, w_t, cfg)
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
    weights = self_normalised(ratio, labelled, ctx, cfg.max_weight)
    metrics['source/loss'] = ctx.mean(ce, labelled)
    metrics['source/accuracy'] = ctx.mean(correct, labelled)
    metrics['importance/weighted_source_loss'] = ctx.mean(ce, weights)
    # Over the global batch, so they do not depend on the device count either.
    total_w, total_w2, count = (_psum(jnp.sum(x), ctx) for x in (weights, weights ** 2, labelled))
    metrics['importance/max_weight'] = (jnp.max(weights) if ctx.axis_name is None else
                                        jax.lax.pmax(jnp.max(weights), ctx.axis_name))
    metrics['importance/effective_sample_fraction'] = (
        total_w ** 2 / jnp.maximum(total_w2 * count, 1e-12))
    total = total + ctx.lam * metrics['importance/weighted_source_loss']
  return total, metrics
