"""Few-shot classification on frozen-backbone features: N-way K-shot episodes, prototypes, probes.

  episodes = sample_episodes(labels, n_way=5, k_shot=5, n_query=15, num_episodes=600, seed=0)
  accs = episode_accuracies(features, episodes, classifier='prototype', metric='cosine')
  mean, ci = mean_ci95(accs)

Episodes are index arrays (the same for every classifier for a seed), so classifiers compare
on identical support/query sets; all episodes of a classifier run as one vmapped jit.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from tl_jax.analysis import linear_probe

CLASSIFIERS = ('prototype', 'linear_probe')
METRICS = ('cosine', 'euclidean')


def default_config() -> mlc.ConfigDict:
  """config.transfer.fewshot."""
  return mlc.ConfigDict(dict(
      cache_dir='runs/feature_cache',  # '' = memory only
      inits=('pretrained', 'random'),  # experiments/fewshot.py: backbones to compare
      layer=-100,  # -100 = the model's pooled output; k = hidden state k
      split='train',  # episodes are drawn from this split's features
      n_way=5, k_shot=5, n_query=15, num_episodes=600, seed=0,
      classifiers=('prototype', 'linear_probe'),
      metric='cosine',  # prototype similarity: cosine | euclidean
      probe_l2=1e-2, probe_learning_rate=0.05, probe_steps=100,
  ))


@dataclasses.dataclass(frozen=True)
class Episodes:
  """support [E, N·K], query [E, N·Q] row indices; *_labels the episode's 0..N−1 labels."""
  support: np.ndarray
  support_labels: np.ndarray
  query: np.ndarray
  query_labels: np.ndarray
  classes: np.ndarray  # [E, N] dataset classes of each episode
  n_way: int


def sample_episodes(labels, *, n_way: int, k_shot: int, n_query: int, num_episodes: int,
                    seed: int = 0) -> Episodes:
  """Episodes: N classes drawn from the dataset's, K support + Q query examples of each, no
  example in both; relabelled 0..N−1 in drawn order."""
  labels = np.asarray(labels)
  classes_all = np.unique(labels[labels >= 0])
  counts = {c: int(np.sum(labels == c)) for c in classes_all}
  if n_way > len(classes_all):
    raise ValueError(f'n_way={n_way} but the data has {len(classes_all)} classes; lower n_way')
  if min(counts.values()) < k_shot + n_query:
    raise ValueError(f'k_shot + n_query = {k_shot + n_query} but the smallest class has '
                     f'{min(counts.values())} examples; lower k_shot or n_query')
  members = {c: np.flatnonzero(labels == c) for c in classes_all}
  rng = np.random.default_rng(seed)
  sup, qry, cls = [], [], []
  for _ in range(num_episodes):
    chosen = rng.choice(classes_all, n_way, replace=False)
    picks = [rng.choice(members[c], k_shot + n_query, replace=False) for c in chosen]
    sup.append(np.concatenate([p[:k_shot] for p in picks]))
    qry.append(np.concatenate([p[k_shot:] for p in picks]))
    cls.append(chosen)
  way = np.arange(n_way)
  return Episodes(np.stack(sup), np.tile(np.repeat(way, k_shot), (num_episodes, 1)),
                  np.stack(qry), np.tile(np.repeat(way, n_query), (num_episodes, 1)),
                  np.stack(cls), n_way)


# -------------------------------------------------------------------------------------------
# Classifiers: (support x, support y, query x) -> query predictions, for one episode.
# -------------------------------------------------------------------------------------------

def prototype_logits(support_x: jax.Array, support_y: jax.Array, query_x: jax.Array, n_way: int,
                     metric: str = 'cosine') -> jax.Array:
  """Nearest class mean: −squared distance (euclidean) or cosine similarity to each prototype."""
  onehot = jax.nn.one_hot(support_y, n_way)
  protos = (onehot.T @ support_x) / onehot.sum(0)[:, None]
  if metric == 'cosine':
    normalize = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    return normalize(query_x) @ normalize(protos).T
  if metric == 'euclidean':
    return -(jnp.sum(query_x**2, -1, keepdims=True) - 2 * query_x @ protos.T
             + jnp.sum(protos**2, -1)[None])
  raise ValueError(f'metric={metric!r}; choose one of {METRICS}')


def probe_logits(support_x, support_y, query_x, n_way: int, *, l2: float = 1e-2,
                 learning_rate: float = 0.05, num_steps: int = 100) -> jax.Array:
  """k-shot linear probe: softmax regression fitted on the support set only."""
  probe = linear_probe.fit_full_batch(support_x, support_y, n_way, l2=l2,
                                      learning_rate=learning_rate, num_steps=num_steps)
  return linear_probe.logits(probe, query_x)


@functools.partial(jax.jit, static_argnames=('n_way', 'classifier', 'metric', 'probe_steps'))
def _episode_correct(features, support, support_y, query, query_y, *, n_way: int,
                     classifier: str, metric: str, probe_l2: float, probe_learning_rate: float,
                     probe_steps: int):
  def one(s, sy, q, qy):
    sx, qx = features[s], features[q]
    if classifier == 'prototype':
      out = prototype_logits(sx, sy, qx, n_way, metric)
    else:
      out = probe_logits(sx, sy, qx, n_way, l2=probe_l2, learning_rate=probe_learning_rate,
                         num_steps=probe_steps)
    return jnp.mean(jnp.argmax(out, -1) == qy)
  return jax.vmap(one)(support, support_y, query, query_y)


def episode_accuracies(features, episodes: Episodes, *, classifier: str = 'prototype',
                       metric: str = 'cosine', probe_l2: float = 1e-2,
                       probe_learning_rate: float = 0.05, probe_steps: int = 100) -> np.ndarray:
  """Query accuracy of every episode [E]."""
  if classifier not in CLASSIFIERS:
    raise ValueError(f'classifier={classifier!r}; choose one of {CLASSIFIERS}')
  return np.asarray(_episode_correct(
      jnp.asarray(features, jnp.float32), episodes.support, episodes.support_labels,
      episodes.query, episodes.query_labels, n_way=episodes.n_way, classifier=classifier,
      metric=metric, probe_l2=float(probe_l2), probe_learning_rate=float(probe_learning_rate),
      probe_steps=int(probe_steps)))


def mean_ci95(values) -> tuple[float, float]:
  """(mean, half-width of the 95% normal-approximation confidence interval 1.96·s/√n)."""
  v = np.asarray(values, np.float64)
  half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float('nan')
  return float(v.mean()), float(half)


def evaluate(features, labels, cfg) -> dict[str, tuple[float, float]]:
  """{classifier: (mean accuracy, 95% CI half-width)} over cfg.num_episodes episodes."""
  episodes = sample_episodes(labels, n_way=cfg.n_way, k_shot=cfg.k_shot, n_query=cfg.n_query,
                             num_episodes=cfg.num_episodes, seed=cfg.seed)
  return {c: mean_ci95(episode_accuracies(
      features, episodes, classifier=c, metric=cfg.metric, probe_l2=cfg.probe_l2,
      probe_learning_rate=cfg.probe_learning_rate, probe_steps=cfg.probe_steps))
          for c in cfg.classifiers}
