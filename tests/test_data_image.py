"""Host-side image ops against independent references."""

import jax
import numpy as np
import pytest

from tl_jax.data import image as image_lib


@pytest.mark.parametrize('size', [(16, 16), (5, 5), (32, 24), (3, 11), (8, 8)])
def test_resize_matches_jax_image_resize(size):
  x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
  expected = jax.image.resize(x, (2, *size, 3), method='linear', antialias=True)
  np.testing.assert_allclose(image_lib.resize(x, size), expected, atol=1e-5)


def test_random_crop_flip_is_a_window_of_the_padded_image():
  rng = np.random.default_rng(0)
  x = rng.random((6, 16, 16, 2), dtype=np.float32)
  out = image_lib.random_crop_flip(x, np.random.default_rng(1), flip=True)
  padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
  flips = 0
  for b in range(6):
    windows = [(w[:, ::-1] if f else w, f) for oy in range(5) for ox in range(5)
               for f in (False, True) for w in [padded[b, oy:oy + 16, ox:ox + 16]]]
    match = [f for w, f in windows if np.array_equal(w, out[b])]
    assert match, f'row {b} is not a crop of its padded image'
    flips += match[0]
  assert 0 < flips < 6  # some flipped, some not
  same = image_lib.random_crop_flip(x, np.random.default_rng(1), flip=True)
  np.testing.assert_array_equal(out, same)  # seeded: reproducible


def test_mixup_mixes_with_the_reversed_batch():
  rng = np.random.default_rng(0)
  x = rng.random((4, 3, 3, 1), dtype=np.float32)
  labels = np.array([0, 1, 2, 1])
  mixed, probs = image_lib.mixup(x, labels, 3, 0.4, np.random.default_rng(7))
  lam = np.random.default_rng(7).beta(0.4, 0.4)
  np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], rtol=1e-6)
  np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-6)
  np.testing.assert_allclose(probs[0], [lam, 1 - lam, 0], rtol=1e-6)  # 0 mixed with label 1


def test_normalize_and_channels():
  x = np.full((2, 2, 1), 1.0, np.float32)
  np.testing.assert_allclose(image_lib.normalize(x, (0.5,), (0.5,)), 1.0)
  assert image_lib.match_channels(x, 3, 'x').shape == (2, 2, 3)
  with pytest.raises(ValueError, match='have 5 channels but data.image_channels=3'):
    image_lib.match_channels(np.zeros((2, 2, 5)), 3, 'x')
  # RGB -> grayscale is PIL's luma; alpha (RGBA, gray + alpha) is dropped.
  from PIL import Image
  rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
  gray = image_lib.match_channels(image_lib.to_float(rgb), 1, 'x')
  assert gray.shape == (4, 4, 1)
  np.testing.assert_allclose(gray[..., 0] * 255, np.asarray(Image.fromarray(rgb).convert('L')),
                             atol=0.51)
  rgba = np.concatenate([rgb, np.full((4, 4, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(image_lib.match_channels(rgba, 3, 'x'), rgb)
  np.testing.assert_allclose(image_lib.match_channels(image_lib.to_float(rgba), 1, 'x'), gray)
  np.testing.assert_array_equal(image_lib.match_channels(rgba[..., 1:3], 3, 'x'),
                                np.repeat(rgba[..., 1:2], 3, -1))
  assert image_lib.to_float(np.array([255], np.uint8))[0] == 1.0
