"""Dataset names -> prepared TFDS builders -> random-access data sources, and what they hold.

A name is any TFDS name (`glue/sst2`, `cifar10`, `digits/rotated`, `bbc_news:1.0.0`) or
`folder:/path/to/DIR` for the generic folder builder. Data are read with `tfds.data_source`
(array_record, no TensorFlow). A dataset that is not on disk is prepared once into `data_dir`:
that TFDS prepare step is the only thing that writes there.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import re
import socket
import sys
import threading
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from tl_jax.data import builders  # registers bbc_news, digits, folder  # pylint: disable=unused-import
from tl_jax.data import errors
from tl_jax.data.builders import base
from tl_jax.data.builders import folder

# TFDS 4.9 asks `importlib_resources` (the backport, only a dependency before Python 3.9) where
# a builder's code lives, so any TFDS builder in a package fails to prepare without it on 3.11.
# The standard library module is the same API.
try:
  import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
except ImportError:
  sys.modules.setdefault('importlib_resources', importlib.resources)

FOLDER_PREFIX = 'folder:'
_LOCK = threading.Lock()  # one prepare at a time per process


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the trainer need to know about one dataset (one domain)."""
  name: str
  kind: str  # 'text' | 'image'
  num_classes: int  # 0 when the dataset has no label feature
  class_names: tuple[str, ...]
  splits: dict[str, int]  # split name -> number of examples
  image_shape: tuple[int | None, ...] | None  # stored (H, W, C), None dims vary; None: text
  text_fields: tuple[str, ...]  # the dataset's Text features, in feature order
  label_key: str | None
  image_key: str | None
  skipped: tuple[str, ...] = ()  # folder datasets: hidden / OS-junk entries left out

  @property
  def has_labels(self) -> bool:
    return self.label_key is not None


def _known_names() -> list[str]:
  return sorted(set(tfds.list_builders(with_community_datasets=False)))


def _unknown_name_error(name: str, candidates: list[str], what: str = 'dataset'):
  close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
  hint = f'close matches: {", ".join(close)}' if close else (
      'see tfds.list_builders(); our own: bbc_news, digits/<config>, folder:/path/to/DIR')
  return errors.DatasetNotFoundError(f'unknown {what} {name!r}; {hint}')


def _default_data_dir(data_dir: str | None) -> str | None:
  return data_dir or None  # '' in the config means the TFDS default


def _check_name(name: str) -> None:
  """Unknown builder or config names fail here, before anything touches the disk."""
  if not name:
    raise errors.DatasetNotFoundError(
        'no dataset name given; set data.target.name (e.g. bbc_news, digits/inverted)')
  base = re.split('[/:]', name, maxsplit=1)[0]
  known = _known_names()
  if base not in known:
    raise _unknown_name_error(base, known)
  if '/' in name:
    config = name.split('/', 1)[1].split(':')[0]
    builder_cls = tfds.builder_cls(base)
    configs = [c.name for c in (getattr(builder_cls, 'BUILDER_CONFIGS', None) or [])]
    if config not in configs:
      raise _unknown_name_error(f'{base}/{config}', [f'{base}/{c}' for c in configs],
                                what='dataset config')


@functools.lru_cache(maxsize=None)
def _builder_cached(name: str, data_dir: str | None, fingerprint: str):
  del fingerprint  # part of the cache key only: a changed folder is a new dataset
  if name.startswith(FOLDER_PREFIX):
    return folder.make_builder(name[len(FOLDER_PREFIX):], data_dir)
  _check_name(name)
  return tfds.builder(name, data_dir=data_dir, file_format='array_record')


