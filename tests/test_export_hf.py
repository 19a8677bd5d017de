"""Exports that Hugging Face tools load as they are (tl_jax/models/export.py).

The real transformers pipelines (PyTorch) on our exports must give tl_jax's probabilities and
class names; layouts no transformers class expresses load with their documented recipe.
"""

import json
import os

os.environ.setdefault('USE_TORCH', '1')

import flax  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip('torch')
import PIL.Image  # noqa: E402
import safetensors.torch  # noqa: E402
import transformers  # noqa: E402

from cli_helpers import (CLASSES, TINY_BERT, TINY_VIT, describe, run_cli_batch,  # noqa: E402
                         tiny_args, tiny_assets)  # noqa: F401 (session fixture)
from tl_jax.data import image as image_lib  # noqa: E402
from tl_jax.data import pipeline as pipeline_lib  # noqa: E402
from tl_jax.models import load_pretrained, load_tokenizer, save_pretrained  # noqa: E402

flat = flax.traverse_util.flatten_dict
MAX_LENGTH = 16
TEXTS = ['market shares profit bank', 'match goal team player season coach',
         'software phone computer internet chip', 'the bank won the cup with a new phone app',
         'economy trade growth ' * 8]  # the last is cut at MAX_LENGTH tokens, as in training


def _random_model(tmp_path, hf_config, seed=0, **kwargs):
  """A tiny random model (with a random head when kwargs ask for one)."""
  directory = tmp_path / 'init'
  directory.mkdir(exist_ok=True)
  # Larger random weights than the default 0.02, so inputs get different predictions.
  (directory / 'config.json').write_text(json.dumps(dict(hf_config, initializer_range=0.3)))
  return load_pretrained(directory, init='random', seed=seed, dropout_rate=0.0,
                         attention_dropout_rate=0.0, **kwargs)


def _centred(params, pooled):
  """Head bias = minus the mean logit over the test inputs: random backbones give every input
  nearly the same pooled vector, and the test wants different predicted classes."""
  p = flax.core.unfreeze(params)
  p['head']['bias'] = -(np.asarray(pooled) @ np.asarray(p['head']['kernel'])).mean(0)
  return p


def _softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _assert_round_trip(directory, module, params):
  loaded, loaded_params = load_pretrained(directory)
  assert loaded.config == module.config
  ours, back = flat(params), flat(loaded_params)
  assert back.keys() == ours.keys()
  for k, v in ours.items():
    np.testing.assert_array_equal(back[k], v)


def _pipeline_probs(results, names):
  """pipeline(..., top_k=None) output -> [N, C] probabilities in class order."""
  return np.array([[{r['label']: r['score'] for r in row}[n] for n in names] for row in results])


# --- text -----------------------------------------------------------------------------------

def _text_probs(module, params, head='head'):
  tok = load_tokenizer('minilm')
  enc = tok(TEXTS, max_length=MAX_LENGTH, truncation=True, padding='max_length',
            return_tensors='np')
  out = module.apply({'params': params}, input_ids=enc['input_ids'],
                     attention_mask=enc['attention_mask'], token_type_ids=enc['token_type_ids'])
  logits = out.logits if head == 'head' else out.logits[head]
  return _softmax(logits), np.asarray(out.pooled)


def _export_text(tmp_path, pooling, **kwargs):
  module, params = _random_model(tmp_path, TINY_BERT, pooling=pooling, **kwargs)
  params = _centred(params, _text_probs(module, params)[1])
  export = tmp_path / 'export'
  save_pretrained(module, params, export, tokenizer_from='minilm', max_length=MAX_LENGTH,
                  class_names=CLASSES)
  return module, params, export


def test_bert_pooler_head_is_a_transformers_classifier(tmp_path):
  module, params, export = _export_text(tmp_path, 'pooler', num_classes=3)
  config = json.loads((export / 'config.json').read_text())
  assert config['architectures'] == ['BertForSequenceClassification']
  assert config['id2label'] == {'0': 'business', '1': 'sport', '2': 'tech'}
  assert config['torch_dtype'] == 'float32'
  ours, _ = _text_probs(module, params)
  clf = transformers.pipeline('text-classification', model=str(export), truncation=True)
  results = clf(TEXTS, top_k=None)
  np.testing.assert_allclose(_pipeline_probs(results, CLASSES), ours, atol=1e-5, rtol=0)
  assert [r[0]['label'] for r in results] == [CLASSES[i] for i in ours.argmax(-1)]
  assert len(set(ours.argmax(-1))) > 1  # the check could fail: not one class everywhere
  # AutoModelForSequenceClassification loads every weight (no newly initialised head).
  model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
      export, output_loading_info=True)
  assert not info['missing_keys'] and not info['unexpected_keys']
  enc = clf.tokenizer(TEXTS, truncation=True, padding=True, return_tensors='pt')
  with torch.no_grad():
    probs = model.eval()(**enc).logits.softmax(-1).numpy()
  np.testing.assert_allclose(probs, ours, atol=1e-5, rtol=0)
  _assert_round_trip(export, module, params)


