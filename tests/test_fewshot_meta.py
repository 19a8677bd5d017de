"""Few-shot episodes and classifiers on synthetic features; MAML/FOMAML gradients against the closed
form on a quadratic; MAML adapts to new sinusoids better than a jointly trained init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.analysis import episodes, maml

jax.config.update('jax_enable_x64', False)


# ------------------------------------------------------------------------------------------
# Few-shot.
# ------------------------------------------------------------------------------------------

def _clusters(num_classes=8, per_class=30, dim=16, spread=0.6, seed=0):
  rs = np.random.RandomState(seed)
  centers = rs.randn(num_classes, dim) * 2
  y = np.repeat(np.arange(num_classes), per_class)
  return (centers[y] + spread * rs.randn(len(y), dim)).astype(np.float32), y


def test_episodes_are_disjoint_balanced_and_seeded():
  _, y = _clusters()
  e = episodes.sample_episodes(y, n_way=5, k_shot=3, n_query=4, num_episodes=20, seed=7)
  assert e.support.shape == (20, 15) and e.query.shape == (20, 20)
  for i in range(20):
    assert not set(e.support[i]) & set(e.query[i])
    assert len(set(e.classes[i])) == 5
    # Episode label j is dataset class classes[i, j] for support and query alike.
    np.testing.assert_array_equal(y[e.support[i]], e.classes[i][e.support_labels[i]])
    np.testing.assert_array_equal(y[e.query[i]], e.classes[i][e.query_labels[i]])
  again = episodes.sample_episodes(y, n_way=5, k_shot=3, n_query=4, num_episodes=20, seed=7)
  np.testing.assert_array_equal(e.support, again.support)
  with pytest.raises(ValueError, match='smallest class'):
    episodes.sample_episodes(y, n_way=5, k_shot=20, n_query=20, num_episodes=1)
  with pytest.raises(ValueError, match='n_way=9'):
    episodes.sample_episodes(y, n_way=9, k_shot=1, n_query=1, num_episodes=1)


def test_prototype_matches_brute_force_nearest_mean():
  x, y = _clusters(spread=3.0, seed=1)  # overlapping: some answers are wrong
  e = episodes.sample_episodes(y, n_way=5, k_shot=2, n_query=5, num_episodes=30, seed=0)
  for metric in episodes.METRICS:
    accs = episodes.episode_accuracies(x, e, classifier='prototype', metric=metric)
    ref = []
    for s, sy, q, qy in zip(e.support, e.support_labels, e.query, e.query_labels):
      protos = np.stack([x[s][sy == c].mean(0) for c in range(5)])
      if metric == 'euclidean':
        pred = np.argmin(((x[q][:, None] - protos[None]) ** 2).sum(-1), 1)
      else:
        cos = (x[q] / np.linalg.norm(x[q], axis=1, keepdims=True)) @ (
            protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
        pred = np.argmax(cos, 1)
      ref.append(np.mean(pred == qy))
    np.testing.assert_allclose(accs, ref, atol=1e-6)
    assert 0.3 < np.mean(accs) < 0.99  # neither chance nor trivial


def test_kshot_probe_and_prototype_beat_chance_by_far():
  x, y = _clusters()
  e = episodes.sample_episodes(y, n_way=5, k_shot=5, n_query=10, num_episodes=40, seed=0)
  for classifier in episodes.CLASSIFIERS:
    mean, ci = episodes.mean_ci95(episodes.episode_accuracies(x, e, classifier=classifier))
    assert mean > 0.9 and 0 <= ci < 0.05, (classifier, mean, ci)


def test_mean_ci95_formula():
  v = np.array([0.5, 0.7, 0.9, 0.6])
  mean, half = episodes.mean_ci95(v)
  assert mean == pytest.approx(0.675)
  assert half == pytest.approx(1.96 * np.std(v, ddof=1) / 2)


# ------------------------------------------------------------------------------------------
# MAML / FOMAML / Reptile.
# ------------------------------------------------------------------------------------------

def test_maml_gradients_match_the_closed_form_on_a_quadratic():
  # Inner: ½(θ−a)ᵀA(θ−a) (support), outer: ½(θ'−b)ᵀB(θ'−b) (query), one step θ' = θ − αA(θ−a).
  rs = np.random.RandomState(0)
  def spd(n):
    m = rs.randn(n, n)
    return jnp.asarray(m @ m.T / n + np.eye(n), jnp.float32)
  A, B = spd(3), spd(3)
  a, b, theta = (jnp.asarray(rs.randn(3), jnp.float32) for _ in range(3))
  alpha = 0.1
  # x selects the matrix and y the centre: 0 -> (A, a) support, 1 -> (B, b) query.
  def loss(p, x, y):
    m, c = jnp.where(x[0] == 0, A, B), jnp.where(y[0] == 0, a, b)
    return 0.5 * (p - c) @ m @ (p - c)
  tasks = maml.Tasks(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1)), jnp.ones((1, 1)))
  theta1 = theta - alpha * A @ (theta - a)
  outer = B @ (theta1 - b)
  closed = {'maml': (jnp.eye(3) - alpha * A).T @ outer, 'fomaml': outer}
  grads = {}
  for method in ('maml', 'fomaml'):
    meta = maml.MetaLearner(loss, inner_lr=alpha, inner_steps=1, method=method)
    value, grads[method] = jax.jit(meta.meta_grad)(theta, tasks)
    np.testing.assert_allclose(value, 0.5 * (theta1 - b) @ B @ (theta1 - b), rtol=1e-5)
    np.testing.assert_allclose(grads[method], closed[method], rtol=1e-4, atol=1e-5)
  # Their difference is exactly the second-order term −αA·B(θ'−b).
  np.testing.assert_allclose(grads['maml'] - grads['fomaml'], -alpha * A @ outer, atol=1e-5)


def test_reptile_converges_to_the_mean_task_optimum():
  # Tasks ½||θ − c_t||² with c_t ~ N(μ, I): Reptile's fixed point is E[c_t] = μ.
  mu = jnp.array([2.0, -1.0])
  loss = lambda p, x, y: 0.5 * jnp.sum((p - y[0]) ** 2)
  def sample(rng):
    c = mu + rng.standard_normal((8, 1, 2)).astype(np.float32)
    return maml.Tasks(jnp.zeros((8, 1, 1)), c, jnp.zeros((8, 1, 1)), c)
  meta = maml.MetaLearner(loss, inner_lr=0.1, inner_steps=3, method='reptile')
  params, _ = maml.meta_train(meta, jnp.zeros(2), sample, outer_lr=0.05, meta_steps=400)
  np.testing.assert_allclose(params, mu, atol=0.25)


@pytest.fixture(scope='module')
def sinusoid_inits():
  init = maml.mlp_init(jax.random.key(0), (1, 40, 40, 1))
  sample = lambda rng: maml.sinusoid_tasks(rng, 10, 10, 10)
  meta = maml.MetaLearner(maml.mse_loss, inner_lr=0.02, inner_steps=1, method='maml')
  meta_params, losses = maml.meta_train(meta, init, sample, outer_lr=3e-3, meta_steps=2000)
  joint = maml.joint_train(maml.mse_loss, init, sample, lr=3e-3, steps=1000)
  return {'maml': meta_params, 'joint': joint, 'random': init}


def test_maml_adapts_to_new_sinusoids_better_than_joint_training(sinusoid_inits):
  new_tasks = maml.sinusoid_tasks(np.random.default_rng(123), 100, 10, 50)  # unseen seed
  def after(name, steps, lr):
    return maml.adapted_query_loss(maml.mse_loss, sinusoid_inits[name], new_tasks, lr=lr,
                                   steps=steps)
  for steps in (1, 5):
    maml_loss = after('maml', steps, 0.02)
    # The baselines get their best fine-tuning learning rate (0.02 diverges for them).
    for base in ('joint', 'random'):
      best = min(np.nan_to_num(after(base, steps, lr), nan=np.inf) for lr in (0.02, 0.005, 0.001))
      assert maml_loss < 0.7 * best, (steps, base, maml_loss, best)
