"""LoRA adapters: a fresh adapter changes nothing, the adapted projection is W x + (α/r)·B A x
(closed form), the 'lora' preset trains only adapters and head, and the export merges them into a
plain checkpoint that loads without LoRA and computes the same logits."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax import models
from tl_jax.models import lora
from tl_jax.models.vit import ViTConfig, ViTModel
from tl_jax.train import freezing

from test_param_methods import load_config, synthetic_batch, tiny_model, train_tiny


def with_random_adapters(params, seed=1, scale=0.5):
  """Adapters as if trained: B no longer zero."""
  flat = freezing.flatten(params)
  rs = np.random.RandomState(seed)
  return freezing.unflatten({
      k: (jnp.asarray(rs.randn(*v.shape) * scale, v.dtype) if k.endswith('lora_B') else v)
      for k, v in flat.items()})


def logits(module, params, ids):
  return np.asarray(module.apply({'params': params}, ids).logits)


def test_fresh_adapters_compute_exactly_what_the_base_model_does():
  base, base_params = tiny_model()
  adapted, _ = tiny_model(lora_rank=4)
  ids = synthetic_batch(n=4)['input_ids']
  # The adapted tree is the base tree plus fresh adapters (B = 0, A random) on query/value only.
  shapes = jax.eval_shape(adapted.init, jax.random.key(0), ids)['params']
  flat_shapes = freezing.flatten(shapes)
  adapters = sorted(k for k in flat_shapes if '_lora/' in k)
  assert adapters == sorted(f'encoder/layer/{i}/attention/self/{p}_lora/lora_{m}'
                            for i in range(2) for p in ('query', 'value') for m in 'AB')
  assert flat_shapes['encoder/layer/0/attention/self/query_lora/lora_A'].shape == (32, 4)
  assert flat_shapes['encoder/layer/0/attention/self/query_lora/lora_B'].shape == (4, 32)
  params = dict(freezing.flatten(base_params))
  for i, k in enumerate(adapters):
    params[k] = lora.initial_value(tuple(k.split('/')), jax.random.key(i),
                                   flat_shapes[k].shape, jnp.float32)
  params = freezing.unflatten(params)
  assert np.abs(np.asarray(params['encoder']['layer']['0']['attention']['self']['query_lora'][
      'lora_A'])).max() > 0  # A is random, or no gradient would ever reach B
  np.testing.assert_array_equal(logits(adapted, params, ids), logits(base, base_params, ids))


def test_adapted_projection_is_the_closed_form_and_merge_folds_it_into_the_kernel():
  module, params = tiny_model(lora_rank=2, lora_alpha=6.0, lora_targets=('query', 'key',
                                                                          'value'))
  params = with_random_adapters(params)
  x = jnp.asarray(np.random.RandomState(0).randn(3, 5, 32), jnp.float32)
  attn = params['encoder']['layer']['0']['attention']['self']
  # Queries and keys by hand, x W + b + (α/r)·(x A) B, give the attention probabilities.
  sa = models.layers.self_attention(module.config, lambda *a: None, 'self')
  _, probs = sa.apply({'params': attn}, x, None, False)
  w, b = np.asarray(attn['query']['kernel']), np.asarray(attn['query']['bias'])
  a_, b_ = (np.asarray(attn['query_lora']['lora_A']), np.asarray(attn['query_lora']['lora_B']))
  q = x @ w + b + 3.0 * (x @ a_) @ b_
  kk = (x @ np.asarray(attn['key']['kernel']) + np.asarray(attn['key']['bias'])
        + 3.0 * (x @ np.asarray(attn['key_lora']['lora_A'])) @ np.asarray(
            attn['key_lora']['lora_B']))
  heads = lambda t: np.asarray(t).reshape(3, 5, 2, 16)
  scores = np.einsum('bqhd,bkhd->bhqk', heads(q), heads(kk)) / 4.0
  ref = np.exp(scores - scores.max(-1, keepdims=True))
  np.testing.assert_allclose(probs, ref / ref.sum(-1, keepdims=True), atol=1e-5)

  merged = lora.merge(params, module.config)
  assert not any('_lora/' in k for k in freezing.flatten(merged))
  plain = module.clone(config=dataclasses.replace(module.config, lora_rank=0))
  ids = synthetic_batch(n=4)['input_ids']
  lora_logits = logits(module, params, ids)
  assert np.abs(lora_logits - logits(plain, merge_off(params), ids)).max() > 1e-3
  np.testing.assert_allclose(logits(plain, merged, ids), lora_logits, atol=1e-5)


def merge_off(params):
  """The base params without their adapters."""
  return freezing.unflatten({k: v for k, v in freezing.flatten(params).items()
                             if '_lora/' not in k})


def test_lora_preset_trains_only_adapters_and_head_and_keeps_the_backbone_bitwise():
  model = tiny_model(lora_rank=4)
  batches = [{'target': synthetic_batch(position=3)}] * 6  # one batch: its loss must fall
  config = load_config('lora_bbc.py', steps=6, lr=3e-2)
  initial, final, metrics = train_tiny(config, model, batches)
  moved = {k for k in initial if not np.array_equal(initial[k], final[k])}
  assert moved, 'nothing trained'
  assert all('_lora/' in k or k.startswith('head/') for k in moved), sorted(moved)
  assert any(k.endswith('lora_B') for k in moved) and 'head/kernel' in moved
  assert metrics[-1]['target/loss'] < 0.8 * metrics[0]['target/loss']

  rules = freezing.resolve_rules('lora', model[1])
  trainable = freezing.assign_groups(model[1], rules, log=False)
  assert sum(g != freezing.FROZEN for g in trainable.values()) == 8 + 2  # adapters + head
  with pytest.raises(freezing.FreezingError, match='lora_rank > 0'):
    freezing.resolve_rules('lora', tiny_model()[1])


def test_export_merges_adapters_into_a_plain_checkpoint(tmp_path):
  module, params = tiny_model(lora_rank=4)
  params = with_random_adapters(params)
  ids = synthetic_batch(n=4)['input_ids']
  models.save_pretrained(module, params, tmp_path / 'export')
  loaded, loaded_params = models.load_pretrained(tmp_path / 'export')
  assert loaded.config.lora_rank == 0
  assert not any('_lora/' in k for k in freezing.flatten(loaded_params))
  np.testing.assert_allclose(logits(loaded, loaded_params, ids), logits(module, params, ids),
                             atol=1e-5)
  # Loading the export WITH adapters again: fresh adapters, reported as new keys.
  again, again_params, report = models.load_pretrained(tmp_path / 'export', lora_rank=2,
                                                       with_report=True)
  assert sum('_lora/' in k for k in report.new_keys) == 8
  np.testing.assert_allclose(logits(again, again_params, ids), logits(module, params, ids),
                             atol=1e-5)


def test_vit_adapters_and_bad_options():
  cfg = dict(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_layers=1,
             num_heads=2, intermediate_size=32, num_classes=3)
  module = ViTModel(ViTConfig(**cfg, lora_rank=2, lora_targets=('value',)))
  images = jnp.ones((2, 8, 8, 1))
  params = jax.jit(module.init)(jax.random.key(0), images)['params']
  names = set(freezing.flatten(params))
  assert {'encoder/layer/0/attention/attention/value_lora/lora_A',
          'encoder/layer/0/attention/attention/value_lora/lora_B'} <= names
  assert not any('query_lora' in n for n in names)
  plain = ViTModel(ViTConfig(**cfg))
  np.testing.assert_array_equal(module.apply({'params': params}, images).logits,
                                plain.apply({'params': merge_off(params)}, images).logits)
  with pytest.raises(ValueError, match='lora_targets'):
    ViTConfig(**cfg, lora_rank=2, lora_targets=('dense',))
  with pytest.raises(ValueError, match='lora_rank'):
    ViTConfig(**cfg, lora_rank=-1)
