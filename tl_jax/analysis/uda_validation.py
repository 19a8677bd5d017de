"""Unsupervised validation for domain adaptation: pick a model (or checkpoint, or λ) WITHOUT
target labels. Scores, all "higher = better" in `score_models`:

  iwv(losses, w)            importance-weighted validation (Sugiyama et al. 2007): source-val
                            loss weighted by w(x) = p_T(x) / p_S(x) (returned as a risk).
  dev(losses, w)            deep embedded validation (You et al. 2019): the same with the control
                            variate η (mean w = 1): mean(wℓ) + η·mean(w) − η,
                            η = −Cov(wℓ, w)/Var(w).
  density_ratio(fs, ft, fv) w on source-val features from a logistic domain classifier trained
                            on source-train vs target features: w = (n_s/n_t)·P(T|x)/P(S|x).
  prediction_entropy(p)     mean entropy of target predictions (Morerio et al. 2018; lower better).
  snd(p)                    soft neighbourhood density (Saito et al. 2021) of target predictions.

Target test labels are never an input here; reports put the oracle target accuracy in its own
column, computed outside these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ml_collections as mlc
import numpy as np

from tl_jax import extras


def default_config() -> mlc.ConfigDict:
  """config.transfer.uda_validation: the runs and the splits experiments/da_validation.py uses."""
  return mlc.ConfigDict(dict(
      runs_dir='runs/da_table/runs',  # <method>_s<seed>/ run dirs (experiments/da_table.py)
      source_train_split='train',  # domain classifier, source side
      source_val_split='validation',  # labelled source held out: source accuracy, IWV, DEV
      target_split='train',  # UNLABELLED target: domain classifier, entropy, SND
      test_split='test',  # target test: the oracle column only
      domain_classifier_c=1.0,  # inverse L2 strength of the logistic domain classifier
      snd_temperature=0.05,
      seed=0,
  ))


def iwv(losses, weights) -> float:
  """Importance-weighted estimate of the target risk: mean(w·ℓ)."""
  losses, weights = np.asarray(losses, np.float64), np.asarray(weights, np.float64)
  return float(np.mean(weights * losses))


def dev(losses, weights) -> float:
  """DEV's control-variate estimate of the target risk (weights should have mean ~1)."""
  losses, weights = np.asarray(losses, np.float64), np.asarray(weights, np.float64)
  weighted = weights * losses
  var_w = np.var(weights, ddof=1)
  eta = 0.0 if var_w <= 0 else -np.cov(weighted, weights, ddof=1)[0, 1] / var_w
  return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def density_ratio(source_train, target, source_val, *, c: float = 1.0,
                  seed: int = 0) -> np.ndarray:
  """w(x) = p_T(x)/p_S(x) at source_val, from a logistic domain classifier (exact for Gaussian
  domains with a shared covariance); classes balanced by the prior ratio n_s/n_t."""
  extras.require('sklearn')
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  xs, xt = np.asarray(source_train), np.asarray(target)
  x = np.concatenate([xs, xt])
  d = np.concatenate([np.zeros(len(xs)), np.ones(len(xt))])
  clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, d)
  p = np.clip(clf.predict_proba(np.asarray(source_val))[:, 1], 1e-6, 1 - 1e-6)
  return (len(xs) / len(xt)) * p / (1 - p)


def prediction_entropy(probs) -> float:
  p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
  return float(np.mean(-np.sum(p * np.log(p), axis=1)))


def snd(probs, temperature: float = 0.05) -> float:
  """Mean entropy of each target example's softmax over its similarities (cosine of the L2-
  normalised prediction vectors, itself excluded) to the other target examples."""
  p = np.asarray(probs, np.float64)
  p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
  sim = p @ p.T / temperature
  np.fill_diagonal(sim, -np.inf)
  sim = sim - sim.max(1, keepdims=True)
  q = np.exp(sim)
  q /= q.sum(1, keepdims=True)
  return float(np.mean(-np.sum(q * np.log(np.maximum(q, 1e-300)), axis=1)))


def cross_entropy(probs, labels) -> np.ndarray:
  p = np.asarray(probs, np.float64)
  return -np.log(np.clip(p[np.arange(len(p)), np.asarray(labels)], 1e-12, 1.0))


def score_models(source_val_probs: Mapping[str, np.ndarray], source_val_labels,
                 target_probs: Mapping[str, np.ndarray], weights, *,
                 snd_temperature: float = 0.05) -> dict[str, dict[str, float]]:
  """{model: {score: value}} with every score oriented higher = better (risks negated).

  source_val_probs / target_probs: each model's predicted probabilities on the labelled source
  validation set and on the (unlabelled) target set; weights: w(x) on the source validation set.
  """
  out = {}
  for name in source_val_probs:
    losses = cross_entropy(source_val_probs[name], source_val_labels)
    errors = (np.argmax(source_val_probs[name], 1) != np.asarray(source_val_labels)).astype(float)
    out[name] = {
        'source_val_accuracy': 1.0 - float(errors.mean()),
        'iwv': -iwv(losses, weights),
        'iwv_error': -iwv(errors, weights),
        'dev': -dev(losses, weights),
        'neg_entropy': -prediction_entropy(target_probs[name]),
        'snd': snd(target_probs[name], snd_temperature),
    }
  return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
  """Spearman rank correlation (average ranks for ties)."""
  from scipy.stats import spearmanr  # pylint: disable=g-import-not-at-top
  return float(spearmanr(a, b).statistic)
