"""Multi-task: per-task loss weights in closed form, and two heads with different label counts
(3 and 5) learning their own tasks on one backbone in the same steps (configs/multitask_bbc.py)."""

import types

import numpy as np
import pytest

from tl_jax.config import base_config
from tl_jax.methods import multitask, objectives

from test_param_methods import ctx_for, load_config, synthetic_batch, tiny_model, train_tiny


def test_loss_is_the_weighted_sum_of_each_heads_cross_entropy():
  rs = np.random.RandomState(0)
  t_logits, s_logits = rs.randn(6, 3).astype(np.float32), rs.randn(4, 5).astype(np.float32)
  t_labels, s_labels = rs.randint(0, 3, 6), rs.randint(0, 5, 4)
  config = base_config()
  config.data.source.name = 'src'
  config.data.target.head, config.data.source.head = 'a', 'b'
  config.transfer.multitask = multitask.default_config()
  config.transfer.multitask.weights.target = 0.7
  config.transfer.multitask.weights.source = 0.2
  outputs = {'target': types.SimpleNamespace(logits={'a': t_logits, 'b': s_logits[:1]}),
             'source': types.SimpleNamespace(logits={'a': t_logits[:1], 'b': s_logits})}
  batches = {'target': {'label': t_labels}, 'source': {'label': s_labels}}
  loss, metrics = multitask.multitask(ctx_for(config, outputs, batches))

  def ce(logits, labels):
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()

  np.testing.assert_allclose(metrics['target/loss'], ce(t_logits, t_labels), rtol=1e-5)
  np.testing.assert_allclose(metrics['source/loss'], ce(s_logits, s_labels), rtol=1e-5)
  np.testing.assert_allclose(loss, 0.7 * ce(t_logits, t_labels) + 0.2 * ce(s_logits, s_labels),
                             rtol=1e-5)
  del config.transfer['multitask']
  with pytest.raises(objectives.ObjectiveError, match='multitask.default_config'):
    multitask.multitask(ctx_for(config, outputs, batches))


def test_two_heads_with_different_label_counts_train_in_one_step():
  model = tiny_model(num_classes=0, heads=(('fewshot', 3), ('full', 5)))
  config = load_config('multitask_bbc.py', steps=30)
  config.transfer.multitask.weights.source = 0.5
  # Task 'fewshot': first token mod 3; task 'full': first token mod 5. Same rows each step.
  batch = {'target': synthetic_batch(seed=0, num_classes=3),
           'source': synthetic_batch(seed=1, num_classes=5)}
  init, final, metrics = train_tiny(config, model, [batch] * 30)
  first, last = metrics[0], metrics[-1]
  assert init['heads/fewshot/kernel'].shape[-1] == 3 and init['heads/full/kernel'].shape[-1] == 5
  for domain in ('target', 'source'):
    assert last[f'{domain}/accuracy'] >= first[f'{domain}/accuracy'] + 0.3, (domain, first, last)
    assert last[f'{domain}/accuracy'] >= 0.75, (domain, last)
  assert last['loss'] == pytest.approx(last['target/loss'] + 0.5 * last['source/loss'], rel=1e-5)
  for name in ('heads/fewshot/kernel', 'heads/full/kernel', 'embeddings/word_embeddings/embedding'):
    assert not np.array_equal(final[name], init[name]), name
