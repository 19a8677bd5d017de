"""Instance-based transfer: importance weights w(x) = p_T(x) / p_S(x) of source examples.

Three estimators of the density ratio on features:
  - a domain classifier: w(x) = P(T|x)/P(S|x) · n_S/n_T (the odds of a probabilistic classifier
    trained to tell target (1) from source (0)); this one also runs inside training, below;
  - KMM (Huang et al. 2007): min_β ½βᵀ(K + ρI)β − κᵀβ (ρ: a small ridge, kmm_ridge), 0 ≤ β ≤ B,
    |Σβ − n_S| ≤ n_S·ε, κ_i = n_S/n_T · Σ_j k(s_i, t_j), solved to a certified gap
    (kmm_fit: exact projection + Newton on the face);
  - KLIEP (Sugiyama et al. 2008): w(x) = Σ_l α_l k(x, c_l) over target centres c, maximising
    Σ_j log w(t_j) s.t. mean_i w(s_i) = 1, α ≥ 0, solved to a certified gap (kliep_fit: exact
    weighted-simplex projection + Newton on the face), not by the paper's ascent-and-rescale
    iteration, which is no projection and stalls 10-45 % (in w) short of the optimum; a small
    −ρ/2·‖b∘α‖² (kliep_ridge) makes the maximiser unique.

The objective 'importance_weighting' is the supervised term with the source cross-entropy
weighted by w (self-normalised over the source rows, clipped, no gradient):
  L = L_T + λ · Σ_i w_i CE_i / Σ_i w_i  [+ weight · BCE(domain classifier on stop_grad(features))]
transfer.importance.estimator picks w: 'classifier' (the domain classifier above, trained by the
BCE term, the only case with params), 'kmm' or 'kliep' (re-estimated every step on the stopped
pooled features of the GLOBAL batch: gathered over the data axis, padding rows masked, so the
weights do not depend on the device count); the solver's certified residual is logged as
importance/kmm_residual or importance/kliep_gap (with importance/*_iterations). It replaces
'cross_entropy' in transfer.objectives.
Config: transfer.importance.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc

from tl_jax.methods import adversarial
from tl_jax.methods import objectives


def default_config() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      weight=1.0,  # scale of the domain classifier's BCE (it only trains the classifier)
      hidden=(),  # domain classifier hidden widths; () = logistic regression on the features
      max_weight=10.0,  # clip of the self-normalised weights (variance control)
      estimator='classifier',  # one of ESTIMATORS: where the source weights come from
      sigma=0.0,  # KMM/KLIEP Gaussian kernel bandwidth; 0 = median heuristic on each batch
      kmm_steps=300,  # KMM solver: at most this many iterations per train step ...
      kmm_tol=1e-6,  # ... or until the certified relative objective gap is below this
      kmm_bound=1000.0,  # KMM's upper bound B on each weight
      kmm_ridge=1e-2,  # KMM: K + this·mean diag(K)·I, so the QP has one optimum (kmm_fit)
      kliep_steps=300,  # KLIEP solver: at most this many iterations per train step ...
      kliep_tol=1e-5,  # ... or until the certified gap f* - f (nats) is below this
      kliep_centres=64,  # kernel centres: the first min(this, global target batch) target rows
      kliep_ridge=1e-3,  # KLIEP: − this/2·Σ(b_l α_l)², so the maximiser is unique (kliep_fit)
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


def sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """||x_i − y_j||² from the differences, not mmd's ‖x‖² + ‖y‖² − 2x·y: that form's matmul is
  rounded differently (FMA, order) by differently fused programs, and the ridged solvers below
  amplify an ulp in the kernel ~1e5-fold (cond ≈ 1/ridge): the 1- and 8-device weights must
  agree. Differences are also exact for equal rows (no cancellation). (n, m, d) memory."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  return jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), -1)


def gaussian_gram(x: jax.Array, y: jax.Array, sigma: float | jax.Array) -> jax.Array:
  # × a scalar reciprocal, not ÷: XLA turns a division by a broadcast scalar into a multiply by
  # its reciprocal in some fusions only, an ulp apart from the true quotient.
  return jnp.exp(-sq_distances(x, y) * (0.5 / jnp.square(sigma)))


