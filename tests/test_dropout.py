"""model.dropout_impl: 'hash' (counter-hash masks) and 'flax' (nn.Dropout) are both real dropout.

Masks are statistics, so the tests are statistical: on ~1e6 draws the keep-rate is within 6
standard errors of 1 - rate, and the correlation between neighbouring positions, between
positions one row apart and between the masks of two keys is within 6/sqrt(n) of 0 (the hash
makes two 16-bit draws from one 32-bit word: neighbours are the pairs to suspect)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.models import BertConfig, BertModel, ViTConfig, ViTModel, layers, save_pretrained

SHAPE = (1000, 1000)  # 1e6 draws
N = SHAPE[0] * SHAPE[1]


class _Drop(nn.Module):
  rate: float
  impl: str

  @nn.compact
  def __call__(self, x):
    return layers.dropout(self.rate, True, self.impl)(x)


def _apply(impl, rate, key, x=None):
  """The mask layers.dropout draws for `impl` on a (1000, 1000) array of ones (or x)."""
  x = jnp.ones(SHAPE, jnp.float32) if x is None else x
  return np.asarray(jax.jit(lambda x, k: _Drop(rate, impl).apply({}, x, rngs={'dropout': k}))(
      x, key))


def _corr(a, b):
  return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


@pytest.mark.parametrize('impl', layers.DROPOUT_IMPLS)
@pytest.mark.parametrize('rate', [0.1, 0.3, 0.5])
def test_keep_rate_and_independence(impl, rate):
  out = _apply(impl, rate, jax.random.key(0))
  kept = out != 0
  keep = 1 - rate
  assert abs(kept.mean() - keep) < 6 * np.sqrt(keep * rate / N), kept.mean()
  # Inverted dropout: kept values are scaled so the mean stays 1.
  assert abs(out.mean() - 1) < 6 * np.sqrt(rate / keep / N)
  bound = 6 / np.sqrt(N)
  assert abs(_corr(kept[:, :-1], kept[:, 1:])) < bound  # neighbours (the same 32-bit word)
  flat = kept.ravel()
  assert abs(_corr(flat[0:-1:2], flat[1::2])) < 2 * bound  # exactly the pairs sharing a word
  assert abs(_corr(kept[:-1], kept[1:])) < bound  # one row apart
  other = _apply(impl, rate, jax.random.key(1)) != 0
  assert abs(_corr(kept, other)) < bound  # two keys: independent masks
  np.testing.assert_array_equal(_apply(impl, rate, jax.random.key(0)) != 0, kept)  # same key


def test_flax_keeps_the_rate_exactly_and_hash_rounds_it_within_bound():
  rate = 1 / 3  # not a multiple of 1/65536
  x = jnp.ones(SHAPE, jnp.float32)
  flax_scale = np.unique(_apply('flax', rate, jax.random.key(0), x))
  np.testing.assert_allclose(flax_scale, [0, 1 / (1 - rate)], rtol=1e-7)
  hashed = layers.hashed_rate(rate)
  assert hashed != rate and abs(hashed - rate) <= 2 ** -17  # documented: k/65536, error <= 2^-17
  hash_scale = np.unique(_apply('hash', rate, jax.random.key(0), x))
  np.testing.assert_allclose(hash_scale, [0, 1 / (1 - hashed)], rtol=1e-7)
  # The rounding is bounded for any rate; below 2**-17 'hash' applies no dropout at all.
  rates = np.random.default_rng(0).random(1000)
  assert max(abs(layers.hashed_rate(r) - r) for r in rates) <= 2 ** -17
  assert layers.hashed_rate(2 ** -18) == 0
  np.testing.assert_array_equal(_apply('hash', 2 ** -18, jax.random.key(0), x), x)
  assert (_apply('flax', 1e-3, jax.random.key(0), x) == 0).any()


TINY_BERT = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=48,
                 max_position_embeddings=16, dropout_rate=0.2, attention_dropout_rate=0.2)
TINY_VIT = dict(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_layers=1,
                num_heads=2, intermediate_size=32, dropout_rate=0.2, attention_dropout_rate=0.2)


@pytest.mark.parametrize('model_cls, config_cls, kwargs', [
    (BertModel, BertConfig, TINY_BERT), (ViTModel, ViTConfig, TINY_VIT)])
def test_both_models_use_the_setting_and_share_params(model_cls, config_cls, kwargs, tmp_path):
  modules = {impl: model_cls(config=config_cls(**kwargs, num_classes=3, dropout_impl=impl))
             for impl in layers.DROPOUT_IMPLS}
  inputs = modules['hash'].dummy_inputs()
  inputs = {k: jnp.ones_like(v) for k, v in inputs.items()}
  params = jax.jit(modules['hash'].init)(jax.random.key(0), **inputs)['params']
  flax_params = jax.eval_shape(modules['flax'].init, jax.random.key(0), **inputs)['params']
  assert jax.tree.structure(params) == jax.tree.structure(flax_params)  # checkpoints unaffected
  outs, evals = {}, {}
  for impl, module in modules.items():
    train = jax.jit(lambda k, m=module: m.apply({'params': params}, **inputs, train=True,
                                                rngs={'dropout': k}).last_hidden_state)
    outs[impl] = np.asarray(train(jax.random.key(1)))
    np.testing.assert_array_equal(outs[impl], train(jax.random.key(1)))  # deterministic per key
    assert not np.array_equal(outs[impl], train(jax.random.key(2)))
    evals[impl] = np.asarray(jax.jit(lambda m=module: m.apply(
        {'params': params}, **inputs, train=False).last_hidden_state)())
  np.testing.assert_array_equal(evals['hash'], evals['flax'])  # eval: no dropout either way
  assert not np.array_equal(outs['hash'], outs['flax'])  # the setting reaches the layers
  # Exports and run fingerprints do not record it.
  assert modules['hash'].architecture() == modules['flax'].architecture()
  assert 'dropout_impl' not in (save_pretrained(modules['flax'], params, tmp_path / 'x')
                                / 'config.json').read_text()
  with pytest.raises(ValueError,
                     match=r"dropout_impl='threefry'; choose one of \('hash', 'flax'\)"):
    config_cls(**kwargs, dropout_impl='threefry')


def test_load_pretrained_and_config_take_the_setting(tmp_path):
  import json
  from tl_jax.config import base_config
  from tl_jax.models import load_pretrained
  assert base_config().model.dropout_impl == 'hash'
  (tmp_path / 'config.json').write_text(json.dumps(dict(
      model_type='bert', vocab_size=64, hidden_size=16, num_hidden_layers=1,
      num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)))
  module, params = load_pretrained(str(tmp_path), init='random', dropout_impl='flax')
  assert module.config.dropout_impl == 'flax'
  save_pretrained(module, params, tmp_path / 'export')
  assert load_pretrained(str(tmp_path / 'export'))[0].config.dropout_impl == 'hash'
