"""The fine-tuning recipes (configs/head_only_bbc.py, configs/finetune_bbc.py) train until the
target's validation split stops improving (never choosing on test labels), and the head-only
recipe's optimiser reaches what a logistic regression reaches on the same frozen features."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax import config as config_lib
from tl_jax.models import BertConfig, BertModel
from tl_jax.models.forward import forward
from tl_jax.train import freezing, optim, parallel
from tl_jax.train.step import TrainCore

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'
RECIPES = ('head_only_bbc.py', 'finetune_bbc.py', 'l2sp_bbc.py', 'bss_bbc.py', 'lora_bbc.py',
           'distill_bbc.py')


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_stops_early_on_a_validation_metric(name):
  config = config_lib.from_file(CONFIGS / name)
  t = config.train
  domain, split, _ = t.best_metric.split('/')
  assert (domain, split) == ('target', 'validation'), t.best_metric
  assert 'test' not in t.best_metric and split in config.data.target.eval_splits
  assert t.best_mode == ('max' if t.best_metric.endswith('accuracy') else 'min')
  assert t.early_stopping_patience > 0
  # Evals often enough for the patience to end the run well before num_steps.
  assert 0 < t.eval_every and t.eval_every * (t.early_stopping_patience + 1) < t.num_steps
  # No warmup, and no decay that the stop would cut short: the LR is still >= 0.9 of its peak
  # twice as far as the earliest stop.
  lr = optim.learning_rate_schedule(config.optimizer, t.num_steps)
  assert config.optimizer.warmup_steps == 0
  assert lr(2 * t.eval_every * (t.early_stopping_patience + 1)) >= 0.9 * lr(0)
  assert config.data.target.few_shot == 8  # the few_shot_bbc draw the other tables use


def test_every_table_method_shares_the_stopping_settings():
  """The fine-tuning table's sweep (configs/sweeps/finetune_bbc.py) runs each method's file as
  the keys it changes over finetune_bbc.py: a train.* or data.* key of a method's own would make
  its row stop (or draw) differently from the others'."""
  from tl_jax.configs.sweeps import finetune_bbc as sweep_file  # pylint: disable=g-import-not-at-top
  full = config_lib.from_file(CONFIGS / 'finetune_bbc.py')
  for name, (path, _) in sweep_file.METHODS.items():
    method = config_lib.from_file(CONFIGS / path)
    assert method.train.to_dict() == full.train.to_dict(), name
    assert method.data.to_dict() == full.data.to_dict(), name
  runs = sweep_file.get_sweep('seeds=1')
  assert not any(k.startswith(('train.', 'data.')) for r in runs for k in r
                 if k not in ('data.shuffle_seed', 'data.few_shot_seed')), runs


def test_head_only_recipe_matches_logistic_regression_on_frozen_features():
  """A frozen tiny BERT's mean-pooled features, labels linear in them: the head trained by the
  recipe's optimiser (LR, schedule, weight decay, clipping, batch size) reaches the held-out
  accuracy of scikit-learn's logistic regression on the same features and examples."""
  linear_model = pytest.importorskip('sklearn.linear_model')
  config = config_lib.from_file(CONFIGS / 'head_only_bbc.py')
  module = BertModel(BertConfig(
      vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
      max_position_embeddings=16, num_classes=3, pooling=config.model.pooling,
      dropout_rate=config.model.dropout_rate,
      attention_dropout_rate=config.model.attention_dropout_rate))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  rs = np.random.RandomState(0)
  n_train, n_test = 48, 400
  ids = rs.randint(1, 50, (n_train + n_test, 8)).astype(np.int32)
  inputs = {'input_ids': ids, 'attention_mask': np.ones_like(ids)}
  x = np.asarray(forward(module, params, inputs, train=False).pooled)
  y = np.argmax(((x - x.mean(0)) / x.std(0)) @ rs.randn(x.shape[1], 3), -1).astype(np.int32)
  ref = linear_model.LogisticRegression(max_iter=5000).fit(x[:n_train], y[:n_train])
  ref_acc = ref.score(x[n_train:], y[n_train:])
  assert ref_acc > 0.6  # a learnable problem

  core = TrainCore(config, module, params, pretrained_params=params,
                   launcher=parallel.make_launcher('shard_map', jax.devices()[:1]))
  state = core.init_state(params, rng=config.seed)
  bs = config.data.batch_size
  order = np.concatenate([rs.permutation(n_train) for _ in range(200 * bs // n_train + 1)])
  for step in range(200):  # the recipe stops on validation within ~100-200 steps on BBC
    rows = order[step * bs:(step + 1) * bs]
    batch = {'target': {k: v[rows] for k, v in inputs.items()} | {'label': y[rows]}}
    state, _ = core.train_step(state, batch)
  final = jax.device_get(core.to_host(state).params)
  moved = freezing.flatten(final)
  assert all(np.array_equal(v, freezing.flatten(params)[k]) for k, v in moved.items()
             if not k.startswith('head/'))  # the backbone stayed frozen
  logits = x[n_train:] @ final['head']['kernel'] + final['head']['bias']
  head_acc = float(np.mean(np.argmax(logits, -1) == y[n_train:]))
  assert head_acc >= ref_acc - 0.02, (head_acc, ref_acc)