def _rows(x: jax.Array, w: jax.Array | None) -> jax.Array:
  """w as float32, or 1 per row of x (per device like x under shard_map: loop carries must be)."""
  return jnp.ones_like(x[:, 0], jnp.float32) if w is None else w.astype(jnp.float32)


def median_sigma(x: jax.Array, y: jax.Array, w_x: jax.Array | None = None,
                 w_y: jax.Array | None = None) -> jax.Array:
  """The median heuristic bandwidth over all pairs of the pooled real rows (w = 0: padding)."""
  z = jnp.concatenate([x, y]).astype(jnp.float32)
  real = jnp.concatenate([_rows(x, w_x), _rows(y, w_y)]) > 0
  d = jnp.where(real[:, None] & real[None, :], sq_distances(z, z), jnp.nan)
  return jnp.sqrt(0.5 * jnp.nanmedian(d) + 1e-12)


def _face_newton(hess: jax.Array, grad: jax.Array, free: jax.Array, c: jax.Array,
                 constrained: jax.Array, ridge: float) -> jax.Array:
  """The Newton direction of a concave objective on a face: d maximising gᵀd − ½dᵀHd over
  {d_i = 0 off `free`, cᵀd = 0 when `constrained`}, H = `hess` (minus the Hessian, PSD) plus
  `ridge`·max diag on the free block (float32: kernel Hessians are near singular)."""
  scale = jnp.max(jnp.where(free, jnp.diagonal(hess), 0.0))
  m = (jnp.where(free[:, None] & free[None, :], hess, 0.0)
       + jnp.diag(jnp.where(free, ridge * scale + 1e-30, 1.0)))
  c = jnp.where(free, c, 0.0)
  u, v = jnp.linalg.solve(m, jnp.stack([jnp.where(free, grad, 0.0), c], 1)).T
  nu = jnp.where(constrained, (c @ u) / jnp.where(c @ v > 0, c @ v, 1.0), 0.0)
  return jnp.where(free, u - nu * v, 0.0)


def _max_step(x: jax.Array, d: jax.Array, free: jax.Array, upper: float | jax.Array = jnp.inf,
              ) -> jax.Array:
  """The largest s ≤ 1 keeping x + s·d inside [0, upper] on the free entries (ratio test)."""
  to_lo = jnp.where(free & (d < 0), x / jnp.where(d < 0, -d, 1.0), jnp.inf)
  to_hi = jnp.where(free & (d > 0), (upper - x) / jnp.where(d > 0, d, 1.0), jnp.inf)
  return jnp.minimum(1.0, jnp.minimum(jnp.min(to_lo), jnp.min(to_hi)))


def project_box_slab(y: jax.Array, bound: float | jax.Array, lo: jax.Array, hi: jax.Array,
                     real: jax.Array) -> jax.Array:
  """The Euclidean projection of y onto KMM's feasible set {0 ≤ β ≤ B, lo ≤ Σβ ≤ hi, β = 0 where
  not real}. Exact: β = clip(y − μ, 0, B), μ = 0 when that total is already in [lo, hi], else the
  root of the piecewise-linear total, found between its breakpoints {y_i, y_i − B}."""
  def total(mu):
    return jnp.sum(jnp.where(real, jnp.clip(y - mu, 0.0, bound), 0.0), -1)
  target = jnp.clip(total(0.0), lo, hi)
  top = jnp.max(jnp.where(real, y, -jnp.inf))
  pts = jnp.sort(jnp.where(jnp.concatenate([real, real]),
                           jnp.concatenate([y - bound, y]), top))
  s = total(pts[:, None])  # non-increasing along pts
  k = jnp.clip(jnp.sum(s >= target) - 1, 0, pts.shape[0] - 2)
  mu = pts[k] + (s[k] - target) * (pts[k + 1] - pts[k]) / jnp.maximum(s[k] - s[k + 1], 1e-30)
  mu = jnp.where(total(0.0) == target, 0.0, mu)
  return jnp.where(real, jnp.clip(y - mu, 0.0, bound), 0.0)


class KmmFit(NamedTuple):
  beta: jax.Array  # (n_s,) weights, 0 on padding rows
  residual: jax.Array  # certified relative objective gap: (q(β) − q*) / |q(β)| ≤ this
  iterations: jax.Array


