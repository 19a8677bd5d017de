"""Our Flax BERT vs HF transformers 4.57 (Flax and PyTorch) on tiny random configs."""

import dataclasses
import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from tl_jax.models import BertConfig, BertModel, module_from_architecture

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=40, type_vocab_size=2)


def tiny_config(**kw):
  return BertConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48,
                    max_position_embeddings=40, **kw)


def batch(seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, 64, (3, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 3:] = 0
  types = (np.arange(12) >= 6).astype(np.int32)[None].repeat(3, 0)
  return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


@pytest.fixture(scope='module')
def hf_flax():
  model = transformers.FlaxBertModel(transformers.BertConfig(**TINY), seed=3)
  out = model(**batch(), output_hidden_states=True)
  return model.params, out


def test_param_tree_has_hf_flax_names_and_shapes(hf_flax):
  ours = BertModel(tiny_config()).init(jax.random.key(0), **batch())['params']
  ours = {k: v.shape for k, v in flax.traverse_util.flatten_dict(ours).items()}
  theirs = {k: v.shape for k, v in flax.traverse_util.flatten_dict(hf_flax[0]).items()}
  assert ours == theirs
  assert ('encoder', 'layer', '1', 'attention', 'self', 'query', 'kernel') in ours


def test_matches_hf_flax_with_padding_and_hidden_states(hf_flax):
  params, ref = hf_flax
  out = BertModel(tiny_config(output_hidden_states=True)).apply({'params': params}, **batch())
  np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, ref.pooler_output, atol=1e-5, rtol=0)
  assert len(out.hidden_states) == len(ref.hidden_states) == 3
  for a, b in zip(out.hidden_states, ref.hidden_states):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  assert out.logits is None


def test_optional_inputs_default_like_hf(hf_flax):
  params, _ = hf_flax
  ids = batch()['input_ids']
  out = BertModel(tiny_config()).apply({'params': params}, input_ids=ids)
  ref = transformers.FlaxBertModel(transformers.BertConfig(**TINY), seed=3)(ids)
  np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)


def test_cls_and_mean_pooling(hf_flax):
  params, ref = hf_flax
  b = batch()
  cls = BertModel(tiny_config(pooling='cls')).apply({'params': params}, **b).pooled
  np.testing.assert_allclose(cls, ref.last_hidden_state[:, 0], atol=1e-6)
  mean = BertModel(tiny_config(pooling='mean')).apply({'params': params}, **b).pooled
  m = b['attention_mask'][..., None]
  expected = (np.asarray(ref.last_hidden_state) * m).sum(1) / m.sum(1)
  np.testing.assert_allclose(mean, expected, atol=1e-5)


def test_dropout_needs_rng_and_changes_output(hf_flax):
  params, _ = hf_flax
  model = BertModel(tiny_config(dropout_rate=0.2, attention_dropout_rate=0.2))
  with pytest.raises(ValueError, match="'dropout' rng"):
    model.apply({'params': params}, **batch(), train=True)
  a = model.apply({'params': params}, **batch(), train=True, rngs={'dropout': jax.random.key(1)})
  b = model.apply({'params': params}, **batch(), train=True, rngs={'dropout': jax.random.key(2)})
  det = model.apply({'params': params}, **batch(), train=False)
  assert np.abs(a.last_hidden_state - b.last_hidden_state).max() > 1e-2
  assert np.abs(a.last_hidden_state - det.last_hidden_state).max() > 1e-2


def test_bf16_compute_is_close_to_fp32(hf_flax):
  params, ref = hf_flax
  out = BertModel(tiny_config(dtype='bfloat16')).apply({'params': params}, **batch())
  assert out.last_hidden_state.dtype == jnp.bfloat16
  assert params['pooler']['dense']['kernel'].dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out.last_hidden_state, np.float32), ref.last_hidden_state,
                             atol=0.1, rtol=0)


def test_single_named_and_no_heads():
  b = batch()
  single = BertModel(tiny_config(num_classes=5))
  params = single.init(jax.random.key(0), **b)['params']
  assert params['head']['kernel'].shape == (32, 5)
  out = single.apply({'params': params}, **b)
  assert out.logits.shape == (3, 5) and out.logits.dtype == jnp.float32
  np.testing.assert_allclose(out.logits, out.pooled @ params['head']['kernel']
                             + params['head']['bias'], atol=1e-5)

  multi = BertModel(tiny_config(heads={'topic': 5, 'sentiment': 2}, pooling='mean'))
  params = multi.init(jax.random.key(0), **b)['params']
  assert set(params['heads']) == {'topic', 'sentiment'} and 'head' not in params
  out = multi.apply({'params': params}, **b)
  assert {k: v.shape for k, v in out.logits.items()} == {'topic': (3, 5), 'sentiment': (3, 2)}

  with pytest.raises(ValueError, match='either num_classes'):
    tiny_config(num_classes=3, heads={'a': 2})


def test_module_attributes_for_the_trainer():
  model = BertModel(tiny_config(heads={'t': 2}))
  assert model.kind == 'text' and model.num_layers == 2
  arch = model.architecture()
  rebuilt = module_from_architecture(json.loads(json.dumps(arch)))
  assert rebuilt.config == model.config
  assert dataclasses.replace(model.config, pooling='cls') != model.config
