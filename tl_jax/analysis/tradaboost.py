"""TrAdaBoost (Dai et al. 2007, "Boosting for transfer learning") for the few-labelled-target
case, on (cached) features; the base learner is linear_probe's full-batch softmax regression
with example weights (`linear_probe.fit_full_batch_jit(..., weights=w, standardize=False)`).

Each round fits the learner on source + labelled target with the current example weights, then
  - the error ε_t is measured on the labelled target only (weighted); β_t = ε_t / (1 − ε_t);
  - a misclassified TARGET example is up-weighted by β_t^−1 (AdaBoost);
  - a misclassified SOURCE example is down-weighted by β = 1 / (1 + √(2 ln n_S / N)): source
    examples that keep disagreeing with the target task fade out.
The final classifier is the vote of the second half of the rounds, weighted by log(1/β_t)
(the multi-class form of the paper's rule). `source_weights` are what the method learnt about
the source: the instance weights to feed a source loss (e.g. as a fixed per-example weight).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from tl_jax.analysis import linear_probe


def default_config() -> mlc.ConfigDict:
  """config.transfer.tradaboost: the boosting and its base learner, and the experiment
  (experiments/tradaboost.py) around it."""
  return mlc.ConfigDict(dict(
      rounds=20,  # boosting rounds; the second half votes
      l2=2e-3,  # base learner (weighted softmax regression): ½·l2·‖W‖², as linear_probe
      steps=300,  # base learner: full-batch Adam steps per fit
      learning_rate=0.1,
      # Second TrAdaBoost row: the target examples start with this share of the weight mass
      # (0 = no such row; the first row always starts uniform per example, as the paper).
      balanced_target_share=0.5,
      shots=5,  # labelled target examples per class (drawn from the target train split)
      seeds=(0, 1, 2),  # one k-shot draw per seed
      standardize=True,  # features standardised with the source-train mean/std
      layer=-100,  # -100 = the backbone's pooled output; k = hidden state k (0 = embeddings)
      cache_dir='runs/feature_cache',  # '' = memory only
      source_split='train',
      target_train_split='train',  # the k-shot examples come from here
      test_split='test',  # target test split: the reported accuracy
  ))


@dataclasses.dataclass
class TrAdaBoost:
  learners: list  # a linear_probe.Probe per kept round
  alphas: np.ndarray  # log(1/β_t) per kept round
  source_weights: np.ndarray  # final normalised weights of the source examples
  target_weights: np.ndarray
  target_errors: np.ndarray  # ε_t per round
  num_classes: int

  def predict(self, x: np.ndarray) -> np.ndarray:
    votes = np.zeros((len(x), self.num_classes))
    for probe, alpha in zip(self.learners, self.alphas):
      pred = np.asarray(jnp.argmax(linear_probe.logits(probe, jnp.asarray(x, jnp.float32)), -1))
      votes[np.arange(len(x)), pred] += alpha
    return np.argmax(votes, -1)


def tradaboost(x_s: np.ndarray, y_s: np.ndarray, x_t: np.ndarray, y_t: np.ndarray, *,
               num_classes: int, rounds: int = 20, l2: float = 2e-3,
               steps: int = 300, lr: float = 0.1,
               initial_target_share: float | None = None) -> TrAdaBoost:
  """Boosts on labelled source (x_s, y_s) and the few labelled target examples (x_t, y_t).

  initial_target_share: None starts from uniform weights per example (the paper's choice);
  s in (0, 1) gives the target examples together the share s of the starting weight mass
  (the paper allows any start). With few target examples the uniform start lets the source
  dominate the learner, whose target error then stays >= 1/2, where the update stalls.
  """
  n_s, n_t = len(x_s), len(x_t)
  if n_t == 0:
    raise ValueError('TrAdaBoost needs some labelled target examples (x_t, y_t)')
  x = jnp.asarray(np.concatenate([x_s, x_t]), jnp.float32)
  y = jnp.asarray(np.concatenate([y_s, y_t]), jnp.int32)
  weights = np.ones(n_s + n_t)
  if initial_target_share is not None:
    if not 0.0 < initial_target_share < 1.0:
      raise ValueError(f'initial_target_share={initial_target_share}: must be in (0, 1), or '
                       'None for uniform weights per example')
    weights[:n_s] = (1.0 - initial_target_share) / n_s
    weights[n_s:] = initial_target_share / n_t
  beta = 1.0 / (1.0 + math.sqrt(2.0 * math.log(n_s) / rounds))
  learners, alphas, errors = [], [], []
  for t in range(rounds):
    p = weights / weights.sum()
    probe = linear_probe.fit_full_batch_jit(
        x, y, num_classes, l2=l2, learning_rate=lr, num_steps=steps,
        weights=jnp.asarray(p, jnp.float32), standardize=False)
    wrong = np.asarray(jnp.argmax(linear_probe.logits(probe, x), -1) != y, np.float64)
    eps = float(np.sum(p[n_s:] * wrong[n_s:]) / np.sum(p[n_s:]))
    eps = min(max(eps, 1e-10), 0.499)  # the paper requires ε_t < 1/2
    beta_t = eps / (1.0 - eps)
    weights[:n_s] *= beta ** wrong[:n_s]
    weights[n_s:] *= beta_t ** (-wrong[n_s:])
    errors.append(eps)
    if t >= rounds // 2:  # the paper votes with the second half of the rounds
      learners.append(jax.device_get(probe))
      alphas.append(math.log(1.0 / beta_t))
  weights = weights / weights.sum()
  return TrAdaBoost(learners, np.asarray(alphas), weights[:n_s] * n_s, weights[n_s:] * n_s,
                    np.asarray(errors), num_classes)
