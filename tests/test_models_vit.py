"""Our Flax ViT vs HF transformers 4.57 (Flax and PyTorch); position-embedding resampling; .npz."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from tl_jax.models import (ViTConfig, ViTModel, load_pretrained, resample_position_embeddings,
                           save_pretrained)

TINY = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=48)


def tiny_config(**kw):
  return ViTConfig(**{'image_size': 16, 'patch_size': 4, 'hidden_size': 32, 'num_layers': 2,
                      'num_heads': 4, 'intermediate_size': 48, **kw})


def images(size=16, seed=0):
  return np.random.RandomState(seed).randn(2, size, size, 3).astype(np.float32)


def random_params(shapes, seed=0):
  """Random values for a shape tree: LayerNorm scales near 1, the rest small."""
  rng = np.random.RandomState(seed)
  return flax.traverse_util.unflatten_dict({
      k: (1.0 if k[-1] == 'scale' else 0.0) + 0.1 * rng.randn(*s.shape).astype(np.float32)
      for k, s in flax.traverse_util.flatten_dict(shapes).items()})


@pytest.fixture(scope='module')
def hf_flax():
  model = transformers.FlaxViTModel(transformers.ViTConfig(**TINY), _do_init=False)
  params = random_params(model.params_shape_tree)
  # The HF Flax module takes NHWC (its wrapper class transposes NCHW input).
  out = model.module.apply({'params': params}, images(), output_hidden_states=True,
                           output_attentions=True)
  return params, out, model.params_shape_tree


@pytest.fixture(scope='module')
def torch_vit(tmp_path_factory):
  """A tiny HF PyTorch ViTModel saved by HF itself (model.safetensors)."""
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  model = transformers.ViTModel(transformers.ViTConfig(**TINY)).eval()
  directory = tmp_path_factory.mktemp('hf_vit')
  model.save_pretrained(directory)
  return model, directory


def torch_forward(model, x):
  import torch
  with torch.no_grad():
    out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def test_param_tree_has_hf_flax_names_and_shapes(hf_flax):
  ours = jax.eval_shape(ViTModel(tiny_config()).init, jax.random.key(0), images())['params']
  shapes = lambda t: {k: v.shape for k, v in flax.traverse_util.flatten_dict(t).items()}
  assert shapes(ours) == shapes(hf_flax[2])


def test_matches_hf_flax_with_hidden_states(hf_flax):
  params, ref, _ = hf_flax
  out = ViTModel(tiny_config(output_hidden_states=True)).apply({'params': params}, images())
  np.testing.assert_allclose(out.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, ref.pooler_output, atol=1e-5, rtol=0)
  assert len(out.hidden_states) == 3
  for a, b in zip(out.hidden_states, ref.hidden_states):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  attentions = ViTModel(tiny_config(output_attentions=True)).apply({'params': params},
                                                                     images()).attentions
  assert len(attentions) == len(ref.attentions) == 2
  for a, b in zip(attentions, ref.attentions):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_hf_pytorch_checkpoint_loads_and_matches(torch_vit):
  model, directory = torch_vit
  module, params = load_pretrained(directory)
  last, pooler = torch_forward(model, images())
  out = module.apply({'params': params}, images())
  np.testing.assert_allclose(out.last_hidden_state, last, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, pooler, atol=1e-5, rtol=0)
  mean = load_pretrained(directory, pooling='mean')[0].apply({'params': params}, images()).pooled
  np.testing.assert_allclose(mean, last[:, 1:].mean(1), atol=1e-5)  # mean over patch tokens


def test_resample_matches_torch_bilinear():
  torch = pytest.importorskip('torch')
  posemb = np.random.RandomState(0).randn(1, 1 + 16, 8).astype(np.float32)
  for grid in [(6, 6), (3, 5)]:
    ours = np.asarray(resample_position_embeddings(posemb, grid, num_prefix_tokens=1))
    patch = torch.from_numpy(posemb[:, 1:].reshape(1, 4, 4, 8)).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(patch, size=grid, mode='bilinear', align_corners=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, -1, 8).numpy()
    assert ours.shape == (1, 1 + grid[0] * grid[1], 8)
    np.testing.assert_array_equal(ours[:, :1], posemb[:, :1])  # [CLS] untouched
    np.testing.assert_allclose(ours[:, 1:], ref, atol=1e-6)


def test_other_image_size_resamples_at_load_and_in_model(torch_vit):
  torch = pytest.importorskip('torch')
  model, directory = torch_vit
  module, params, report = load_pretrained(directory, image_size=24, with_report=True)
  assert params['embeddings']['position_embeddings'].shape == (1, 1 + 36, 32)
  assert report.resampled_keys == ['embeddings/position_embeddings']
  out = module.apply({'params': params}, images(24))
  # Reference: HF PyTorch ViT at 24 px holding the same (resampled) position embeddings.
  big = transformers.ViTModel(transformers.ViTConfig(**{**TINY, 'image_size': 24})).eval()
  state = dict(model.state_dict())
  state['embeddings.position_embeddings'] = torch.from_numpy(
      np.array(params['embeddings']['position_embeddings']))
  big.load_state_dict(state)
  last, pooler = torch_forward(big, images(24))
  np.testing.assert_allclose(out.last_hidden_state, last, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, pooler, atol=1e-5, rtol=0)
  # The 16 px model fed 24 px images resamples on the fly to the same result.
  small, small_params = load_pretrained(directory)
  on_the_fly = small.apply({'params': small_params}, images(24))
  np.testing.assert_allclose(on_the_fly.last_hidden_state, last, atol=1e-5, rtol=0)


def _to_npz_layout(state, num_heads, flavour):
  """Writes a PyTorch ViT state dict in the vision_transformer (or big_vision) .npz format."""
  t = {k: v.numpy() for k, v in state.items()}
  dim = t['embeddings.cls_token'].shape[-1]
  head_dim = dim // num_heads
  names = (('LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3')
           if flavour == 'vision_transformer' else
           ('LayerNorm_0', 'MultiHeadDotProductAttention_0', 'LayerNorm_1', 'MlpBlock_0'))
  ln0, mha, ln1, mlp = names
  out = {
      'embedding/kernel': t['embeddings.patch_embeddings.projection.weight'].transpose(2, 3, 1, 0),
      'embedding/bias': t['embeddings.patch_embeddings.projection.bias'],
      'Transformer/posembed_input/pos_embedding': t['embeddings.position_embeddings'],
      'Transformer/encoder_norm/scale': t['layernorm.weight'],
      'Transformer/encoder_norm/bias': t['layernorm.bias'],
      'pre_logits/kernel': t['pooler.dense.weight'].T,
      'pre_logits/bias': t['pooler.dense.bias'],
      'head/kernel': np.ones((dim, 10), np.float32),
      'head/bias': np.zeros((10,), np.float32),
  }
  if flavour == 'vision_transformer':
    out['cls'] = t['embeddings.cls_token']
  i = 0
  while f'encoder.layer.{i}.layernorm_before.weight' in t:
    src, dst = f'encoder.layer.{i}.', f'Transformer/encoderblock_{i}/'
    for theirs, ours in (('layernorm_before', ln0), ('layernorm_after', ln1)):
      out[dst + ours + '/scale'] = t[src + theirs + '.weight']
      out[dst + ours + '/bias'] = t[src + theirs + '.bias']
    for proj in ('query', 'key', 'value'):
      w = t[f'{src}attention.attention.{proj}.weight']
      out[f'{dst}{mha}/{proj}/kernel'] = w.T.reshape(dim, num_heads, head_dim)
      out[f'{dst}{mha}/{proj}/bias'] = t[f'{src}attention.attention.{proj}.bias'].reshape(
          num_heads, head_dim)
    out[f'{dst}{mha}/out/kernel'] = t[f'{src}attention.output.dense.weight'].T.reshape(
        num_heads, head_dim, dim)
    out[f'{dst}{mha}/out/bias'] = t[f'{src}attention.output.dense.bias']
    for theirs, dense in (('intermediate', 'Dense_0'), ('output', 'Dense_1')):
      out[f'{dst}{mlp}/{dense}/kernel'] = t[f'{src}{theirs}.dense.weight'].T
      out[f'{dst}{mlp}/{dense}/bias'] = t[f'{src}{theirs}.dense.bias']
    i += 1
  return out


def test_vision_transformer_npz_loads_and_matches(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(1)
  # The original ViTs use flax defaults: tanh-approximate GELU and LayerNorm eps 1e-6.
  cfg = transformers.ViTConfig(**TINY, hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6)
  model = transformers.ViTModel(cfg).eval()
  path = tmp_path / 'ViT-tiny.npz'
  np.savez(path, **_to_npz_layout(model.state_dict(), 4, 'vision_transformer'))
  module, params, report = load_pretrained(str(path), num_classes=3, with_report=True)
  assert module.config.num_layers == 2 and module.config.num_heads == 4
  assert module.config.image_size == 16 and module.config.patch_size == 4
  assert report.dropped_keys == ['npz_head/bias', 'npz_head/kernel']
  assert report.new_keys == ['head/bias', 'head/kernel']
  last, pooler = torch_forward(model, images())
  out = module.apply({'params': params}, images())
  np.testing.assert_allclose(out.last_hidden_state, last, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out.pooled, pooler, atol=1e-5, rtol=0)
  assert out.logits.shape == (2, 3)


def test_big_vision_gap_npz_without_class_token(tmp_path):
  torch = pytest.importorskip('torch')
  model = transformers.ViTModel(transformers.ViTConfig(**TINY))
  arrays = _to_npz_layout(model.state_dict(), 4, 'big_vision')
  arrays['Transformer/posembed_input/pos_embedding'] = arrays[
      'Transformer/posembed_input/pos_embedding'][:, 1:]
  path = tmp_path / 'gap.npz'
  np.savez(path, **{'params/' + k: v for k, v in arrays.items()})
  module, params = load_pretrained(str(path), pooling='mean', image_size=8)
  assert not module.config.class_token and 'cls_token' not in params['embeddings']
  assert params['embeddings']['position_embeddings'].shape == (1, 4, 32)
  np.testing.assert_array_equal(
      params['encoder']['layer']['1']['layernorm_after']['scale'],
      arrays['Transformer/encoderblock_1/LayerNorm_1/scale'])
  out = module.apply({'params': params}, images(8))
  assert out.pooled.shape == (2, 32)
  np.testing.assert_allclose(out.pooled, np.asarray(out.last_hidden_state).mean(1), atol=1e-5)
  with pytest.raises(ValueError, match='class token'):
    load_pretrained(str(path), pooling='cls')


def test_dropout_bf16_and_named_heads(hf_flax):
  params, ref, _ = hf_flax
  model = ViTModel(tiny_config(dropout_rate=0.1, attention_dropout_rate=0.1,
                               heads={'digits': 10, 'rotation': 4}))
  shapes = jax.eval_shape(model.init, jax.random.key(0), images())['params']
  variables = {'params': {**params, 'heads': random_params(shapes['heads'])}}
  with pytest.raises(ValueError, match="'dropout' rng"):
    model.apply(variables, images(), train=True)
  a = model.apply(variables, images(), train=True, rngs={'dropout': jax.random.key(1)})
  b = model.apply(variables, images(), train=False)
  assert np.abs(a.last_hidden_state - b.last_hidden_state).max() > 1e-3
  assert {k: v.shape for k, v in b.logits.items()} == {'digits': (2, 10), 'rotation': (2, 4)}
  half = ViTModel(tiny_config(dtype='bfloat16')).apply({'params': params}, images())
  assert half.last_hidden_state.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half.last_hidden_state, np.float32),
                             ref.last_hidden_state, atol=0.1)
  assert ViTModel(tiny_config()).kind == 'image'


def test_save_load_round_trip_is_bitwise(tmp_path):
  module = ViTModel(tiny_config(heads={'a': 3}, pooling='mean', image_size=12, patch_size=4))
  params = random_params(jax.eval_shape(module.init, jax.random.key(2), images(12))['params'])
  save_pretrained(module, params, tmp_path)
  loaded, loaded_params = load_pretrained(tmp_path)
  assert loaded.config == module.config
  flat = flax.traverse_util.flatten_dict
  assert flat(loaded_params).keys() == flat(params).keys()
  for k, v in flat(params).items():
    np.testing.assert_array_equal(flat(loaded_params)[k], v)
