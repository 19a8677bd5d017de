"""Our Flax BERT vs HF transformers 4.57 FlaxBertModel on a tiny random config.

Both run jitted on the same random params (one compile each: eager first calls are slower).
"""

import dataclasses
import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from tl_jax.models import BertConfig, BertModel, load_pretrained, module_from_architecture

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)
flat = flax.traverse_util.flatten_dict


def tiny(**kw):
  return BertModel(BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=48, max_position_embeddings=40, **kw))


def batch(seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, 64, (3, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 3:] = 0
  types = (np.arange(12) >= 6).astype(np.int32)[None].repeat(3, 0)
  return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def random_params(shapes, seed=0):
  """Random values for a shape tree: LayerNorm scales near 1, the rest small."""
  rng = np.random.RandomState(seed)
  return flax.traverse_util.unflatten_dict({
      k: (1.0 if k[-1] == 'scale' else 0.0) + 0.1 * rng.randn(*s.shape).astype(np.float32)
      for k, s in flat(shapes).items()})


def apply(module, params, **inputs):
  return module.apply({'params': params}, **inputs)


@pytest.fixture(scope='module')
def hf_flax():
  model = transformers.FlaxBertModel(transformers.BertConfig(**TINY), _do_init=False)
  params = random_params(model.params_shape_tree)
  out = model.module.apply(
      {'params': params}, **batch(), output_hidden_states=True, output_attentions=True)
  return model, params, out


def test_param_tree_has_hf_flax_names_and_shapes(hf_flax):
  ours = jax.eval_shape(tiny().init, jax.random.key(0), **batch())['params']
  shape = lambda t: {k: v.shape for k, v in flat(t).items()}
  assert shape(ours) == shape(hf_flax[0].params_shape_tree)
  assert ('encoder', 'layer', '1', 'attention', 'self', 'query', 'kernel') in flat(ours)


def test_matches_hf_flax_with_padding_and_hidden_states(hf_flax):
  _, params, ref = hf_flax
  out = apply(tiny(output_hidden_states=True), params, **batch())
  np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, ref.pooler_output, atol=1e-5, rtol=0)
  assert len(out.hidden_states) == len(ref.hidden_states) == 3
  for a, b in zip(out.hidden_states, ref.hidden_states):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  assert out.logits is None and out.attentions is None  # only on request
  attentions = apply(tiny(output_attentions=True), params, **batch()).attentions
  assert len(attentions) == len(ref.attentions) == 2
  for a, b in zip(attentions, ref.attentions):  # (B, heads, L, L), padded keys ~0
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  # Optional inputs default as in HF: no mask = attend everywhere, token types 0.
  ids = batch()['input_ids']
  plain = apply(tiny(), params, input_ids=ids)
  ref_plain = hf_flax[0].module.apply({'params': params}, ids, np.ones_like(ids))
  np.testing.assert_allclose(plain.last_hidden_state, ref_plain.last_hidden_state, atol=1e-5,
                             rtol=0)


def test_hf_flax_msgpack_checkpoint_loads_and_matches(hf_flax, tmp_path):
  model, params, ref = hf_flax
  model.save_pretrained(tmp_path, params=params)  # HF writes config.json + flax_model.msgpack
  assert sorted(p.name for p in tmp_path.iterdir()) == ['config.json', 'flax_model.msgpack']
  module, loaded = load_pretrained(tmp_path)
  out = apply(module, loaded, **batch())
  np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, ref.pooler_output, atol=1e-5, rtol=0)


def test_cls_and_mean_pooling(hf_flax):
  _, params, ref = hf_flax
  b = batch()
  cls = apply(tiny(pooling='cls'), params, **b).pooled
  np.testing.assert_allclose(cls, ref.last_hidden_state[:, 0], atol=1e-6)
  mean = apply(tiny(pooling='mean'), params, **b).pooled
  m = b['attention_mask'][..., None]
  expected = (np.asarray(ref.last_hidden_state) * m).sum(1) / m.sum(1)
  np.testing.assert_allclose(mean, expected, atol=1e-5)


