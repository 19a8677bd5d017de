"""A model and a tokenizer that do not fit, and a config.json that is not JSON: one error each,
from the Python API (the CLI cases are in test_cli_bad_inputs.py)."""

import json

import numpy as np
import pytest

from cli_helpers import TINY_BERT
from tl_jax.models import load_pretrained, load_tokenizer, save_pretrained
from tl_jax.models import pretrained, resolve


@pytest.fixture(scope='module')
def small_vocab_dir(tmp_path_factory):
  """A tiny BERT with 1,000 rows of embeddings saved beside the 30,522-token MiniLM tokenizer."""
  directory = tmp_path_factory.mktemp('small_vocab')
  (directory / 'config.json').write_text(json.dumps(dict(TINY_BERT, vocab_size=1000)))
  module, params = load_pretrained(str(directory), init='random')
  save_pretrained(module, params, directory, tokenizer_from='minilm')
  return directory


def test_vocab_smaller_than_the_tokenizer_is_refused_with_both_sizes(small_vocab_dir):
  module, params = load_pretrained(str(small_vocab_dir))  # the weights alone are fine ...
  assert module.config.vocab_size == 1000
  # ... and would give NaN for any token id past the table (the symptom users saw at step 1).
  ids = np.array([[101, 1999, 29000, 102]])
  out = module.apply({'params': params}, input_ids=ids, attention_mask=np.ones_like(ids),
                     train=False)
  assert np.isnan(np.asarray(out.last_hidden_state)).any()
  with pytest.raises(pretrained.VocabularyMismatchError,
                     match="tokenizer has 30522 tokens but the model's vocab_size is 1000"):
    load_tokenizer(str(small_vocab_dir))
  tokenizer = load_tokenizer('minilm')  # a tokenizer from elsewhere, checked where both meet
  with pytest.raises(pretrained.VocabularyMismatchError, match='ids >= 1000 would give NaN'):
    pretrained.check_vocab(module.config.vocab_size, tokenizer, str(small_vocab_dir))
  pretrained.check_vocab(30522, tokenizer, 'minilm')  # equal sizes pass
  pretrained.check_vocab(30528, tokenizer, 'padded')  # a table padded past the tokenizer too


def test_experiment_build_refuses_a_smaller_vocab(small_vocab_dir, monkeypatch):
  from tl_jax import pieces as pieces_lib, models
  from tl_jax.config import base_config
  config = base_config()
  config.model.name = str(small_vocab_dir)
  module, _ = load_pretrained(str(small_vocab_dir))
  info = type('Info', (), {'kind': 'text', 'num_classes': 2, 'name': 'x'})()
  monkeypatch.setattr(pieces_lib.data_lib, 'dataset_info', lambda *a: info)
  # Even with a tokenizer that loads (from another directory), the model check fires.
  monkeypatch.setattr(models, 'load_tokenizer', lambda name: load_tokenizer('minilm'))
  with pytest.raises(pretrained.VocabularyMismatchError, match='30522 tokens.*vocab_size is 1000'):
    pieces_lib.build(config)


@pytest.mark.parametrize('text, why', [
    ('{"model_type": "bert", "hidden_size": 32,\n', r'not valid JSON \(.* at line 2 column 1\)'),
    ('', r'not valid JSON \(Expecting value at line 1 column 1\)'),
    ('<html>rate limited</html>', 'not valid JSON'),
    ('[1, 2]', 'holds a JSON list, not an object'),
    (b'\xff\xfe{}', 'not valid JSON .not UTF-8'),
])
def test_config_json_that_is_not_a_json_object_names_its_path(tmp_path, text, why):
  path = tmp_path / 'config.json'
  path.write_bytes(text if isinstance(text, bytes) else text.encode())
  (tmp_path / 'model.safetensors').write_bytes(b'')
  for load in (load_pretrained, load_tokenizer):
    with pytest.raises(resolve.InvalidConfigError, match=f'{path} (is )?' + why):
      load(str(tmp_path))
