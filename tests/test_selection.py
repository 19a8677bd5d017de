"""Transferability scores against closed forms / hand values, and unsupervised DA validation
scores that must rank models like their (hidden) target accuracy on controlled shifts."""

import numpy as np
import pytest
from scipy import optimize, stats

from tl_jax.analysis import selection, uda_validation


# ------------------------------------------------------------------------------------------
# Transferability scores.
# ------------------------------------------------------------------------------------------

def _log_marginal(f, t, alpha, beta):
  """log N(t | 0, β⁻¹ I + α⁻¹ F Fᵀ) / N: the Bayesian linear model's evidence, directly."""
  cov = np.eye(len(f)) / beta + f @ f.T / alpha
  return stats.multivariate_normal(np.zeros(len(f)), cov).logpdf(t) / len(f)


def test_logme_is_the_maximised_evidence():
  rs = np.random.RandomState(0)
  f = rs.randn(40, 5)
  t = f @ rs.randn(5) + 0.5 * rs.randn(40)
  value, alpha, beta = selection.logme_evidence(f, t)
  # The fixed point's value is the evidence at (α, β) ...
  np.testing.assert_allclose(value, _log_marginal(f, t, alpha, beta), rtol=1e-6)
  # ... and no (α, β) has more (a generic optimiser over log α, log β).
  best = optimize.minimize(lambda z: -_log_marginal(f, t, *np.exp(z)), np.zeros(2),
                           method='Nelder-Mead', options=dict(xatol=1e-8, fatol=1e-10))
  np.testing.assert_allclose(value, -best.fun, atol=1e-5)


def test_logme_prefers_informative_features():
  rs = np.random.RandomState(1)
  y = rs.randint(0, 3, 200)
  good = np.eye(3)[y] @ rs.randn(3, 8) + 0.3 * rs.randn(200, 8)
  noise = rs.randn(200, 8)
  assert selection.logme(good, y) > selection.logme(noise, y) + 0.3
  assert selection.h_score(good, y) > selection.h_score(noise, y) + 1.0


def test_leep_hand_value():
  theta = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
  y = np.array([0, 1, 0])
  # By hand: P(y,z) = [[.5, 1/6], [.2/3, .8/3]]; P(y|z) column-normalised; LEEP = mean log EEP.
  joint = np.array([[0.5, 1 / 6], [0.2 / 3, 0.8 / 3]])
  cond = joint / joint.sum(0)
  eep = [sum(theta[i, z] * cond[y[i], z] for z in range(2)) for i in range(3)]
  expected = np.mean(np.log(eep))
  np.testing.assert_allclose(selection.leep(theta, y), expected, rtol=1e-12)
  np.testing.assert_allclose(expected, -0.40869, atol=1e-4)


def test_nce_hand_values():
  y = np.array([0, 0, 1, 1])
  np.testing.assert_allclose(selection.nce(np.array([0, 1, 0, 1]), y), -np.log(2))  # independent
  np.testing.assert_allclose(selection.nce(y, y), 0.0, atol=1e-12)  # Z determines Y
  # Z = (0,0,0,1): H(Y|Z) = 3/4 · H(1/3) with H(1/3) = −(1/3 ln 1/3 + 2/3 ln 2/3).
  h = -(np.log(1 / 3) / 3 + 2 / 3 * np.log(2 / 3))
  np.testing.assert_allclose(selection.nce(np.array([0, 0, 0, 1]), y), -0.75 * h)


def test_h_score_closed_form_and_shrinkage_when_n_below_d():
  # 1-D: H = between-class variance / total variance = 4 / 5; shrinkage α toward tr(Σ)/D · I
  # leaves a scalar Σ as it is and scales the between-class part by (1 − α).
  f = np.array([[0.0], [2.0], [4.0], [6.0]])
  for shrinkage, expected in ((0.0, 0.8), (0.5, 0.4)):
    np.testing.assert_allclose(selection.h_score(f, np.array([0, 0, 1, 1]), shrinkage=shrinkage),
                               expected)
  # N ≤ D: the plain score is classes − 1 for any features; the shrunk one still tells apart.
  rs = np.random.RandomState(2)
  y = rs.randint(0, 3, 40)
  good = np.eye(3)[y] @ rs.randn(3, 60) + rs.randn(40, 60)
  noise = rs.randn(40, 60)
  np.testing.assert_allclose([selection.h_score(good, y), selection.h_score(noise, y)], 2.0,
                             rtol=1e-6)
  assert (selection.h_score(good, y, shrinkage='auto')
          > 2 * selection.h_score(noise, y, shrinkage='auto'))


def test_scores_reject_bad_labels():
  with pytest.raises(ValueError, match='labels must be'):
    selection.logme(np.zeros((3, 2)), np.array([0, 1]))
  with pytest.raises(ValueError, match='>= 0'):
    selection.h_score(np.zeros((2, 2)), np.array([0, -1]))