def kmm_fit(x_s: jax.Array, x_t: jax.Array, *, sigma: float | jax.Array | None = None,
            bound: float = 1000.0, eps: float | None = None, ridge: float = 1e-2,
            steps: int = 300, tol: float = 1e-6, w_s: jax.Array | None = None,
            w_t: jax.Array | None = None,
            ) -> KmmFit:
  """KMM's QP min_β q(β) = ½βᵀ(K + ρ·mean diag(K)·I)β − κᵀβ over 0 ≤ β ≤ B, |Σβ − n_S| ≤
  n_S·ε, ρ = `ridge` (transfer.importance.kmm_ridge). Why the ridge: a Gaussian Gram on a batch
  is numerically rank-deficient (128 1-D rows: most eigenvalues below float32's ulp), so without
  it the optimum is a flat, non-unique valley the solver does not reach in 300 steps, and an ulp
  of difference in K (1 vs 8 devices) picks another point of it. With a ridge the QP is strongly
  convex and the active-set Newton finishes in ~6 iterations (residual 5e-7); the default 1e-2
  because at 1e-3 (condition ~1e5) an ulp of σ still moved β by 1.5e-2, at 1e-1 by 1.5e-4. Solved to `tol` in
  the certified relative gap or `steps` iterations, whichever first.
  Each iteration: one projected-gradient step (step 1/λ_max(K), exact projection, so q never
  rises and the iterates converge to the optimum) then a Newton step on the face it lands on
  (free rows, plus Σβ = lo/hi when that bound is hit), cut at the face's edge and kept only if
  q drops: gradient projection finds the active set, Newton finishes on it (Moré & Toraldo's
  GPCG scheme with a direct solve; K is at most a few hundred rows here). The residual is the
  Frank-Wolfe gap max_z ∇q(β)ᵀ(β − z) over the feasible set, an upper bound on q(β) − q*.
  w_s / w_t: 1 for a real row, 0 for padding (padding rows take no part and get β = 0)."""
  m_s, m_t = _rows(x_s, w_s), _rows(x_t, w_t)
  real = m_s > 0
  n_s, n_t = jnp.sum(m_s), jnp.sum(m_t)
  sigma = median_sigma(x_s, x_t, m_s, m_t) if sigma is None else sigma
  eps = (jnp.sqrt(n_s) - 1) / jnp.sqrt(n_s) if eps is None else eps
  k = gaussian_gram(x_s, x_s, sigma) * m_s[:, None] * m_s[None, :]
  k = k + ridge * (jnp.sum(jnp.diagonal(k)) / n_s) * jnp.eye(x_s.shape[0])
  kappa = (n_s / n_t) * (gaussian_gram(x_s, x_t, sigma) @ m_t) * m_s
  lr = 1.0 / jnp.linalg.eigvalsh(k)[-1]
  lo, hi = n_s * (1 - eps), n_s * (1 + eps)
  project = lambda y: project_box_slab(y, bound, lo, hi, real)
  q = lambda beta: 0.5 * beta @ (k @ beta) - kappa @ beta

  def residual(beta):
    grad = k @ beta - kappa  # linear minimisation over the feasible set: fill the most negative
    order = jnp.argsort(jnp.where(real, grad, jnp.inf))  # gradients up to hi, the rest up to lo
    g = grad[order]
    cap = jnp.where(g < 0, hi, lo) - bound * jnp.arange(g.shape[0])
    z = jnp.where(real[order], jnp.clip(cap, 0.0, bound), 0.0)
    gap = grad @ beta - jnp.where(real[order], g, 0.0) @ z
    return jnp.maximum(gap, 0.0) / jnp.maximum(jnp.abs(q(beta)), 1e-12)

  def body(state):
    it, beta, _ = state
    z = project(beta - lr * (k @ beta - kappa))
    total = jnp.sum(z)
    free = real & (z > 0) & (z < bound)
    on_slab = (total >= hi * (1 - 1e-6)) | (total <= lo * (1 + 1e-6))
    d = _face_newton(k, kappa - k @ z, free, m_s, on_slab, 0.0)
    ones = jnp.sum(d)
    to_slab = jnp.where(on_slab, jnp.inf, jnp.where(ones > 0, (hi - total) / jnp.where(
        ones > 0, ones, 1.0), jnp.where(ones < 0, (lo - total) / jnp.where(ones < 0, ones, 1.0),
                                        jnp.inf)))
    cand = project(z + jnp.minimum(_max_step(z, d, free, bound), to_slab) * d)
    beta = jnp.where(q(cand) <= q(z), cand, z)
    return it + 1, beta, residual(beta)

  beta0 = project(m_s)
  it, beta, res = jax.lax.while_loop(lambda s: (s[0] < steps) & (s[2] > tol), body,
                                     (jnp.int32(0), beta0, residual(beta0)))
  return KmmFit(beta, res, it)


