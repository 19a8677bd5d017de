"""sklearn's handwritten digits (1,797 8x8 images) and shifted copies as target domains.

Each config is one domain; all share the same split (stratified 70/15/15, fixed seed) and the
same example order, so `digits/inverted` test images are the inversions of `digits` test images
and never of a source training image. Images are uint8 [H, W, 1] scaled from 0..16 to 0..255.

  digits/original   the sklearn images
  digits/inverted   255 - image (white background)
  digits/rotated    rotated 30..60 degrees counter-clockwise (per image, fixed seed)
  digits/noised     + Gaussian noise (sigma 64 of 255, fixed seed), clipped
  digits/scaled16   bilinearly rescaled to 16x16
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from tl_jax import extras
from tl_jax.data import errors
from tl_jax.data import image as image_lib
from tl_jax.data.builders import base
from tl_jax.data.builders import splits

SPLIT_SEED = 1797
SHIFT_SEED = 42
SPLIT_FRACTIONS = (('train', 0.7), ('validation', 0.15), ('test', 0.15))


@dataclasses.dataclass
class DigitsConfig(tfds.core.BuilderConfig):
  shift: str = 'none'
  size: int = 8


def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 8, 8], labels int64 [N]) from sklearn."""
  extras.require('sklearn', error=errors.DataError)
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return images, digits.target.astype(np.int64)


def apply_shift(images: np.ndarray, shift: str, size: int) -> np.ndarray:
  """The domain shift of one config, deterministic: uint8 [N, 8, 8] -> uint8 [N, s, s]."""
  rng = np.random.default_rng(SHIFT_SEED)
  x = images.astype(np.float32)
  if shift == 'inverted':
    x = 255.0 - x
  elif shift == 'rotated':
    from scipy import ndimage  # pylint: disable=g-import-not-at-top
    angles = rng.uniform(30.0, 60.0, size=len(x))
    x = np.stack([ndimage.rotate(im, a, reshape=False, order=1, mode='constant')
                  for im, a in zip(x, angles)])
  elif shift == 'noised':
    x = x + rng.normal(0.0, 64.0, size=x.shape)
  elif shift != 'none':
    raise ValueError(f'unknown digits shift {shift!r}')
  if size != x.shape[1]:
    x = image_lib.resize(x[..., None], (size, size))[..., 0]
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


class Digits(base.OfflineBuilder):
  """Handwritten digits 0-9 (sklearn), with shifted target domains as configs."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'sklearn digits; fixed stratified 70/15/15 split; 5 domains.'}
  BUILDER_CONFIGS = [
      DigitsConfig(name='original', description='sklearn digits 8x8', shift='none'),
      DigitsConfig(name='inverted', description='255 - image', shift='inverted'),
      DigitsConfig(name='rotated', description='rotated 30-60 degrees', shift='rotated'),
      DigitsConfig(name='noised', description='Gaussian noise sigma 64', shift='noised'),
      DigitsConfig(name='scaled16', description='bilinear 16x16', shift='none', size=16),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'index': tfds.features.Tensor(shape=(), dtype=np.int64),  # row in load_digits()
            'image': tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
        }),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # offline: the data ships with scikit-learn
    images, labels = load_digits()
    images = apply_shift(images, self.builder_config.shift, self.builder_config.size)
    parts = splits.stratified_split(labels, SPLIT_SEED, SPLIT_FRACTIONS)
    return {split: self._generate_examples(images, labels, idx) for split, idx in parts.items()}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'index': int(i), 'image': images[i][..., None], 'label': int(labels[i])}
