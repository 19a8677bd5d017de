"""The data-parallel train step on a tiny random BertModel: launchers agree, freezing is exact and
costs no backward, stage switches keep optimizer state, accumulation, bad input."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tl_jax.config import base_config
from tl_jax.models import BertConfig, BertModel, ViTConfig, ViTModel
from tl_jax.train import optim, parallel
from tl_jax.train.state import TrainState
from tl_jax.models.forward import forward
from tl_jax.train.step import TrainCore, make_train_step, summarize_eval
from tl_jax.train import freezing
from tl_jax.methods import lambdas, objectives

SEQ = 8


def tiny_model(**kw):
  cfg = dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
             max_position_embeddings=16, num_classes=3, dropout_rate=0.0,
             attention_dropout_rate=0.0, pooling='pooler')
  module = BertModel(BertConfig(**{**cfg, **kw}))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, SEQ), jnp.int32))['params']
  return module, params


def host_batch(n=32, seed=0, mask=False):
  rs = np.random.RandomState(seed)
  target = {'input_ids': rs.randint(1, 50, (n, SEQ)).astype(np.int32),
            'attention_mask': np.ones((n, SEQ), np.int32),
            'label': rs.randint(0, 3, (n,)).astype(np.int32)}
  if mask:  # padding rows spread unevenly over the devices
    target['mask'] = np.ones(n, bool)
    target['mask'][[1, 2, 3, 9, 30]] = False
  return {'target': target}


def config(**opt):
  c = base_config()
  c.train.num_steps = 10
  c.optimizer.learning_rate = 1e-2
  c.optimizer.warmup_steps = 2
  c.transfer.freeze_preset = 'bottom:1'
  for k, v in opt.items():
    c.optimizer[k] = v
  return c


@pytest.fixture(scope='module')
def model():
  return tiny_model()


def run(model, mode, devices, steps=2, mask=True, core=None, **cfg):
  """(core, single-copy state, host metrics per step) after `steps` steps from the init."""
  module, params = model
  core = core or TrainCore(config(**cfg), module, params,
                           launcher=parallel.make_launcher(mode, devices))
  state = core.init_state(params, rng=0)
  metrics = []
  for i in range(steps):
    batch = host_batch(seed=i, mask=mask)
    if not mask:  # same tree structure as the masked batch: no recompile
      batch['target']['mask'] = np.ones(32, bool)
    state, m = core.train_step(state, batch)
    metrics.append(core.host_metrics(m))
  return core, core.to_host(state), metrics


def flat(tree):
  return freezing.flatten(jax.device_get(tree))


@pytest.fixture(scope='module')
def runs(model):
  """The reference runs, compiled once and shared: 1 vs 8 devices, pmap vs shard_map."""
  devices = jax.devices()
  assert len(devices) == 8
  return {key: run(model, key[0], devices[:key[1]])
          for key in (('shard_map', 1), ('shard_map', 8), ('pmap', 8))}


def test_launchers_and_device_counts_agree_and_frozen_leaves_are_exact(model, runs):
  ref_core, ref_state, ref_metrics = runs['shard_map', 1]
  ref = flat(ref_state.params)
  for key, (_, state, metrics) in runs.items():
    for name, value in flat(state.params).items():
      np.testing.assert_allclose(value, ref[name], atol=1e-5, rtol=1e-5, err_msg=f'{key} {name}')
    for m, r in zip(metrics, ref_metrics):
      assert m.keys() == r.keys()
      for k in m:
        np.testing.assert_allclose(m[k], r[k], atol=1e-5, rtol=1e-5, err_msg=f'{key} {k}')
  assert ref_metrics[0]['is_finite'] == 1.0 and ref_metrics[0]['target/loss'] > 0

  # Frozen leaves: bit-identical after training, and no optimizer state at all.
  init = freezing.flatten(model[1])
  trainable = ref_core.schedule.trainable(0)
  assert {n for n in init if n not in trainable} == {
      n for n in init if n.startswith(('embeddings/', 'encoder/layer/0/'))}
  for name, value in ref.items():
    if name in trainable:
      assert not np.array_equal(value, init[name]), name
    else:
      assert value.tobytes() == np.asarray(init[name]).tobytes(), name
  adam = ref_state.opt_state[1].inner_states['train_s0'].inner_state[0]
  frozen_mu = freezing.flatten(adam.mu)
  assert all(isinstance(frozen_mu[n], optax.MaskedNode) for n in init if n not in trainable)
  assert ref_state.opt_state[1].inner_states['frozen'].inner_state == optax.EmptyState()
  assert int(adam.count) == 2 and int(ref_state.step) == 2


def test_frozen_layers_get_no_backward_pass(model):
  module, params = model
  c = config()
  objective = objectives.from_config(c)
  lr = optim.learning_rate_schedule(c.optimizer, 10)
  batch = jax.tree.map(jnp.asarray, host_batch(n=4))
  launcher = parallel.make_launcher('shard_map', jax.devices()[:1])

  def count_dots(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
      n += eqn.primitive.name == 'dot_general'
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        n += count_dots(sub)
    return n

  def step_dots(preset):
    c.transfer.freeze_preset = preset
    schedule = freezing.schedule_from_config(c.transfer, params)
    tx = optim.optimizer_for_stage(c.optimizer, schedule, 0, params, lr)
    fn = make_train_step(module, tx=tx, trainable=schedule.trainable(0), objective=objective,
                         config=c, lr_schedule=lr, lam_fn=lambdas.constant(1.0))
    state = TrainState.create(params, tx, 0)
    step = launcher.compile(fn, sharded_args=(1,), num_args=3)
    return count_dots(jax.make_jaxpr(step)(state, batch, None).jaxpr)

  forward_dots = count_dots(jax.make_jaxpr(
      lambda p: forward(module, p, batch['target'], train=False).logits)(params).jaxpr)
  head_only, full = step_dots('head_only'), step_dots('all')
  # Head only: the forward plus one dot (the head kernel's gradient) and nothing below it.
  assert head_only == forward_dots + 1, (head_only, forward_dots)
  assert full >= 3 * forward_dots - 2, (full, forward_dots)


def test_stage_switch_keeps_optimizer_state(model):
  module, params = model
  c = config(grad_clip_norm=0.0)
  c.transfer.freeze_preset = ''
  c.transfer.stages = ((0, 'top:1'), (1, 'all'))
  core = TrainCore(c, module, params, launcher=parallel.make_launcher('pmap', jax.devices()[:2]))
  state = core.init_state(params, rng=0)
  state, _ = core.train_step(state, host_batch())
  assert core.stage == 1 and int(core.to_host(state).stage) == 1
  host = core.to_host(state)
  inner = host.opt_state[0].inner_states
  assert set(inner) == {'train_s0', 'train_s1'}  # nothing frozen in stage 1
  kept, fresh = inner['train_s0'].inner_state[0], inner['train_s1'].inner_state[0]
  mu, nu = freezing.flatten(kept.mu), freezing.flatten(kept.nu)
  mu_new, nu_new = freezing.flatten(fresh.mu), freezing.flatten(fresh.nu)
  assert int(kept.count) == 1 and int(fresh.count) == 0
  assert int(host.opt_state[1].count) == 1  # the LR schedule does not restart
  top = core.schedule.trainable(0)
  checked = 0
  for name in freezing.param_names(params):
    if name in top:  # Adam after one step: mu = 0.1 g, nu = 0.001 g², so mu²/nu = 10.
      m, v = np.asarray(mu[name]), np.asarray(nu[name])
      assert isinstance(mu_new[name], optax.MaskedNode)
      big = v > 1e-20  # (the attention key bias has no gradient: softmax ignores it)
      np.testing.assert_allclose(m[big] ** 2 / v[big], 10.0, rtol=1e-3, err_msg=name)
      checked += big.any()
    else:
      assert isinstance(mu[name], optax.MaskedNode)
      assert not np.any(np.asarray(mu_new[name])) and not np.any(np.asarray(nu_new[name]))
  assert checked >= len(top) - 1
  # The migrated state keeps training under the new stage (one recompile).
  state, m = core.train_step(state, host_batch(seed=1))
  assert core.host_metrics(m)['is_finite'] == 1.0
  assert int(core.to_host(state).opt_state[0].inner_states['train_s1'].inner_state[0].count) == 1
  tree = jax.tree.structure
  assert tree(core.abstract_state(2)) == tree(core.to_host(state))


def test_accumulation_equals_big_batch(model, runs):
  _, big, big_m = run(model, None, None, mask=False, core=runs['shard_map', 8][0])  # compiled
  _, acc, acc_m = run(model, 'shard_map', jax.devices(), mask=False, accumulate_steps=4)
  ref = flat(big.params)
  for name, value in flat(acc.params).items():
    np.testing.assert_allclose(value, ref[name], atol=1e-5, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(acc_m[1]['loss'], big_m[1]['loss'], rtol=1e-5)


def test_nonfinite_step_is_flagged_and_skipped(model, runs):
  module, params = model
  core = runs['shard_map', 8][0]  # its step is compiled already
  bad = jax.tree.map(lambda x: x, params)
  bad['head']['bias'] = bad['head']['bias'].at[0].set(jnp.nan)
  state, m = core.train_step(core.init_state(bad, rng=0), host_batch(mask=True))
  assert core.host_metrics(m)['is_finite'] == 0.0
  host = core.to_host(state)
  assert int(host.step) == 1 and int(host.opt_state[2].count) == 0  # update skipped
  np.testing.assert_array_equal(host.params['encoder']['layer']['1']['output']['dense']['kernel'],
                                params['encoder']['layer']['1']['output']['dense']['kernel'])


def test_eval_step_sums_over_real_rows(model, runs):
  module, params = model
  core = runs['pmap', 8][0]
  state = core.init_state(params, rng=0)
  batch = host_batch(n=8)['target']
  batch['mask'] = np.array([1, 1, 0, 1, 1, 1, 1, 0], bool)
  out = summarize_eval([core.eval_step(state.params, batch)])
  logits = module.apply({'params': params}, input_ids=batch['input_ids'],
                        attention_mask=batch['attention_mask']).logits
  keep = batch['mask']
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  acc = np.argmax(logits, -1) == batch['label']
  assert out['count'] == 6
  np.testing.assert_allclose(out['loss'], ce[keep].mean(), rtol=1e-5)
  np.testing.assert_allclose(out['accuracy'], acc[keep].mean(), rtol=1e-6)


def test_bf16_compute_keeps_fp32_params_and_optimizer():
  module, params = tiny_model(dtype='bfloat16')
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  core = TrainCore(config(), module, params,
                   launcher=parallel.make_launcher('shard_map', jax.devices()[:2]))
  state, m = core.train_step(core.init_state(params, rng=0), host_batch())
  host = core.to_host(state)
  assert core.host_metrics(m)['is_finite'] == 1.0
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(host.params))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(host.opt_state)
             if jnp.issubdtype(x.dtype, jnp.floating))


def test_vit_with_named_heads_trains_its_top_layer():
  module = ViTModel(ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32,
                              num_layers=2, num_heads=2, intermediate_size=64,
                              heads=(('digits', 10), ('rot', 4))))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  c = config(warmup_steps=0)
  c.transfer.freeze_preset = 'top:1'
  c.data.target.head = 'digits'
  core = TrainCore(c, module, params, launcher=parallel.make_launcher('pmap', jax.devices()[:2]))
  rs = np.random.RandomState(0)
  batch = {'target': {'image': rs.rand(8, 8, 8, 1).astype(np.float32),
                      'label': rs.randint(0, 10, (8,)).astype(np.int32)}}
  state, m = core.train_step(core.init_state(params, rng=0), batch)
  assert core.host_metrics(m)['is_finite'] == 1.0
  after, before = flat(core.to_host(state).params), freezing.flatten(params)
  for name in before:
    moved = not np.array_equal(after[name], before[name])
    should = name.startswith(('encoder/layer/1/', 'layernorm/', 'pooler/', 'heads/digits/'))
    # (softmax ignores the key bias, and the unused 'rot' head gets no gradient: both may stay)
    if not name.endswith('/key/bias') and not name.startswith('heads/rot/'):
      assert moved == should, name


def test_bad_batches_and_settings(model, runs):
  module, params = model
  launcher = parallel.make_launcher('pmap', jax.devices())
  with pytest.raises(parallel.BatchSizeError, match='multiple of 8'):
    launcher.put_batch(host_batch(n=30))
  with pytest.raises(parallel.BatchSizeError, match='accumulate_steps=3'):
    launcher.put_batch(host_batch(n=16), micro_steps=3)
  core = runs['shard_map', 8][0]
  with pytest.raises(ValueError, match='got keys \\[.attention_mask., .input_ids., .label.\\]'):
    core.train_step(None, host_batch()['target'])
  with pytest.raises(parallel.ParallelError, match='valid: pmap, shard_map'):
    parallel.make_launcher('pjit')
  with pytest.raises(ValueError, match='valid: adamw, sgd, adafactor'):
    TrainCore(config(name='adam'), module, params, launcher=launcher)
  with pytest.raises(ValueError, match='valid: constant, warmup_cosine, warmup_linear'):
    TrainCore(config(schedule='cosine'), module, params, launcher=launcher)
  with pytest.raises(ValueError, match='valid: .*cross_entropy.*l2sp'):
    c = config()
    c.transfer.objectives = ('cross_entropy', 'l2_sp')
    TrainCore(c, module, params, launcher=launcher)
  with pytest.raises(ValueError, match='need the pretrained params'):
    c = config()
    c.transfer.objectives = ('cross_entropy', 'l2sp')
    TrainCore(c, module, params, launcher=launcher)


@pytest.mark.parametrize('name', ['sgd', 'adafactor'])
def test_optimizers_by_name_step_with_l2sp(model, name):
  module, params = model
  c = config(name=name)
  c.transfer.freeze_preset = 'head_only'  # small and quick to compile
  c.transfer.objectives = ('cross_entropy', 'l2sp')
  c.transfer.l2sp_alpha = 0.5
  core = TrainCore(c, module, params, pretrained_params=params,
                   launcher=parallel.make_launcher('shard_map', jax.devices()[:1]))
  state = core.init_state(params, rng=0)
  losses, heads = [], []
  for i in range(3):
    heads.append(jax.device_get(core.to_host(state).params['head']))
    state, m = core.train_step(state, host_batch(seed=0))
    m = core.host_metrics(m)
    losses.append(m['target/loss'])
    # L2-SP toward the pretrained (initial) head, measured on the params the step started from.
    dist = sum(np.sum((heads[-1][k] - heads[0][k]) ** 2) for k in heads[0])
    np.testing.assert_allclose(m['l2sp/shared_sq_dist'], dist, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(m['loss/l2sp'], 0.25 * dist, rtol=1e-4, atol=1e-12)
  assert losses[-1] < losses[0] and m['l2sp/shared_sq_dist'] > 0


def test_layer_decay_and_multipliers_scale_updates(model):
  _, params = model
  c = config(name='sgd', momentum=0.0, weight_decay=0.0, schedule='constant', warmup_steps=0,
             grad_clip_norm=0.0, layer_decay=0.5, lr_multipliers=(('.*/bias', 2.0),),
             group_lr_multipliers=(('head', 3.0),))
  rules = (('head/.*', 'head'), ('embeddings/.*', None), ('.*', 'train'))
  schedule = freezing.FreezeSchedule([freezing.Stage(0, rules)], params)
  scales = optim.lr_scales(c.optimizer, params, schedule.groups[0])
  lr = 1e-2
  expected = {
      'head/kernel': 3.0, 'head/bias': 6.0, 'pooler/dense/kernel': 1.0,
      'encoder/layer/1/output/dense/kernel': 0.5, 'encoder/layer/0/output/dense/kernel': 0.25,
      'encoder/layer/0/output/dense/bias': 0.5, 'embeddings/word_embeddings/embedding': 0.125}
  for name, value in expected.items():
    assert scales[name] == value, name
  tx = optim.build_optimizer(c.optimizer, schedule.labels(0), scales,
                             optim.learning_rate_schedule(c.optimizer, 10))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  flat_updates = freezing.flatten(updates)
  for name, value in expected.items():
    want = 0.0 if name.startswith('embeddings/') else -lr * value  # embeddings frozen here
    np.testing.assert_allclose(flat_updates[name], want, rtol=1e-6, err_msg=name)
  with pytest.raises(ValueError, match='matches nothing'):
    optim.lr_scales(config(lr_multipliers=(('decoder/.*', 2.0),)).optimizer, params,
                    schedule.groups[0])
  with pytest.raises(ValueError, match="groups \\['backbone'\\]"):
    optim.lr_scales(config(group_lr_multipliers=(('backbone', 2.0),)).optimizer, params,
                    schedule.groups[0])


def test_gradient_clipping_uses_the_global_norm_of_trainable_grads(model):
  _, params = model
  c = config(name='sgd', momentum=0.0, weight_decay=0.0, schedule='constant', warmup_steps=0,
             grad_clip_norm=0.5)
  schedule = freezing.FreezeSchedule([freezing.Stage(0, 'head_only')], params)
  tx = optim.optimizer_for_stage(c.optimizer, schedule, 0, params,
                                 optim.learning_rate_schedule(c.optimizer, 10))
  grads = jax.tree.map(jnp.zeros_like, params)  # frozen grads are zeros in the step
  grads['head'] = {'kernel': jnp.full((32, 3), 2.0), 'bias': jnp.full((3,), 2.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  norm = 2.0 * np.sqrt(32 * 3 + 3)
  np.testing.assert_allclose(updates['head']['kernel'], -1e-2 * 2.0 * 0.5 / norm, rtol=1e-5)
  assert not np.any(updates['pooler']['dense']['kernel'])


def test_learning_rate_schedules():
  c = config(schedule='warmup_linear', warmup_steps=2)
  s = optim.learning_rate_schedule(c.optimizer, 10)
  np.testing.assert_allclose([s(0), s(1), s(2), s(6), s(10)], [0, 5e-3, 1e-2, 5e-3, 0],
                             atol=1e-9)
  s = optim.learning_rate_schedule(config(schedule='warmup_cosine', warmup_steps=2).optimizer, 10)
  np.testing.assert_allclose([s(1), s(2), s(6), s(10)], [5e-3, 1e-2, 5e-3, 0], atol=1e-9)
  with pytest.raises(ValueError, match='warmup_steps=10'):
    optim.learning_rate_schedule(config(warmup_steps=10).optimizer, 10)


def test_maybe_initialize_distributed(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: calls.append(kw))
  monkeypatch.setattr(jax.distributed, 'is_initialized', lambda: False)
  assert not parallel.maybe_initialize_distributed('auto', environ={})
  assert not parallel.maybe_initialize_distributed('off', environ={'SLURM_NTASKS': '4'})
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234', 'JAX_NUM_PROCESSES': '2',
         'JAX_PROCESS_ID': '1'}
  assert parallel.maybe_initialize_distributed('auto', environ=env)
  assert calls == [dict(coordinator_address='10.0.0.1:1234', num_processes=2, process_id=1)]
  assert parallel.maybe_initialize_distributed('on', environ={})
  assert calls[-1] == {}
  with pytest.raises(ValueError, match='valid: auto, on, off'):
    parallel.maybe_initialize_distributed('yes')
