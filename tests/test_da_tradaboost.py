"""TrAdaBoost with few labelled target examples: a third of the source follows another labelling
rule than the target (labels flipped where x1 > 0.43, a third of it). Those source examples must fade out of the
weights, and the boosted classifier must beat a learner trained on source + target pooled."""

import numpy as np
import jax.numpy as jnp

from tl_jax.analysis import linear_probe
from tl_jax.analysis import tradaboost as tb


def test_tradaboost_downweights_conflicting_source_and_beats_pooling():
  rs = np.random.RandomState(0)
  rule = lambda x: (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
  x_s = rs.randn(300, 2).astype(np.float32)
  conflicting = x_s[:, 1] > 0.43  # a third of the source
  y_s = np.where(conflicting, 1 - rule(x_s), rule(x_s))
  x_t = rs.randn(20, 2).astype(np.float32)  # the few labelled target examples
  y_t = rule(x_t)
  x_test = rs.randn(1000, 2).astype(np.float32)
  y_test = rule(x_test)

  model = tb.tradaboost(x_s, y_s, x_t, y_t, num_classes=2, rounds=20, steps=200)
  w = model.source_weights
  assert w[conflicting].mean() < 0.2 * w[~conflicting].mean(), (w[conflicting].mean(),
                                                               w[~conflicting].mean())
  boosted = np.mean(model.predict(x_test) == y_test)

  x = jnp.asarray(np.concatenate([x_s, x_t]))
  y = jnp.asarray(np.concatenate([y_s, y_t]))
  learner = linear_probe.fit_full_batch_jit(x, y, 2, l2=2e-3, learning_rate=0.1, num_steps=200,
                                            standardize=False)  # TrAdaBoost's, unweighted
  pooled = linear_probe.accuracy(learner, x_test, y_test)
  assert boosted > pooled + 0.1, (boosted, pooled)
  assert boosted > 0.9, boosted
