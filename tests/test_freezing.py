"""Freezing rules, presets (BERT and ViT names), schedules, and optimizer state across stages."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tl_jax.config import base_config
from tl_jax.train import optim
from tl_jax.train import freezing


def bert_params(n=3):
  """The HF Flax BERT names (tiny shapes)."""
  layer = {'attention': {'self': {k: {'kernel': np.ones((2, 2)), 'bias': np.ones(2)}
                                  for k in ('query', 'key', 'value')},
                         'output': {'dense': {'kernel': np.ones((2, 2)), 'bias': np.ones(2)},
                                    'LayerNorm': {'scale': np.ones(2), 'bias': np.ones(2)}}},
           'intermediate': {'dense': {'kernel': np.ones((2, 4)), 'bias': np.ones(4)}},
           'output': {'dense': {'kernel': np.ones((4, 2)), 'bias': np.ones(2)},
                      'LayerNorm': {'scale': np.ones(2), 'bias': np.ones(2)}}}
  return {'embeddings': {'word_embeddings': {'embedding': np.ones((5, 2))},
                         'LayerNorm': {'scale': np.ones(2), 'bias': np.ones(2)}},
          'encoder': {'layer': {str(i): jax.tree.map(lambda x: x * (i + 1), layer)
                                for i in range(n)}},
          'pooler': {'dense': {'kernel': np.ones((2, 2)), 'bias': np.ones(2)}},
          'head': {'kernel': np.ones((2, 3)), 'bias': np.ones(3)}}


def vit_params(n=3):
  """The HF Flax ViT names: final `layernorm`, named heads."""
  layer = {'attention': {'attention': {'query': {'kernel': np.ones((2, 2))}}},
           'layernorm_before': {'scale': np.ones(2)}}
  return {'embeddings': {'cls_token': np.ones((1, 1, 2)),
                         'patch_embeddings': {'projection': {'kernel': np.ones((2, 2, 3, 2))}}},
          'encoder': {'layer': {str(i): layer for i in range(n)}},
          'layernorm': {'scale': np.ones(2)},
          'heads': {'digits': {'kernel': np.ones((2, 10))}, 'rot': {'kernel': np.ones((2, 4))}}}


def frozen_names(params, rules):
  return {n for n, g in freezing.assign_groups(params, rules, log=False).items()
          if g == freezing.FROZEN}


def test_first_match_wins_every_leaf_gets_a_group():
  groups = freezing.assign_groups(
      bert_params(), (('encoder/layer/0/.*', None), ('encoder/.*', 'enc'), ('.*', 'train')))
  assert groups['encoder/layer/0/output/dense/kernel'] == 'frozen'
  assert groups['encoder/layer/2/output/dense/kernel'] == 'enc'
  assert groups['embeddings/word_embeddings/embedding'] == 'train'
  assert len(groups) == len(freezing.param_names(bert_params()))
  assert set(groups.values()) == {'frozen', 'enc', 'train'}
  # 'frozen' is a synonym of None; fullmatch, not search.
  assert frozen_names(bert_params(), (('head/kernel', 'frozen'), ('.*', 'train'))) == {
      'head/kernel'}


def test_uncovered_leaves_and_rules_matching_nothing_are_errors():
  with pytest.raises(freezing.FreezingError, match='7 parameters uncovered') as e:
    freezing.assign_groups(bert_params(), (('encoder/.*', 'train'),))
  for name in ('embeddings/word_embeddings/embedding', 'pooler/dense/kernel', 'head/bias'):
    assert name in str(e.value)
  with pytest.raises(freezing.FreezingError, match="'decoder/.*' matches no parameter"):
    freezing.assign_groups(bert_params(), (('decoder/.*', None), ('.*', 'train')))
  with pytest.raises(freezing.FreezingError, match="'head/.*' matches no parameter"):
    freezing.assign_groups(bert_params(), (('.*', 'train'), ('head/.*', None)))  # shadowed
  with pytest.raises(freezing.FreezingError, match='not a valid regex'):
    freezing.assign_groups(bert_params(), (('encoder/(', None), ('.*', 'train')))
  with pytest.raises(freezing.FreezingError, match='non-empty string or None'):
    freezing.assign_groups(bert_params(), (('.*', 3),))
  with pytest.raises(freezing.FreezingError, match='rules are empty'):
    freezing.assign_groups(bert_params(), ())


def test_matches_are_logged_compactly(caplog):
  caplog.set_level(logging.INFO)
  freezing.assign_groups(bert_params(4), freezing.freeze_bottom(2))
  text = caplog.text
  assert '-> frozen: ' in text and 'embeddings, encoder/layer/{0-1}' in text
  assert '-> train: ' in text and 'encoder/layer/{2-3}, pooler, head' in text


@pytest.mark.parametrize('make', [bert_params, vit_params])
def test_presets_read_the_same_for_bert_and_vit(make):
  params = make(3)
  names = set(freezing.param_names(params))
  emb = {n for n in names if n.startswith('embeddings/')}
  layer = lambda i: {n for n in names if n.startswith(f'encoder/layer/{i}/')}
  heads = {n for n in names if n.startswith(('head/', 'heads/'))}
  assert freezing.num_layers(params) == 3
  assert frozen_names(params, 'bottom:1') == emb | layer(0)
  assert frozen_names(params, 'bottom:0') == emb
  assert frozen_names(params, 'top:1') == emb | layer(0) | layer(1)
  assert frozen_names(params, 'top:3') == emb
  assert frozen_names(params, 'head_only') == names - heads
  assert frozen_names(params, 'all') == set()
  # The helpers are the same rules.
  assert freezing.resolve_rules('top:1', params) == freezing.train_top(1, 3)
  assert frozen_names(params, freezing.head_only()) == names - heads
  with pytest.raises(freezing.FreezingError, match=r'K must be an integer in \[0, 3\]'):
    freezing.resolve_rules('bottom:4', params)
  with pytest.raises(freezing.FreezingError, match='valid: all, head_only, lora, bottom:K, top:K'):
    freezing.resolve_rules('middle', params)


def test_gradual_unfreeze_goes_top_down_one_layer_per_interval():
  params = bert_params(3)
  schedule = freezing.FreezeSchedule(freezing.gradual_unfreeze(3, every=10), params)
  assert schedule.num_stages == 5
  assert [schedule.stage_at(s) for s in (0, 9, 10, 29, 30, 40, 1000)] == [0, 0, 1, 2, 3, 4, 4]
  trainable = [schedule.trainable(k) for k in range(5)]
  blocks = ['pooler/dense/kernel', 'encoder/layer/2/output/dense/kernel',
            'encoder/layer/1/output/dense/kernel', 'encoder/layer/0/output/dense/kernel',
            'embeddings/word_embeddings/embedding']
  for k in range(5):
    assert [b in trainable[k] for b in blocks] == [i <= k for i in range(5)], k
    assert 'head/kernel' in trainable[k]
  # Cohorts: a leaf keeps the label of the stage it started training in.
  labels = schedule.labels(4)
  assert [labels[b] for b in blocks] == [f'train_s{i}' for i in range(5)]
  assert schedule.labels(1)['embeddings/word_embeddings/embedding'] == 'frozen'


def test_chain_thaw_trains_one_block_at_a_time_then_everything():
  params = bert_params(2)
  stages = freezing.chain_thaw(2, every=5)
  schedule = freezing.FreezeSchedule(stages, params)
  assert [s.start_step for s in stages] == [0, 5, 10, 15, 20]
  only = lambda k: {n.split('/')[0] if not n.startswith('encoder/') else n[:15]
                    for n in schedule.trainable(k)}
  assert only(0) == {'pooler', 'head'}
  assert only(1) == {'embeddings'}
  assert only(2) == {'encoder/layer/0'}
  assert only(3) == {'encoder/layer/1'}
  assert schedule.trainable(4) == set(freezing.param_names(params))
  # The head was frozen in between: it comes back with fresh state (a new cohort).
  assert schedule.labels(4)['head/kernel'] == 'train_s4'


def test_schedule_config_errors():
  t = base_config().transfer
  params = bert_params()
  t.schedule = 'thaw'
  with pytest.raises(freezing.FreezingError, match='valid: gradual_unfreeze, chain_thaw'):
    freezing.schedule_from_config(t, params)
  t.schedule = 'gradual_unfreeze'
  with pytest.raises(freezing.FreezingError, match='schedule_every > 0'):
    freezing.schedule_from_config(t, params)
  t.schedule = ''
  t.stages = ((5, 'all'),)
  with pytest.raises(freezing.FreezingError, match='begin at 0'):
    freezing.schedule_from_config(t, params)
  t.stages = ((0, 'head_only'), (10, (('decoder/.*', None), ('.*', 'train'))))
  with pytest.raises(freezing.FreezingError, match='matches no parameter'):
    freezing.schedule_from_config(t, params)  # every stage is checked at start-up
  t.stages = ()
  t.freeze_preset = 'top:2'
  schedule = freezing.schedule_from_config(t, params)
  assert schedule.num_stages == 1 and 'encoder/layer/0/output/dense/kernel' not in (
      schedule.trainable(0))


def _opt_config(**kw):
  opt = base_config().optimizer
  opt.learning_rate = 0.1
  opt.schedule = 'constant'
  opt.grad_clip_norm = 0.0
  opt.weight_decay = 0.0
  for k, v in kw.items():
    opt[k] = v
  return opt


def _train(tx, params, state, steps):
  for _ in range(steps):
    grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_frozen_leaves_have_no_state_and_stage_changes_keep_it():
  params = jax.tree.map(jnp.asarray, bert_params(2))
  stages = [freezing.Stage(0, 'top:1'), freezing.Stage(3, 'all')]
  schedule = freezing.FreezeSchedule(stages, params)
  opt = _opt_config()
  lr = optim.learning_rate_schedule(opt, 10)
  tx0 = optim.optimizer_for_stage(opt, schedule, 0, params, lr)
  state0 = tx0.init(params)
  adam0 = state0[0].inner_states['train_s0'].inner_state[0]
  top = schedule.trainable(0)
  for name, mu in freezing.flatten(adam0.mu).items():
    assert isinstance(mu, optax.MaskedNode) == (name not in top), name
  assert state0[0].inner_states['frozen'].inner_state == optax.EmptyState()

  trained, state0 = _train(tx0, params, state0, 3)
  before, after = freezing.flatten(params), freezing.flatten(trained)
  for name in before:  # frozen leaves do not move (set_to_zero)
    assert np.array_equal(before[name], after[name]) == (name not in top), name

  tx1 = optim.optimizer_for_stage(opt, schedule, 1, params, lr)
  state1 = optim.migrate_opt_state(state0, tx1, trained)
  old = state0[0].inner_states['train_s0'].inner_state[0]
  kept = state1[0].inner_states['train_s0'].inner_state[0]
  fresh = state1[0].inner_states['train_s1'].inner_state[0]
  assert int(kept.count) == 3 and int(fresh.count) == 0 and int(state1[1].count) == 3
  old_mu, old_nu = freezing.flatten(old.mu), freezing.flatten(old.nu)
  kept_mu, kept_nu = freezing.flatten(kept.mu), freezing.flatten(kept.nu)
  fresh_mu = freezing.flatten(fresh.mu)
  for name in before:
    if name in top:  # identical moments right after the switch
      assert np.array_equal(kept_mu[name], old_mu[name]) and np.any(kept_mu[name] != 0), name
      assert np.array_equal(kept_nu[name], old_nu[name]), name
      assert isinstance(fresh_mu[name], optax.MaskedNode)
    else:  # newly trainable: fresh init state
      assert isinstance(kept_mu[name], optax.MaskedNode)
      assert not np.any(fresh_mu[name]), name
  # The optax recipe (re-init the new transformation) would have thrown the moments away.
  reinit = tx1.init(trained)[0].inner_states['train_s0'].inner_state[0]
  assert not np.any(freezing.flatten(reinit.mu)['head/kernel'])
  _train(tx1, trained, state1, 1)  # and the migrated state is usable

  # A leaf that stops training loses its state (chain-thaw style).
  thaw = freezing.FreezeSchedule([freezing.Stage(0, 'all'), freezing.Stage(1, 'head_only')],
                                 params)
  txa = optim.optimizer_for_stage(opt, thaw, 0, params, lr)
  txb = optim.optimizer_for_stage(opt, thaw, 1, params, lr)
  _, sa = _train(txa, params, txa.init(params), 1)
  sb = optim.migrate_opt_state(sa, txb, params)
  mu_b = freezing.flatten(sb[0].inner_states['train_s0'].inner_state[0].mu)
  assert isinstance(mu_b['pooler/dense/kernel'], optax.MaskedNode)
  assert np.any(mu_b['head/kernel'])