def test_dropout_needs_rng_and_changes_output(hf_flax):
  _, params, _ = hf_flax
  model = tiny(dropout_rate=0.2, attention_dropout_rate=0.2)
  with pytest.raises(ValueError, match="'dropout' rng"):
    model.apply({'params': params}, **batch(), train=True)
  run = jax.jit(lambda key: model.apply({'params': params}, **batch(), train=True,
                                        rngs={'dropout': key}).last_hidden_state)
  a, b = run(jax.random.key(1)), run(jax.random.key(2))
  det = apply(model, params, **batch()).last_hidden_state
  assert np.abs(a - b).max() > 1e-2 and np.abs(a - det).max() > 1e-2
  np.testing.assert_array_equal(a, run(jax.random.key(1)))  # same key, same mask


def test_bf16_compute_is_close_to_fp32(hf_flax):
  _, params, ref = hf_flax
  out = apply(tiny(dtype='bfloat16'), params, **batch())
  assert out.last_hidden_state.dtype == jnp.bfloat16 and out.pooled.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out.last_hidden_state, np.float32), ref.last_hidden_state,
                             atol=0.1, rtol=0)


def test_single_named_and_no_heads(hf_flax):
  _, params, _ = hf_flax
  b = batch()
  single = tiny(num_classes=5)
  shapes = jax.eval_shape(single.init, jax.random.key(0), **b)['params']
  assert shapes['head']['kernel'].shape == (32, 5)
  head = random_params(shapes['head'], seed=1)
  out = apply(single, {**params, 'head': head}, **b)
  assert out.logits.shape == (3, 5) and out.logits.dtype == jnp.float32
  np.testing.assert_allclose(out.logits, out.pooled @ head['kernel'] + head['bias'], atol=1e-5)

  multi = tiny(heads={'topic': 5, 'sentiment': 2}, pooling='mean')
  shapes = jax.eval_shape(multi.init, jax.random.key(0), **b)['params']
  assert set(shapes['heads']) == {'topic', 'sentiment'} and 'head' not in shapes
  heads = random_params(shapes['heads'], seed=2)
  out = apply(multi, {**params, 'heads': heads}, **b)
  assert {k: v.shape for k, v in out.logits.items()} == {'topic': (3, 5), 'sentiment': (3, 2)}
  np.testing.assert_allclose(out.logits['sentiment'], out.pooled @ heads['sentiment']['kernel']
                             + heads['sentiment']['bias'], atol=1e-5)
  with pytest.raises(ValueError, match='either num_classes'):
    tiny(num_classes=3, heads={'a': 2})


def test_hashed_dropout_rate_scale_and_independence():
  from tl_jax.models.layers import hashed_dropout
  x = jnp.ones((64, 128, 33))  # odd last dim: the two-draws-per-hash packing must still fit
  y = np.asarray(hashed_dropout(x, 0.1, jax.random.key(0)))
  kept = y > 0
  assert abs(1 - kept.mean() - 0.1) < 0.003  # 270k draws: 5 sigma ~ 0.003
  np.testing.assert_allclose(y[kept], 1 / (1 - round(0.1 * 65536) / 65536), rtol=1e-6)
  assert abs(y.mean() - 1) < 0.01  # inverted dropout keeps the expectation
  other = np.asarray(hashed_dropout(x, 0.1, jax.random.key(1))) > 0
  assert abs((kept & other).mean() - 0.81) < 0.005  # masks of two keys are independent
  neighbours = (kept[..., :-1] & kept[..., 1:]).mean()
  assert abs(neighbours - 0.81) < 0.005  # adjacent draws are independent


def test_module_attributes_for_the_trainer():
  model = tiny(heads={'t': 2})
  assert model.kind == 'text' and model.num_layers == 2
  rebuilt = module_from_architecture(json.loads(json.dumps(model.architecture())))
  assert rebuilt.config == model.config
  assert dataclasses.replace(model.config, pooling='cls') != model.config
  with pytest.raises(ValueError, match="pooling='max'"):
    tiny(pooling='max')