def kmm_weights(x_s: jax.Array, x_t: jax.Array, **kw) -> jax.Array:
  """Kernel mean matching weights β of the source rows (mean ≈ 1; see kmm_fit)."""
  return kmm_fit(x_s, x_t, **kw).beta


def project_weighted_simplex(y: jax.Array, b: jax.Array, real: jax.Array) -> jax.Array:
  """The Euclidean projection argmin_α ‖α − y‖² over {α ≥ 0, bᵀα = 1, α = 0 where not real},
  b > 0 on the real entries. Exact and O(n log n): α = max(y − λb, 0), and with the entries
  sorted by y_i/b_i (descending), λ = (Σ_{i≤k} b_i y_i − 1) / Σ_{i≤k} b_i² for the largest k
  whose own entry stays positive (the weighted form of the sort-based simplex projection)."""
  b = jnp.where(real, b, 1.0)
  ratio = jnp.where(real, y / b, -jnp.inf)
  order = jnp.argsort(-ratio)
  ys, bs, rs, ms = y[order], b[order], ratio[order], real[order]
  lam = ((jnp.cumsum(jnp.where(ms, bs * ys, 0.0)) - 1.0)
         / jnp.maximum(jnp.cumsum(jnp.where(ms, bs * bs, 0.0)), 1e-30))
  k = jnp.max(jnp.where(ms & (rs > lam), jnp.arange(y.shape[0]), 0))  # entry 0 always qualifies
  return jnp.where(real, jnp.maximum(y - lam[k] * b, 0.0), 0.0)


class KliepFit(NamedTuple):
  """KLIEP's fitted ratio w(x) = Σ_l α_l k(x, c_l); call it on rows x."""
  alpha: jax.Array  # (centres,), 0 on padding centres
  centres: jax.Array
  sigma: jax.Array
  gap: jax.Array  # certified: F* − F(α) ≤ gap (F = mean log w over the target rows − ridge)
  iterations: jax.Array

  def __call__(self, x: jax.Array) -> jax.Array:
    return gaussian_gram(x, self.centres, self.sigma) @ self.alpha