def get_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The prepared builder of `name` (prepares it into data_dir the first time)."""
  data_dir = _default_data_dir(data_dir)
  fingerprint = ''
  if name.startswith(FOLDER_PREFIX):
    fingerprint = folder.fingerprint(name[len(FOLDER_PREFIX):])
  builder = _builder_cached(name, data_dir, fingerprint)
  with _LOCK:
    if not builder.is_prepared():
      prepare(builder, name)
  return builder


def _offline() -> bool:
  """True when names do not resolve: TFDS would otherwise retry downloads for minutes."""
  try:
    socket.getaddrinfo('storage.googleapis.com', 443)
  except socket.gaierror:
    return True
  except OSError:
    return False
  return False


def _not_prepared(name: str, builder, why: str) -> errors.DatasetNotPreparedError:
  return errors.DatasetNotPreparedError(
      f'{name!r} is not prepared in {builder.data_dir_root} and {why}; prepare it on a machine '
      f'with network (tfds build {name} --file_format=array_record --data_dir=DIR) and copy DIR '
      'here (data.data_dir=DIR)')


def prepare(builder: tfds.core.DatasetBuilder, name: str) -> None:
  """The TFDS prepare step: offline for our builders; downloads for the others."""
  if not isinstance(builder, base.OfflineBuilder) and _offline():
    raise _not_prepared(name, builder, 'there is no network to download it')
  try:
    builder.download_and_prepare(file_format='array_record')
  except errors.DataError:
    raise
  except ModuleNotFoundError as e:
    if 'tensorflow' in str(e):
      raise errors.DatasetNotPreparedError(
          f'preparing {name!r} needs TensorFlow (pip install "tl_jax[tensorflow]"), or prepare '
          f'it elsewhere: tfds build {name} --file_format=array_record '
          f'--data_dir={builder.data_dir_root}') from e
    raise _not_prepared(name, builder, f'preparing it needs the package {e.name!r}') from e
  except Exception as e:  # network errors come in many types
    if isinstance(builder, base.OfflineBuilder):  # local files only: no advice about networks
      raise errors.DataError(
          f'preparing {name!r} failed ({type(e).__name__}: {str(e)[:200]}); check its files') from e
    raise _not_prepared(
        name, builder, f'preparing it failed ({type(e).__name__}: {str(e)[:200]})') from e


def _features(builder) -> dict[str, Any]:
  return dict(builder.info.features.items())


def _image_key(features: dict[str, Any]) -> str | None:
  def is_image(f):
    return isinstance(f, tfds.features.Image) or (
        isinstance(f, tfds.features.Tensor) and len(f.shape) in (2, 3)
        and np.dtype(f.np_dtype) in (np.uint8, np.float32))
  if 'image' in features and is_image(features['image']):
    return 'image'
  keys = [k for k, f in features.items() if is_image(f)]
  return keys[0] if len(keys) == 1 else None


def _label_key(features: dict[str, Any]) -> str | None:
  if isinstance(features.get('label'), tfds.features.ClassLabel):
    return 'label'
  keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  return keys[0] if len(keys) == 1 else None


def info(name: str, data_dir: str | None = None,
         image_channels: int | None = None) -> DatasetInfo:
  """Kind, classes, split sizes and feature keys of a dataset (prepares it if needed).

  image_channels: data.image_channels, when known; a folder of mixed channel counts is refused
  with 0, before anything is prepared."""
  if name.startswith(FOLDER_PREFIX) and image_channels is not None:
    folder.check_channels(name[len(FOLDER_PREFIX):], image_channels)
  builder = get_builder(name, data_dir)
  features = _features(builder)
  image_key = _image_key(features)
  text_fields = tuple(k for k, f in features.items() if isinstance(f, tfds.features.Text))
  label_key = _label_key(features)
  if image_key:
    kind = 'image'
    shape = tuple(d if isinstance(d, int) and d > 0 else None
                  for d in features[image_key].shape)
    image_shape = shape + (1,) if len(shape) == 2 else shape
  elif text_fields:
    kind, image_shape = 'text', None
  else:
    raise errors.DataError(
        f'{name!r} has neither an image nor a text feature (features: {sorted(features)}); '
        'tl_jax classifies images or text')
  class_names = tuple(features[label_key].names) if label_key else ()
  return DatasetInfo(
      name=name, kind=kind, num_classes=len(class_names), class_names=class_names,
      splits={k: v.num_examples for k, v in builder.info.splits.items()},
      image_shape=image_shape, text_fields=text_fields, label_key=label_key,
      image_key=image_key,
      skipped=folder.scan(builder.builder_config.root).skipped
      if isinstance(builder, folder.Folder) else ())


def data_source(name: str, split: str, data_dir: str | None = None):
  """A random-access source (len, [i], __getitems__) of one split, never empty."""
  builder = get_builder(name, data_dir)
  available = sorted(builder.info.splits.keys())
  base = split.split('[')[0]
  if base not in available:
    raise errors.DatasetNotFoundError(
        f'{name!r} has no split {split!r}; its splits: {", ".join(available)}')
  try:
    num_examples = builder.info.splits[split].num_examples  # also for 'train[:10%]'
  except (ValueError, KeyError, AssertionError) as e:
    raise errors.DatasetNotFoundError(f'cannot read split {split!r} of {name!r}: {e}') from e
  if num_examples == 0:
    raise errors.EmptyDatasetError(
        f'split {split!r} of {name!r} is empty; choose another split (splits: '
        f'{", ".join(f"{k}={v.num_examples}" for k, v in builder.info.splits.items())})')
  try:
    return builder.as_data_source(split=split)
  except ModuleNotFoundError as e:
    raise errors.DatasetNotPreparedError(
        f'reading {name!r} needs TensorFlow ({e}); pip install "tl_jax[tensorflow]"') from e
  except NotImplementedError as e:  # prepared earlier as tfrecord
    raise errors.DatasetNotPreparedError(
        f'{name!r} in {builder.data_dir_root} is stored as {builder.info.file_format}, and '
        'tl_jax reads array_record without TensorFlow; convert it: tfds convert_format '
        f'--root_data_dir={builder.data_dir_root} --out_file_format=array_record') from e
