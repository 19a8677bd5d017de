"""Every bad input is one clear error that names the fix."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fixtures_data import minilm_tokenizer, prepared_data_dir  # noqa: F401 (fixtures)
from tl_jax import data
from tl_jax.config import base_config
from tl_jax.data import image as image_lib
from tl_jax.data import sources
from tl_jax.data.builders import base


class TlJaxTestUnlabeledTest(base.OfflineBuilder):
  """Two classes; its test split is unlabelled (-1), like GLUE's."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'sentence': tfds.features.Text(), 'label': tfds.features.ClassLabel(names=['a', 'b'])}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples([0, 1] * 4), 'test': self._generate_examples([-1] * 3)}

  def _generate_examples(self, labels):
    for i, label in enumerate(labels):
      yield i, {'sentence': f'sentence {i}', 'label': label}


@pytest.fixture
def cfg(prepared_data_dir):
  cfg = base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.batch_size = 8
  cfg.lock()
  return cfg


def test_unknown_dataset_lists_close_matches(cfg, minilm_tokenizer):
  cfg.target.name = 'bbc_new'
  with pytest.raises(data.DatasetNotFoundError, match="unknown dataset 'bbc_new'.*bbc_news"):
    data.build_train_iterator(cfg, tokenizer=minilm_tokenizer)
  with pytest.raises(data.DatasetNotFoundError, match='close matches: digits/rotated'):
    sources.info('digits/rotatd', cfg.data_dir)
  with pytest.raises(data.DatasetNotFoundError, match='cifar10'):
    sources.info('cifar1O', cfg.data_dir)


def test_missing_split_lists_the_splits(cfg, minilm_tokenizer):
  cfg.target.train_split = 'valid'
  with pytest.raises(data.DatasetNotFoundError,
                     match="no split 'valid'; its splits: test, train, validation"):
    data.build_train_iterator(cfg, tokenizer=minilm_tokenizer)


def test_empty_split(cfg, minilm_tokenizer):
  cfg.target.eval_splits = ('test[5:5]',)
  with pytest.raises(data.EmptyDatasetError, match=r"split 'test\[5:5\]'.*is empty"):
    data.build_eval_batches(cfg, tokenizer=minilm_tokenizer)


def test_labels_outside_num_classes(cfg, minilm_tokenizer):
  cfg.target.name = 'tl_jax_test_unlabeled_test'
  cfg.target.eval_splits = ('test',)
  cfg.text_fields = ('sentence',)
  evals = data.build_eval_batches(cfg, tokenizer=minilm_tokenizer)
  with pytest.raises(data.BadExampleError, match=r'label -1 outside 0..1.*eval_splits'):
    list(evals['target/test'])
  # A source whose labels do not fit the shared head.
  cfg.source.name = 'bbc_news'
  cfg.source.text_fields = ('title', 'body')
  with pytest.raises(data.DataError, match="5 classes but shares the head.*head='source'"):
    data.build_train_iterator(cfg, tokenizer=minilm_tokenizer)
  cfg.source.head = 'source'
  batch = next(data.build_train_iterator(cfg, tokenizer=minilm_tokenizer))
  assert batch['source']['label'].max() < 5 and batch['target']['label'].max() < 2


def test_folder_without_files(tmp_path):
  (tmp_path / 'empty' / 'cats').mkdir(parents=True)
  (tmp_path / 'empty' / 'cats' / 'notes.md').write_text('not a data file')
  with pytest.raises(data.EmptyDatasetError, match='has no files: expected .*<label>/<file>'):
    sources.info(f'folder:{tmp_path / "empty"}', str(tmp_path / 'tfds'))
  with pytest.raises(data.DatasetNotFoundError, match='is not a directory'):
    sources.info(f'folder:{tmp_path / "missing"}', str(tmp_path / 'tfds'))


def test_image_of_the_wrong_rank(tmp_path):
  for label in ('a', 'b'):
    (tmp_path / 'imgs' / label).mkdir(parents=True)
    np.save(tmp_path / 'imgs' / label / '0.npy', np.zeros((4, 4, 1), np.uint8))
  np.save(tmp_path / 'imgs' / 'b' / '1.npy', np.zeros((2, 4, 4, 1), np.uint8))
  with pytest.raises(data.BadExampleError, match=r'1.npy: an image must be \[height, width\]'):
    sources.info(f'folder:{tmp_path / "imgs"}', str(tmp_path / 'tfds'))
  with pytest.raises(data.BadExampleError, match=r'got shape \(5,\)'):
    image_lib.check_rank(np.zeros(5), 'x')
  assert image_lib.check_rank(np.zeros((3, 4)), 'x').shape == (3, 4, 1)


def test_batch_size_must_divide_by_devices(cfg, minilm_tokenizer):
  cfg.batch_size = 12
  with pytest.raises(data.BatchSizeError, match='batch_size=12 does not divide by the 8 devices'):
    data.build_train_iterator(cfg, tokenizer=minilm_tokenizer, num_devices=8)
  cfg.eval_batch_size = 20
  with pytest.raises(data.BatchSizeError, match='eval_batch_size=20 .* 8 devices.*16 or 24'):
    data.build_eval_batches(cfg, tokenizer=minilm_tokenizer, num_devices=8)


def test_few_shot_larger_than_a_class(cfg):
  cfg.target.name = 'digits'
  cfg.target.few_shot = 500
  with pytest.raises(data.DataError, match="few_shot=500 but class '0' has only"):
    data.build_train_iterator(cfg)


