"""Any folder of labelled files as a TFDS dataset: `data.target.name='folder:/path/to/DIR'`.

Layouts:
  DIR/<label>/<file>            split here into train/validation/test (80/10/10 per label,
                                fixed seed)
  DIR/<split>/<label>/<file>    used as given when DIR has a `train` folder

Files are all text (.txt -> feature `text`) or all images (.png/.jpg/.jpeg/.bmp/.gif via PIL,
or .npy arrays [H, W] / [H, W, C], uint8 or float in 0..1 -> feature `image`, uint8). The folder
is only read; the prepared copy goes to the TFDS data_dir, under a config named after the folder
and a fingerprint of its files, so changed files give a freshly prepared dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from tl_jax.data import errors
from tl_jax.data.builders import base
from tl_jax.data.builders import splits

TEXT_EXTENSIONS = ('.txt',)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.npy')
SPLIT_SEED = 0
SPLIT_FRACTIONS = (('train', 0.8), ('validation', 0.1), ('test', 0.1))


def _visible_dirs(path: str) -> list[str]:
  return sorted(d for d in os.listdir(path)
                if not d.startswith('.') and os.path.isdir(os.path.join(path, d)))


def _files(path: str) -> list[str]:
  """Files under `path` (recursively, sorted) with a known extension, relative to `path`."""
  found = []
  for dirpath, dirnames, filenames in os.walk(path):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    for name in sorted(filenames):
      if not name.startswith('.') and name.lower().endswith(TEXT_EXTENSIONS + IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(dirpath, name), path))
  return found


@dataclasses.dataclass(frozen=True)
class Layout:
  labels: tuple[str, ...]
  kind: str  # 'text' | 'image'
  files: dict[str | None, list[tuple[str, int]]]  # split (None: to be split) -> (relpath, label)


def scan(root: str) -> Layout:
  """Find labels, files and splits under root; every way it can be unusable is an error."""
  if not os.path.isdir(root):
    raise errors.DatasetNotFoundError(
        f'folder dataset {root!r} is not a directory; point data.*.name at folder:DIR with '
        'DIR/<label>/<file> (or DIR/<split>/<label>/<file>)')
  split_dirs = _visible_dirs(root)
  if 'train' in split_dirs and _visible_dirs(os.path.join(root, 'train')):
    groups = {s: os.path.join(root, s) for s in split_dirs}
  else:
    groups = {None: root}
  labels = sorted({lab for path in groups.values() for lab in _visible_dirs(path)})
  files = {}
  for split, path in groups.items():
    prefix = '' if split is None else split + '/'
    files[split] = [(f'{prefix}{lab}/{f}', labels.index(lab))
                    for lab in _visible_dirs(path) for f in _files(os.path.join(path, lab))]
  names = [f for group in files.values() for f, _ in group]
  if not names:
    raise errors.EmptyDatasetError(
        f'folder dataset {root!r} has no files: expected {root}/<label>/<file> with extension '
        f'{", ".join(TEXT_EXTENSIONS + IMAGE_EXTENSIONS)}')
  kinds = {'text' if n.lower().endswith(TEXT_EXTENSIONS) else 'image' for n in names}
  if len(kinds) > 1:
    raise errors.DataError(
        f'folder dataset {root!r} mixes text (.txt) and image files; keep one kind per dataset')
  return Layout(labels=tuple(labels), kind=kinds.pop(), files=files)


def fingerprint(root: str) -> str:
  """Changes when a file under root is added, removed, resized or touched."""
  digest = hashlib.sha256(os.path.abspath(root).encode())
  if os.path.isdir(root):
    for rel in _files(root):
      st = os.stat(os.path.join(root, rel))
      digest.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return digest.hexdigest()[:12]


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, C] from a PNG/JPEG/... (PIL) or .npy file."""
  if path.lower().endswith('.npy'):
    array = np.load(path, allow_pickle=False)
    if array.dtype != np.uint8:
      if not np.issubdtype(array.dtype, np.floating) or array.min() < 0 or array.max() > 1:
        raise errors.BadExampleError(
            f'{path}: .npy images must be uint8 (0..255) or float in 0..1, got {array.dtype} '
            f'with range [{array.min()}, {array.max()}]')
      array = np.round(array * 255).astype(np.uint8)
  else:
    try:
      from PIL import Image  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise errors.DataError(f'{path}: reading image files needs pillow (pip install pillow); '
                             'or save the images as .npy arrays') from e
    with Image.open(path) as im:
      im = im.convert('L') if im.mode in ('L', 'LA', '1', 'I', 'I;16', 'F') else im.convert('RGB')
      array = np.asarray(im, dtype=np.uint8)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3:
    raise errors.BadExampleError(
        f'{path}: an image must be [height, width] or [height, width, channels], got shape '
        f'{array.shape}; save it with one of those shapes')
  return array


def read_text(path: str) -> str:
  raw = open(path, 'rb').read()
  try:
    return raw.decode('utf-8').strip()
  except UnicodeDecodeError:
    return raw.decode('cp1252', errors='replace').strip()


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  root: str = ''


class Folder(base.OfflineBuilder):
  """A folder of labelled text or image files (see the module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Generic folder builder.'}

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not getattr(self.builder_config, 'root', ''):
      raise errors.DatasetNotFoundError(
          'the folder builder needs a directory: use the name folder:/path/to/DIR')

  @property
  def layout(self) -> Layout:
    if not hasattr(self, '_layout'):
      self._layout = scan(self.builder_config.root)
    return self._layout

  def _info(self) -> tfds.core.DatasetInfo:
    layout = self.layout
    if layout.kind == 'text':
      content = {'text': tfds.features.Text()}
    else:
      first = next(f for group in layout.files.values() for f, _ in group)
      channels = read_image(os.path.join(self.builder_config.root, first)).shape[-1]
      content = {'image': tfds.features.Tensor(shape=(None, None, channels), dtype=np.uint8,
                                               encoding='zlib')}
    return tfds.core.DatasetInfo(
        builder=self,
        description=f'Files of {self.builder_config.root}',
        features=tfds.features.FeaturesDict({
            'path': tfds.features.Text(),
            **content,
            'label': tfds.features.ClassLabel(names=list(layout.labels)),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    files = dict(self.layout.files)
    if None in files:
      group = files.pop(None)
      labels = np.array([lab for _, lab in group])
      for split, idx in splits.stratified_split(labels, SPLIT_SEED, SPLIT_FRACTIONS).items():
        files[split] = [group[i] for i in idx]
    return {split: self._generate_examples(group) for split, group in files.items() if group}

  def _generate_examples(self, group):
    root = self.builder_config.root
    channels = None
    for rel, label in group:
      path = os.path.join(root, rel)
      if self.layout.kind == 'text':
        content = {'text': read_text(path)}
      else:
        image = read_image(path)
        channels = channels or image.shape[-1]
        if image.shape[-1] != channels:
          raise errors.BadExampleError(
              f'{path}: {image.shape[-1]} channels where the folder has {channels}; '
              'convert the images to one channel count')
        content = {'image': image}
      yield rel, {'path': rel, **content, 'label': label}


def make_builder(root: str, data_dir: str | None) -> Folder:
  root = os.path.abspath(os.path.expanduser(root))
  scan(root)  # fail early with the precise message
  base = re.sub('[^a-z0-9_]+', '_', os.path.basename(root.rstrip('/')).lower())[:40] or 'root'
  config = FolderConfig(name=f'{base}_{fingerprint(root)}', root=root,
                        version=Folder.VERSION, description=f'files of {root}')
  return Folder(config=config, data_dir=data_dir, file_format='array_record')