def kliep_fit(x_s: jax.Array, x_t: jax.Array, *, sigma: float | jax.Array | None = None,
              num_centres: int = 100, ridge: float = 1e-3, steps: int = 100,
              tol: float = 1e-6, w_s: jax.Array | None = None, w_t: jax.Array | None = None,
              ) -> KliepFit:
  """KLIEP, solved: max_α F(α) = mean_j log (Aα)_j − ρ/2·Σ_l (b_l α_l)² over {α ≥ 0, bᵀα = 1},
  A_jl = k(t_j, c_l), b_l = mean_i k(s_i, c_l), centres c = the first `num_centres` target rows,
  ρ = `ridge` (transfer.importance.kliep_ridge). Why ρ: with as many centres as rows the kernel
  columns are near-collinear, the log-likelihood is flat along them and its maximiser not unique,
  so the solver wandered (300 steps, gap 2e-2) and 1 vs 8 devices ended 0.1 apart in w. The
  penalty, in the scale-free u_l = b_l α_l (a point of the simplex: ≤ ρ/2 nats), makes F strongly
  concave; at ρ = 1e-3 it converges in ~80-120 iterations on that problem.

  The paper's ascent-then-rescale iteration is not a projection onto that set and stalls short
  of the optimum, so: each iteration takes a projected-gradient step (backtracking line search,
  the exact weighted-simplex projection above: monotone, converges to the optimum of this
  concave problem), then a damped Newton step on the face it lands on (support of α, bᵀd = 0),
  cut at the face's edge and line-searched, because plain gradient steps crawl along the
  near-collinear kernel columns (thousands of steps for 1e-5 on 1-D data). Frank-Wolfe and
  exponentiated gradient were rejected for the same reason: sublinear, and the optimum is
  sparse. Stops at `steps` iterations or when the certified gap ≤ `tol`: the Frank-Wolfe gap
  F* − F(α) ≤ max_l ∇F_l/b_l − ∇Fᵀα (F concave; the vertices of the set are e_l/b_l), 0 exactly
  at the KKT point (∇F_l = λ b_l on the support, ≤ λ b_l off it).
  w_s / w_t: 1 for a real row, 0 for padding (padding rows and centres take no part)."""
  m_s, m_t = _rows(x_s, w_s), _rows(x_t, w_t)
  sigma = median_sigma(x_s, x_t, m_s, m_t) if sigma is None else jnp.float32(sigma)
  centres, real = x_t[:num_centres], m_t[:num_centres] > 0
  a = gaussian_gram(x_t, centres, sigma)  # (n_t, centres)
  # Arrays are scaled by reciprocals, not divided by scalars (see gaussian_gram).
  b = (m_s @ gaussian_gram(x_s, centres, sigma)) * (1.0 / jnp.sum(m_s))  # mean over the source
  b = jnp.where(real, jnp.maximum(b, 1e-30), 0.0)
  target, inv_nt = m_t > 0, 1.0 / jnp.sum(m_t)
  project = lambda y: project_weighted_simplex(y, b, real)

  def rise(alpha, new):
    """f(new) − f(alpha) of the two points rescaled onto bᵀα = 1 (f(cα) = f(α) + log c), as
    sums of log1p(relative change): float32 rounding of f itself (≈1e-7) or of bᵀα would
    hide the last steps. −inf outside the domain."""
    z = jnp.where(target, a @ alpha, 1.0)
    r = jnp.where(target, (a @ (new - alpha)) / z, 0.0)
    inside = jnp.all(r > -1.0)
    up = jnp.sum(jnp.log1p(jnp.where(r > -1.0, r, 0.0))) * inv_nt - jnp.log1p(
        b @ (new - alpha) / (b @ alpha))
    u, v = new * (1.0 / (b @ new)), alpha * (1.0 / (b @ alpha))
    up = up - 0.5 * ridge * jnp.sum(b * b * (u - v) * (u + v))
    return jnp.where(inside, up, -jnp.inf)

  def grad(alpha):
    return a.T @ (m_t / jnp.where(target, a @ alpha, 1.0)) * inv_nt - ridge * b * b * alpha

  def gap(alpha, g):  # Frank-Wolfe: max over the vertices e_l / b_l of gᵀ(z − α) ≥ F* − F(α)
    top = jnp.max(jnp.where(real, g / jnp.where(real, b, 1.0), -jnp.inf))
    return jnp.maximum(top * (b @ alpha) - g @ alpha, 0.0)

  def body(state):
    it, alpha, g, t, _ = state
    # Projected gradient, backtracking until the step's quadratic model lower-bounds f.
    def short(c):
      t, z, up = c
      return (up < g @ (z - alpha) - jnp.sum((z - alpha) ** 2) * (0.5 / t)) & (t > 1e-20)
    def halve(c):
      z = project(alpha + 0.5 * c[0] * g)
      return 0.5 * c[0], z, rise(alpha, z)
    z = project(alpha + t * g)
    t, z, up = jax.lax.while_loop(short, halve, (t, z, rise(alpha, z)))
    z = jnp.where(up >= 0, z, alpha)
    # Newton on z's face, then along the projection arc project(z + s·d), s = 1, ½, … (Armijo).
    gz = grad(z)
    w = m_t / jnp.where(target, a @ z, 1.0) ** 2
    d = _face_newton((a.T * w) @ a * inv_nt + jnp.diag(ridge * b * b), gz, z > 0, b, True, 1e-6)
    def weak(c):
      s, cand, up = c
      return (up < 1e-4 * gz @ (cand - z)) & (s > 1e-6)
    def shorter(c):
      cand = project(z + 0.5 * c[0] * d)
      return 0.5 * c[0], cand, rise(z, cand)
    cand = project(z + d)
    _, cand, up = jax.lax.while_loop(weak, shorter, (jnp.float32(1.0), cand, rise(z, cand)))
    alpha = jnp.where(up > 0, cand, z)
    g = grad(alpha)
    return it + 1, alpha, g, jnp.minimum(4.0 * t, 1e12), gap(alpha, g)

  alpha = project(jnp.where(real, 1.0, 0.0))
  g = grad(alpha)
  init = (jnp.int32(0), alpha, g, jnp.float32(1.0), gap(alpha, g))
  it, alpha, _, _, final_gap = jax.lax.while_loop(
      lambda s: (s[0] < steps) & (s[-1] > tol), body, init)
  alpha = alpha * (1.0 / (b @ alpha))  # bᵀα = 1 to rounding (the projection's λ is float32 too)
  return KliepFit(alpha, centres, jnp.asarray(sigma, jnp.float32), final_gap, it)


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
  return adversarial.mlp_init(rng, (dims.feature_dim, *cfg.hidden, 1))


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def batch_ratio(ctx: objectives.Context, f_s: jax.Array, f_t: jax.Array, w_s: jax.Array,
                w_t: jax.Array, cfg: Any) -> tuple[jax.Array, objectives.Metrics]:
  """KMM or KLIEP weights of this device's source rows, estimated on the global batch (every
  device computes the same global estimate, then keeps its own rows), and the solver's
  residual metrics."""
  g_s, g_t = _gather(f_s, ctx.axis_name), _gather(f_t, ctx.axis_name)
  gw_s, gw_t = _gather(w_s, ctx.axis_name), _gather(w_t, ctx.axis_name)
  sigma = float(cfg.sigma) if cfg.sigma else None
  if cfg.estimator == 'kmm':
    fit = kmm_fit(g_s, g_t, sigma=sigma, bound=float(cfg.kmm_bound),
                  ridge=float(cfg.kmm_ridge), steps=int(cfg.kmm_steps),
                  tol=float(cfg.get('kmm_tol', 1e-6)), w_s=gw_s, w_t=gw_t)
    ratio = fit.beta
    metrics = {'importance/kmm_residual': fit.residual,
               'importance/kmm_iterations': fit.iterations.astype(jnp.float32)}
  else:
    fit = kliep_fit(g_s, g_t, sigma=sigma, num_centres=int(cfg.kliep_centres),
                    ridge=float(cfg.kliep_ridge), steps=int(cfg.kliep_steps),
                    tol=float(cfg.get('kliep_tol', 1e-5)),
                    w_s=gw_s, w_t=gw_t)
    ratio = fit(g_s) * gw_s.astype(jnp.float32)
    metrics = {'importance/kliep_gap': fit.gap,
               'importance/kliep_iterations': fit.iterations.astype(jnp.float32)}
  if ctx.axis_name is None:
    return ratio, metrics
  n = f_s.shape[0]
  return jax.lax.dynamic_slice_in_dim(ratio, jax.lax.axis_index(ctx.axis_name) * n, n), metrics


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
  f_s = jax.lax.stop_gradient(adversarial.pooled_features(ctx, 'source'))
  f_t = jax.lax.stop_gradient(adversarial.pooled_features(ctx, 'target'))
  w_s = adversarial.row_weights(ctx.batches['source'])
  w_t = adversarial.row_weights(ctx.batches['target'])
  total = jnp.zeros((), jnp.float32)
  metrics: objectives.Metrics = {}
  if estimator == 'classifier':
    clf = ctx.method_params('importance_weighting')
    logit_s = adversarial.mlp_apply(clf, f_s).reshape(-1)
    logit_t = adversarial.mlp_apply(clf, f_t).reshape(-1)
    # adversarial.domain_bce labels source 1, target 0: flip the sign so the logit is log P(T|x)/P(S|x).
    bce, acc = adversarial.domain_bce(ctx, -logit_s, -logit_t, w_s, w_t)
    total = cfg.weight * bce
    metrics.update({'importance/domain_loss': bce, 'importance/domain_accuracy': acc})
    ratio = ratio_from_logits(logit_s)
  else:
    ratio, solver = batch_ratio(ctx, f_s, f_t, w_s, w_t, cfg)
    metrics.update(solver)
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