def test_text_needs_tokenizer_and_existing_fields(cfg, minilm_tokenizer):
  with pytest.raises(data.DataError, match='needs a tokenizer'):
    data.build_train_iterator(cfg)
  cfg.text_fields = ('sentence',)
  with pytest.raises(data.DataError, match="no text field 'sentence'; its text fields: id, title"):
    data.build_train_iterator(cfg, tokenizer=minilm_tokenizer)


def test_unprepared_dataset_offline_is_one_error_and_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, '_offline', lambda: True)  # deterministic, with or without network
  with pytest.raises(data.DatasetNotPreparedError, match='no network.*tfds build mnist'):
    sources.info('mnist', str(tmp_path / 'tfds'))
  assert not os.path.exists(tmp_path / 'tfds')


def _folder(root, labels=('a', 'b'), n=3, write=None):
  for label in labels:
    (root / label).mkdir(parents=True, exist_ok=True)
    for i in range(n):
      if write is None:
        (root / label / f'{i}.txt').write_text(f'{label} {i}')
      else:
        write(root / label, i)
  return f'folder:{root}'


def test_folder_with_an_empty_class_or_one_class(tmp_path):
  name = _folder(tmp_path / 'd')
  (tmp_path / 'd' / 'c').mkdir()  # a phantom class: no files
  with pytest.raises(data.EmptyDatasetError,
                     match=r"class folder c holds no .*add files or remove"):
    sources.info(name, str(tmp_path / 'tfds'))
  (tmp_path / 'd' / 'c' / 'notes.md').write_text('not data')
  with pytest.raises(data.EmptyDatasetError, match='class folder c holds no'):
    sources.info(name, str(tmp_path / 'tfds'))
  name = _folder(tmp_path / 'one', labels=('cats',))
  with pytest.raises(data.DataError,
                     match=r"has 1 class \(cats\): a classifier needs at least two"):
    sources.info(name, str(tmp_path / 'tfds'))
  # A junk folder beside the one class does not count as a second.
  (tmp_path / 'one' / '__MACOSX').mkdir()
  (tmp_path / 'one' / '__MACOSX' / 'x.txt').write_text('x')
  with pytest.raises(data.DataError, match='has 1 class'):
    sources.info(name, str(tmp_path / 'tfds'))
  assert not os.path.exists(tmp_path / 'tfds')


def _png(directory, i):
  from PIL import Image
  Image.fromarray(np.full((6, 6, 3), i * 40, np.uint8)).save(directory / f'{i}.png')


@pytest.mark.parametrize('damage', ['zero_bytes', 'garbage', 'truncated', 'npy_garbage'])
def test_corrupt_image_names_the_file(tmp_path, damage):
  name = _folder(tmp_path / 'imgs', write=_png)
  bad = tmp_path / 'imgs' / 'b' / '1.png'
  if damage == 'zero_bytes':
    bad.write_bytes(b'')
  elif damage == 'garbage':
    bad.write_bytes(np.random.default_rng(0).bytes(300))
  elif damage == 'truncated':  # a valid header: found when the pixels are read (prepare)
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:1000])
  else:
    bad.unlink()
    bad = bad.with_suffix('.npy')
    bad.write_bytes(b'\x93NUMPY garbage')
  with pytest.raises(data.BadExampleError, match=f'{bad}' + (
      ' is empty \\(0 bytes\\)' if damage == 'zero_bytes' else ' is not a readable image')) as e:
    sources.info(name, str(tmp_path / 'tfds'))
  assert 'replace or remove the file' in str(e.value) and 'network' not in str(e.value)


def test_folder_of_mixed_channels_needs_image_channels(cfg, tmp_path):
  from PIL import Image

  def write(directory, i):  # gray, RGB and RGBA files in every class
    mode, shape = [('L', (6, 6)), ('RGB', (6, 6, 3)), ('RGBA', (6, 6, 4))][i]
    Image.fromarray(np.full(shape, 60 * i + 10, np.uint8), mode).save(directory / f'{i}.png')

  _folder(tmp_path / 'mixed' / 'train', n=3, write=write)
  cfg.target.name = f'folder:{tmp_path / "mixed"}'
  cfg.target.eval_splits = ('train',)
  cfg.data_dir = str(tmp_path / 'tfds')
  cfg.batch_size = 2
  cfg.eval_batch_size = 6
  cfg.image_mean, cfg.image_std = (0.0,), (1.0,)
  with pytest.raises(data.DataError, match=r'mixes images with 1 \(e.g. train/a/0.png\) and 3 .*'
                     r'image_channels=3 \(RGB\) or 1'):
    data.dataset_info(cfg.target, cfg)
  assert not os.path.exists(tmp_path / 'tfds')  # refused before preparing anything
  cfg.image_channels = 3
  assert data.dataset_info(cfg.target, cfg).image_shape == (None, None, None)
  batch = next(iter(data.build_eval_batches(cfg, num_devices=1)['target/train']))
  images = np.asarray(batch['image'])
  assert images.shape == (6, 6, 6, 3) and np.asarray(batch['mask']).all()
  values = sorted(round(float(v) * 255) for v in images[:, 0, 0, :].ravel())
  assert values == [10] * 6 + [70] * 6 + [130] * 6  # gray repeated, RGB, RGBA without alpha
  cfg.image_channels = 1
  batch = next(iter(data.build_train_iterator(cfg, num_devices=1)))
  assert np.asarray(batch['target']['image']).shape == (2, 6, 6, 1)