# ------------------------------------------------------------------------------------------
# Unsupervised validation for domain adaptation.
# ------------------------------------------------------------------------------------------

def test_dev_hand_value_and_reductions():
  losses = np.array([1.0, 2.0, 3.0, 4.0])
  w = np.array([0.5, 1.0, 1.5, 2.0])
  # mean(wℓ) = 3.75, mean(w) = 1.25, Cov(wℓ, w) = 25/12, Var(w) = 5/12 -> η = −5: DEV = 2.5.
  np.testing.assert_allclose(uda_validation.dev(losses, w), 2.5)
  np.testing.assert_allclose(uda_validation.iwv(losses, w), 3.75)
  np.testing.assert_allclose(uda_validation.dev(losses, np.ones(4)), losses.mean())


def _covariate_shift(n, rs, center):
  """x ~ N(center, 1.5² I); the labelling y = [x₂ > −|x₁|] is shared by both domains."""
  x = center + 1.5 * rs.randn(n, 2)
  return x, (x[:, 1] > -np.abs(x[:, 0])).astype(int)


def _linear_probs(x, slope, scale=3.0):
  """A linear classifier through (0, 0): boundary x₂ = slope · x₁."""
  z = scale * (x[:, 1] - slope * x[:, 0]) / np.sqrt(1 + slope**2)
  p1 = 1 / (1 + np.exp(-z))
  return np.stack([1 - p1, p1], 1)


def test_iwv_and_dev_estimate_the_target_risk_and_rank_models():
  rs = np.random.RandomState(0)
  src_c, tgt_c = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
  xs_train, _ = _covariate_shift(2000, rs, src_c)
  xs_val, ys_val = _covariate_shift(2000, rs, src_c)
  xt, yt = _covariate_shift(2000, rs, tgt_c)  # yt: the oracle, never given to the scores
  w = uda_validation.density_ratio(xs_train, xt, xs_val)
  # The domain classifier recovers the true ratio N(tgt)/N(src) = exp(Δμ·x/σ² − ...) well.
  true_w = np.exp((xs_val @ (tgt_c - src_c) - 0.5 * (tgt_c @ tgt_c - src_c @ src_c)) / 1.5**2)
  assert stats.spearmanr(w, true_w).statistic > 0.99
  # The true boundary has slope +1 where the source lives (x₁ < 0), −1 where the target does.
  slopes = np.linspace(1.0, -1.0, 9)
  src = {f's{s:.2f}': _linear_probs(xs_val, s) for s in slopes}
  tgt = {f's{s:.2f}': _linear_probs(xt, s) for s in slopes}
  target_acc = [np.mean(tgt[k].argmax(1) == yt) for k in src]
  target_ce = [np.mean(uda_validation.cross_entropy(tgt[k], yt)) for k in src]
  scores = uda_validation.score_models(src, ys_val, tgt, w)
  # DEV estimates the target risk (up to noise), better than plain IWV (the estimated weights
  # do not average exactly 1, which the control variate corrects).
  dev_err = [abs(-scores[k]['dev'] - ce) for k, ce in zip(src, target_ce)]
  iwv_err = [abs(-scores[k]['iwv'] - ce) for k, ce in zip(src, target_ce)]
  assert all(e < 0.25 * ce + 0.05 for e, ce in zip(dev_err, target_ce)), dev_err
  assert np.mean(dev_err) < np.mean(iwv_err)
  rho = {s: uda_validation.spearman([scores[k][s] for k in src], target_acc)
         for s in ('iwv', 'iwv_error', 'dev', 'source_val_accuracy')}
  assert rho['iwv'] > 0.8 and rho['dev'] > 0.8 and rho['iwv_error'] > 0.8, rho
  assert rho['source_val_accuracy'] < 0.0, rho  # the source ranks them backwards: IW is needed


def test_entropy_and_snd_rank_models_on_a_clustered_target():
  rs = np.random.RandomState(1)
  # Target: two clusters at ±(2, 2); models: boundaries through 0 whose unit normal turns from
  # the cluster axis (45°: separates them) to perpendicular to it (135°: cuts both in half).
  yt = rs.randint(0, 2, 1000)
  xt = np.where(yt[:, None] == 1, 2.0, -2.0) * np.ones((1, 2)) + 1.0 * rs.randn(1000, 2)
  angles = np.deg2rad(np.arange(45, 136, 10))
  probs, acc = {}, []
  for a in angles:
    z = 3.0 * (xt @ np.array([np.cos(a), np.sin(a)]))
    p1 = 1 / (1 + np.exp(-z))
    probs[f'{a:.2f}'] = np.stack([1 - p1, p1], 1)
    acc.append(np.mean((z > 0) == yt))
  neg_entropy = [-uda_validation.prediction_entropy(p) for p in probs.values()]
  snd = [uda_validation.snd(p) for p in probs.values()]
  assert uda_validation.spearman(neg_entropy, acc) > 0.8
  assert uda_validation.spearman(snd, acc) > 0.8
