"""Image preprocessing in numpy on the host: resize, channels, augmentation, normalise, mixup.

Resizing is bilinear with antialiasing, the same weights as `jax.image.resize(..., 'linear')`,
applied as two small matrix products (no per-pixel Python). Augmentations work on a whole batch
with a generator that grain seeds from the batch index, so they are reproducible and resumable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from tl_jax.data import errors


@functools.lru_cache(maxsize=64)
def linear_resize_weights(in_size: int, out_size: int) -> np.ndarray:
  """[in_size, out_size] weights of bilinear resampling with antialiasing (as jax.image)."""
  inv_scale = in_size / out_size
  kernel_scale = max(inv_scale, 1.0)  # widen the kernel when shrinking: antialias
  sample = (np.arange(out_size) + 0.5) * inv_scale - 0.5  # input coordinate of output centre
  x = np.abs(sample[None, :] - np.arange(in_size)[:, None]) / kernel_scale
  weights = np.maximum(0.0, 1.0 - x)
  total = weights.sum(axis=0, keepdims=True)
  weights = np.where(total > 1000 * np.finfo(np.float32).eps,
                     weights / np.where(total != 0, total, 1), 0.0)
  inside = (sample >= -0.5) & (sample <= in_size - 0.5)
  return np.where(inside[None, :], weights, 0.0).astype(np.float32)


def resize(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """Resize [..., H, W, C] float images to [..., h, w, C] (bilinear, antialiased)."""
  h, w = size
  in_h, in_w = images.shape[-3], images.shape[-2]
  if (in_h, in_w) == (h, w):
    return images.astype(np.float32, copy=False)
  wy = linear_resize_weights(in_h, h)
  wx = linear_resize_weights(in_w, w)
  return np.einsum('...hwc,hy,wx->...yxc', images.astype(np.float32), wy, wx, optimize=True)


def check_rank(image: np.ndarray, where: str) -> np.ndarray:
  """[H, W] (grayscale) -> [H, W, 1]; [H, W, C] as is; anything else is an error."""
  if image.ndim == 2:
    return image[..., None]
  if image.ndim != 3:
    raise errors.BadExampleError(
        f'{where}: an image must be [height, width] or [height, width, channels], got shape '
        f'{tuple(image.shape)}; store images with one of those shapes')
  return image


def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 0..255 -> float32 0..1; float images are taken to be in 0..1 already."""
  if image.dtype == np.uint8:
    return image.astype(np.float32) * np.float32(1.0 / 255.0)
  return image.astype(np.float32, copy=False)


# ITU-R 601 luma, as PIL's convert('L').
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def match_channels(image: np.ndarray, channels: int, where: str) -> np.ndarray:
  """[..., C] -> [..., channels]; 0 keeps the image. Grayscale is repeated (e.g. digits for an
  RGB ViT), an alpha channel (gray+alpha, RGBA) is dropped, RGB(A) -> 1 channel is the luma."""
  have = image.shape[-1]
  if channels in (0, have):
    return image
  if have in (2, 4):  # drop alpha
    image, have = image[..., :have - 1], have - 1
    if have == channels:
      return image
  if have == 1:
    return np.repeat(image, channels, axis=-1)
  if have == 3 and channels == 1:
    luma = image.astype(np.float32) @ _LUMA
    return luma[..., None].astype(image.dtype if image.dtype != np.uint8 else np.float32)
  raise errors.BadExampleError(
      f'{where}: images have {image.shape[-1]} channels but data.image_channels={channels}; '
      f'set data.image_channels=0 (keep), 1 (grayscale) or 3 (RGB)')


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  return (images - mean) / std


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, *, flip: bool) -> np.ndarray:
  """Pad by 1/8 of the size (reflect), crop back at a random offset, flip left-right at random.

  images: [B, H, W, C]. One gather for the whole batch.
  """
  b, h, w, _ = images.shape
  py, px = max(1, h // 8), max(1, w // 8)
  padded = np.pad(images, ((0, 0), (py, py), (px, px), (0, 0)), mode='reflect')
  oy = rng.integers(0, 2 * py + 1, size=b)
  ox = rng.integers(0, 2 * px + 1, size=b)
  rows = oy[:, None] + np.arange(h)[None, :]  # [B, H]
  cols = ox[:, None] + np.arange(w)[None, :]  # [B, W]
  if flip:
    flipped = rng.random(b) < 0.5
    cols = np.where(flipped[:, None], cols[:, ::-1], cols)
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def mixup(images: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Mix each example with the batch reversed, one lambda ~ Beta(alpha, alpha) per batch.

  Returns (mixed images, soft targets [B, num_classes]).
  """
  lam = np.float32(rng.beta(alpha, alpha))
  onehot = np.eye(num_classes, dtype=np.float32)[labels]
  mixed = lam * images + (1 - lam) * images[::-1]
  probs = lam * onehot + (1 - lam) * onehot[::-1]
  return mixed.astype(np.float32), probs
