"""Transferability scores: rank backbones (or layers) for a target task before training.

All take target features / source-head outputs and target labels (numpy); higher = better.
  logme(f, y)            You et al. 2021: mean over classes of the maximised log evidence of a
                         Bayesian linear model y_k ~ f (fixed-point updates of α, β), per example.
  leep(probs, y)         Nguyen et al. 2020: log of the expected empirical predictor built from
                         the source head's probabilities θ(x) [N, Z].
  nce(z, y)              Tran et al. 2019: −H(Y | Z), Z the source head's hard labels.
  h_score(f, y)          Bao et al. 2019: tr(cov(f)⁺ cov(E[f | y])); shrinkage='auto' for the
                         regularised version (Ibrahim et al. 2022) that works when N ≤ D.
  gmm_source_probs(f, k) a stand-in source head for backbones without one (N-LEEP, Li et al.
                         2021): posteriors of a Gaussian mixture on PCA-reduced features.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections as mlc
import numpy as np

from tl_jax import extras


def default_config() -> mlc.ConfigDict:
  """config.transfer.selection (experiments/select_models.py)."""
  return mlc.ConfigDict(dict(
      # Candidates 'init' or 'init:layer' (init: pretrained | random; layer: hidden state k).
      candidates=('pretrained', 'random', 'pretrained:2', 'pretrained:4'),
      split='train', limit=300,  # scores use the first `limit` examples of `split`
      num_components=0,  # GMM source head for LEEP/NCE; 0 = 2 × classes
      cache_dir='runs/feature_cache',
      # The check (not used by the scores): a linear probe on the same examples, tested here.
      eval_split='test', seed=0,
  ))


def _labels(y, n: int) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1 or len(y) != n:
    raise ValueError(f'labels must be [N] with N = {n} (the feature rows), got {y.shape}')
  if y.min() < 0:
    raise ValueError('labels must be >= 0 (drop unlabelled rows before scoring)')
  return y.astype(np.int64)


def _features(f) -> np.ndarray:
  f = np.asarray(f, np.float64)
  if f.ndim != 2 or len(f) == 0:
    raise ValueError(f'features must be [N, D] with N > 0, got {f.shape}')
  return f


# -------------------------------------------------------------------------------------------
# LogME.
# -------------------------------------------------------------------------------------------

def spectrum(f: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(σ = squared singular values of f [k], squared projections of each target column on the
  left singular vectors [k, K]), k = min(N, D), from the eigh of the smaller Gram matrix (much
  faster than np.linalg.svd next to jax's threads)."""
  n, d = f.shape
  if n <= d:
    sigma, u = np.linalg.eigh(f @ f.T)
    proj = u.T @ targets
  else:
    sigma, v = np.linalg.eigh(f.T @ f)
    s = np.sqrt(np.clip(sigma, 0.0, None))
    proj = np.where(s[:, None] > 1e-10 * max(s.max(), 1e-300),
                    (v.T @ (f.T @ targets)) / np.maximum(s, 1e-300)[:, None], 0.0)
  return np.clip(sigma, 0.0, None), proj**2


def logme_evidence(f: np.ndarray, t: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6,
                   _spectrum=None) -> tuple[float, float, float]:
  """(log evidence / N, α, β) at the fixed point for one real target vector t [N].

  Model: w ~ N(0, α⁻¹ I), t | f, w ~ N(f w, β⁻¹ I). MacKay's updates from α = β = 1:
  γ = Σ βσ/(α+βσ), α = γ / mᵀm, β = (N − γ)/||t − f m||², m the posterior mean; all in the
  singular basis of f (σ = s²), so an iteration costs O(min(N, D)).
  """
  n, d = f.shape
  sigma, x2 = _spectrum if _spectrum is not None else spectrum(f, t[:, None])
  x2 = x2.reshape(-1)
  outside = max(float(t @ t - x2.sum()), 0.0)  # t's energy outside the column space

  def moments(alpha, beta):
    denom = alpha + beta * sigma
    m2 = float(np.sum(beta**2 * sigma * x2 / denom**2))
    res2 = float(np.sum(alpha**2 * x2 / denom**2)) + outside
    return m2, res2, float(np.sum(beta * sigma / denom))

  alpha, beta = 1.0, 1.0
  for _ in range(max_iter):
    m2, res2, gamma = moments(alpha, beta)
    new_alpha = gamma / (m2 + 1e-12)
    new_beta = (n - gamma) / (res2 + 1e-12)
    done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
    alpha, beta = new_alpha, new_beta
    if done:
      break
  m2, res2, _ = moments(alpha, beta)
  # Σ over all D eigenvalues of FᵀF: the D − min(N, D) zero ones add log α each.
  log_det = np.sum(np.log(alpha + beta * sigma)) + (d - len(sigma)) * np.log(alpha)
  evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * log_det
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
  return float(evidence / n), float(alpha), float(beta)