@pytest.mark.parametrize('pooling', ['cls', 'mean'])
def test_bert_cls_and_mean_are_sentence_transformers_with_the_head(tmp_path, pooling):
  module, params, export = _export_text(tmp_path, pooling, num_classes=3)
  config = json.loads((export / 'config.json').read_text())
  # Not claimed as a classifier, and no class names a random pipeline head could show.
  assert config['architectures'] == ['BertModel'] and 'id2label' not in config
  assert json.loads((export / 'labels.json').read_text()) == {'head': list(CLASSES)}
  ours, _ = _text_probs(module, params)
  # The card's transformers-only recipe.
  tok = transformers.AutoTokenizer.from_pretrained(export)
  model = transformers.AutoModel.from_pretrained(export).eval()
  enc = tok(TEXTS, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors='pt')
  with torch.no_grad():
    out = model(**enc)
  h, m = out.last_hidden_state, enc['attention_mask'].unsqueeze(-1).float()
  pooled = h[:, 0] if pooling == 'cls' else (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
  w = safetensors.torch.load_file(export / 'model.safetensors')
  logits = pooled @ w['head.weight'].T + w['head.bias']
  np.testing.assert_allclose(logits.softmax(-1).numpy(), ours, atol=1e-5, rtol=0)
  # The card's sentence-transformers recipe (sentence-transformers is in requirements-test.lock).
  import sentence_transformers as st  # pylint: disable=g-import-not-at-top
  probs = st.SentenceTransformer(str(export), device='cpu').encode(
      TEXTS, convert_to_tensor=True).softmax(-1).numpy()
  np.testing.assert_allclose(probs, ours, atol=1e-5, rtol=0)
  _assert_round_trip(export, module, params)


def test_bert_named_heads_keep_their_names(tmp_path):
  module, params = _random_model(tmp_path, TINY_BERT, pooling='mean',
                                 heads={'topic': 3, 'flag': 2})
  export = tmp_path / 'export'
  save_pretrained(module, params, export, tokenizer_from='minilm', max_length=MAX_LENGTH,
                  class_names={'topic': CLASSES, 'flag': ('no', 'yes')})
  assert json.loads((export / 'labels.json').read_text()) == {
      'topic': list(CLASSES), 'flag': ['no', 'yes']}
  modules = json.loads((export / 'modules.json').read_text())
  assert [m['path'] for m in modules] == ['', '1_Pooling']  # features only: heads are several
  w = safetensors.torch.load_file(export / 'model.safetensors')
  ours, pooled = _text_probs(module, params, head='flag')
  logits = torch.from_numpy(np.array(pooled)) @ w['heads.flag.weight'].T + w['heads.flag.bias']
  np.testing.assert_allclose(logits.softmax(-1).numpy(), ours, atol=1e-5, rtol=0)
  _assert_round_trip(export, module, params)


# --- images ---------------------------------------------------------------------------------

def _images(n=6, size=8):
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
  for k in range(n):
    images[k, :, (2 * k) % size:(2 * k) % size + 3] = 255
  return images


def _vit_probs(module, params, images):
  prep = pipeline_lib.FinishImages(where='test', image_size=(8, 8), channels=0, mean=(0.5,),
                                   std=(0.5,))
  batch = prep({'image': image_lib.to_float(images[..., None])})
  out = module.apply({'params': params}, batch['image'])
  return _softmax(out.logits), out


def _export_vit(tmp_path, pooling, config=TINY_VIT):
  from tl_jax.models import export as export_lib
  module, params = _random_model(tmp_path, config, pooling=pooling, num_classes=3)
  params = _centred(params, _vit_probs(module, params, _images())[1].pooled)
  export = tmp_path / 'export'
  save_pretrained(module, params, export, class_names=CLASSES)
  export_lib.write_image_processor(export, size=8, mean=(0.5,), std=(0.5,),
                                   channels=module.config.num_channels)
  return module, params, export


def test_vit_cls_head_is_a_transformers_image_classifier(tmp_path):
  module, params, export = _export_vit(tmp_path, 'cls')
  config = json.loads((export / 'config.json').read_text())
  assert config['architectures'] == ['ViTForImageClassification']
  assert config['id2label'] == {'0': 'business', '1': 'sport', '2': 'tech'}
  assert config['num_channels'] == 3 and config['tl_jax']['num_channels'] == 1
  processor = json.loads((export / 'preprocessor_config.json').read_text())
  assert processor['size'] == {'height': 8, 'width': 8}
  assert processor['image_mean'] == [0.5] * 3 and processor['image_std'] == [0.5] * 3
  images = _images()
  ours, _ = _vit_probs(module, params, images)
  clf = transformers.pipeline('image-classification', model=str(export))
  results = clf([PIL.Image.fromarray(im) for im in images], top_k=None)
  np.testing.assert_allclose(_pipeline_probs(results, CLASSES), ours, atol=1e-5, rtol=0)
  assert [r[0]['label'] for r in results] == [CLASSES[i] for i in ours.argmax(-1)]
  assert len(set(ours.argmax(-1))) > 1
  model, info = transformers.AutoModelForImageClassification.from_pretrained(
      export, output_loading_info=True)
  assert not info['missing_keys']  # the pooler is an unused extra (ViT*For* has none)
  _assert_round_trip(export, module, params)


@pytest.mark.parametrize('pooling', ['pooler', 'mean'])
def test_vit_pooler_and_mean_load_with_the_documented_recipe(tmp_path, pooling):
  module, params, export = _export_vit(tmp_path, pooling)
  config = json.loads((export / 'config.json').read_text())
  assert config['architectures'] == ['ViTModel'] and 'id2label' not in config
  assert json.loads((export / 'labels.json').read_text()) == {'head': list(CLASSES)}
  images = _images()
  ours, _ = _vit_probs(module, params, images)
  proc = transformers.AutoImageProcessor.from_pretrained(export)
  model = transformers.AutoModel.from_pretrained(export).eval()
  rgb = [PIL.Image.fromarray(im).convert('RGB') for im in images]
  with torch.no_grad():
    out = model(**proc(rgb, return_tensors='pt'))
  pooled = out.pooler_output if pooling == 'pooler' else out.last_hidden_state[:, 1:].mean(1)
  w = safetensors.torch.load_file(export / 'model.safetensors')
  logits = pooled @ w['head.weight'].T + w['head.bias']
  np.testing.assert_allclose(logits.softmax(-1).numpy(), ours, atol=1e-5, rtol=0)
  _assert_round_trip(export, module, params)


def test_image_processor_resizes_as_training_did(tmp_path):
  """Another stored size: PIL's BILINEAR is our antialiased bilinear, on uint8 (rounding)."""
  _, _, export = _export_vit(tmp_path, 'cls')
  proc = transformers.AutoImageProcessor.from_pretrained(export)
  for size in (5, 16, 24):  # up and down
    images = _images(n=2, size=size)
    prep = pipeline_lib.FinishImages(where='test', image_size=(8, 8), channels=0,
                                     mean=(0.5,), std=(0.5,))
    ours = prep({'image': image_lib.to_float(images[..., None])})['image'][..., 0]
    theirs = proc([PIL.Image.fromarray(im) for im in images], return_tensors='np')
    pixels = theirs['pixel_values']  # [N, 3, 8, 8], the same gray in each channel
    np.testing.assert_allclose(pixels[:, 0], ours, atol=1.01 / 255 / 0.5, rtol=0)
    np.testing.assert_array_equal(pixels[:, 1], pixels[:, 0])


# --- the CLI's export ------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_export_has_card_labels_and_processor(tiny_assets, tmp_path):
  text, image = tmp_path / 'text', tmp_path / 'image'
  results = run_cli_batch({
      'text': ['train', f'--workdir={text}', *tiny_args(tiny_assets, train__num_steps=2)],
      'image': ['train', f'--workdir={image}', *tiny_args(
          tiny_assets, train__num_steps=2, model__name=str(tiny_assets.vit_dir),
          data__target__name=tiny_assets.image_dataset, model__pooling='cls')]})
  for name, result in results.items():
    assert result['code'] == 0, f'{name}: {result["stderr"][-3000:]}'
  # Text, default mean pooling: sentence-transformers layout, said so in card and report.
  card = (text / 'export' / 'README.md').read_text()
  assert 'Not a transformers classifier' in card and 'SentenceTransformer' in card
  assert '| target/validation | accuracy |' in card
  assert json.loads((text / 'export' / 'labels.json').read_text()) == {'head': list(CLASSES)}
  assert json.loads((text / 'export' / 'tokenizer_config.json').read_text())[
      'model_max_length'] == 16
  assert 'export loads as sentence-transformers' in results['text']['stdout'] + \
      results['text']['stderr']
  # Image, cls pooling: a ViTForImageClassification the pipeline runs with tl_jax's numbers.
  export = image / 'export'
  config = json.loads((export / 'config.json').read_text())
  assert config['id2label'] == {'0': 'business', '1': 'sport', '2': 'tech'}
  assert (export / 'preprocessor_config.json').exists()
  card = (export / 'README.md').read_text()
  assert "pipeline('image-classification'" in card and 'pipeline_tag: image-classification' in card
  module, params = load_pretrained(export)
  images = _images()
  ours, _ = _vit_probs(module, params, images)
  clf = transformers.pipeline('image-classification', model=str(export))
  theirs = clf([PIL.Image.fromarray(im) for im in images], top_k=None)
  np.testing.assert_allclose(_pipeline_probs(theirs, CLASSES), ours, atol=1e-5, rtol=0)