def logme(features, labels, *, regression: bool = False) -> float:
  """LogME: mean over one-hot label columns (or target columns when regression) of the
  maximised log evidence per example."""
  f = _features(features)
  if regression:
    targets = np.asarray(labels, np.float64).reshape(len(f), -1)
  else:
    y = _labels(labels, len(f))
    targets = np.eye(y.max() + 1)[y]
  sigma, x2 = spectrum(f, targets)  # one decomposition for every column
  return float(np.mean([logme_evidence(f, targets[:, k], _spectrum=(sigma, x2[:, k]))[0]
                        for k in range(targets.shape[1])]))


# -------------------------------------------------------------------------------------------
# LEEP, NCE, H-score.
# -------------------------------------------------------------------------------------------

def leep(source_probs, labels) -> float:
  """LEEP = 1/N Σ_i log Σ_z P̂(y_i | z) θ(x_i)_z, with P̂(y, z) = 1/N Σ_i θ(x_i)_z 1[y_i = y]."""
  theta = np.asarray(source_probs, np.float64)
  y = _labels(labels, len(theta))
  joint = np.zeros((y.max() + 1, theta.shape[1]))
  np.add.at(joint, y, theta)
  joint /= len(theta)
  cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P̂(y | z)
  eep = np.sum(theta * cond[y], axis=1)
  return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_labels, labels) -> float:
  """NCE = −H(Y | Z) = Σ_{y,z} P̂(y, z) log P̂(y | z) from hard source labels z."""
  z = _labels(source_labels, len(np.asarray(source_labels)))
  y = _labels(labels, len(z))
  joint = np.zeros((y.max() + 1, z.max() + 1))
  np.add.at(joint, (y, z), 1.0)
  joint /= len(z)
  pz = joint.sum(0, keepdims=True)
  nz = joint > 0
  return float(np.sum(joint[nz] * np.log((joint / np.maximum(pz, 1e-300))[nz])))


def h_score(features, labels, *, shrinkage: str | float = 0.0) -> float:
  """H(f) = tr(cov(f)⁻¹ cov(E[f | y])).

  shrinkage 0: the paper's pseudo-inverse, which saturates at (classes − 1) for ANY features
  once N ≤ D (cov(f) is then singular and the class means fit exactly). 'auto': the Ledoit-Wolf
  shrunk covariance (Ibrahim et al. 2022, "regularised H-score"); a float: that shrinkage
  toward tr(cov)/D · I; the between-class covariance gets the same (1 − shrinkage) factor.
  """
  f = _features(features)
  y = _labels(labels, len(f))
  f = f - f.mean(0)
  cov_f = f.T @ f / len(f)
  if shrinkage == 'auto':
    extras.require('sklearn')
    from sklearn.covariance import ledoit_wolf_shrinkage  # pylint: disable=g-import-not-at-top
    shrinkage = float(ledoit_wolf_shrinkage(f, assume_centered=True))
  if shrinkage:
    target = np.trace(cov_f) / len(cov_f) * np.eye(len(cov_f))
    cov_f = (1 - float(shrinkage)) * cov_f + float(shrinkage) * target
  class_means = np.zeros((y.max() + 1, f.shape[1]))
  np.add.at(class_means, y, f)
  counts = np.bincount(y, minlength=y.max() + 1)[:, None]
  class_means = class_means / np.maximum(counts, 1)
  g = class_means[y]  # E[f | y] for each example
  cov_g = (1 - float(shrinkage)) * (g.T @ g / len(f))  # the paper's (1 − α) on both sides
  return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10, hermitian=True) @ cov_g))


def gmm_source_probs(features, num_components: int, *, pca_dim: int = 32,
                     seed: int = 0) -> np.ndarray:
  """[N, K] posteriors of a diagonal Gaussian mixture on PCA-reduced features: a source head for
  LEEP/NCE when the backbone has none (N-LEEP)."""
  extras.require('sklearn')
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  from sklearn.mixture import GaussianMixture  # pylint: disable=g-import-not-at-top
  f = _features(features)
  reduced = PCA(min(pca_dim, *f.shape), random_state=seed).fit_transform(f)
  gmm = GaussianMixture(num_components, covariance_type='diag', random_state=seed, reg_covar=1e-4)
  return gmm.fit(reduced).predict_proba(reduced)


def all_scores(features, labels, *, num_components: int = 0, seed: int = 0) -> dict[str, float]:
  """Every score for one feature set; LEEP/NCE through a GMM source head with `num_components`
  (0 = 2 × the number of classes)."""
  y = _labels(labels, len(np.asarray(features)))
  k = num_components or 2 * (int(y.max()) + 1)
  probs = gmm_source_probs(features, k, seed=seed)
  return {'logme': logme(features, y), 'h_score': h_score(features, y, shrinkage='auto'),
          'leep': leep(probs, y), 'nce': nce(probs.argmax(1), y)}


def rank(scores: Mapping[str, Mapping[str, float]]) -> dict[str, list[str]]:
  """{score name: candidate names best first} from {candidate: {score name: value}}."""
  names = next(iter(scores.values())).keys()
  return {s: sorted(scores, key=lambda c: -scores[c][s]) for s in names}
