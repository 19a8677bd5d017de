"""Any folder of labelled files as a TFDS dataset: `data.target.name='folder:/path/to/DIR'`.

Layouts:
  DIR/<label>/<file>            split here into train/validation/test (80/10/10 per label,
                                fixed seed)
  DIR/<split>/<label>/<file>    used as given when DIR has a `train` folder

Files are all text (.txt -> feature `text`) or all images (.png/.jpg/.jpeg/.bmp/.gif via PIL,
or .npy arrays [H, W] / [H, W, C], uint8 or float in 0..1 -> feature `image`, uint8). The folder
is only read; the prepared copy goes to the TFDS data_dir, under a config named after the folder
and a fingerprint of its files, so changed files give a freshly prepared dataset.

Hidden and OS-junk entries (names starting with '.', `__MACOSX`, `Thumbs.db`, `desktop.ini`, ...)
are skipped, never classes or examples (`Layout.skipped`, shown by `tl-jax info`). A class folder
without files, fewer than two classes, and an unreadable or empty image file are errors. Images
are stored with their own channel count; a folder mixing grayscale and RGB(A) images is stored as
it is and converted by the pipeline to `data.image_channels` (refused when that is 0).
"""

from __future__ import annotations

import dataclasses
import functools
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


# Junk that archivers, OS file browsers and sync tools leave in folders (compared lowercased).
JUNK_NAMES = frozenset(n.lower() for n in (
    '__MACOSX', 'Thumbs.db', 'ehthumbs.db', 'desktop.ini', '$RECYCLE.BIN', '@eaDir',
    'System Volume Information', 'lost+found', '__pycache__', 'Icon\r'))


def is_hidden(name: str) -> bool:
  """Dot files/folders (.DS_Store, ._x, .ipynb_checkpoints, .git) and OS junk."""
  return name.startswith(('.', '~$')) or name.lower() in JUNK_NAMES


def _visible_dirs(path: str, skipped: list[str] | None = None, rel: str = '') -> list[str]:
  found = []
  for d in sorted(os.listdir(path)):
    if is_hidden(d):
      if skipped is not None:
        skipped.append(rel + d)
    elif os.path.isdir(os.path.join(path, d)):
      found.append(d)
  return found


def _files(path: str, skipped: list[str] | None = None, rel: str = '') -> list[str]:
  """Files under `path` (recursively, sorted) with a known extension, relative to `path`.

  Hidden entries are not entered; their paths (prefixed by `rel`) go to `skipped`."""
  found = []
  for dirpath, dirnames, filenames in os.walk(path):
    here = os.path.relpath(dirpath, path)
    here = '' if here == '.' else here + '/'
    if skipped is not None:
      skipped.extend(rel + here + n for n in sorted(dirnames + filenames) if is_hidden(n))
    dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
    for name in sorted(filenames):
      if not is_hidden(name) and name.lower().endswith(TEXT_EXTENSIONS + IMAGE_EXTENSIONS):
        found.append(here + name)
  return found


@dataclasses.dataclass(frozen=True)
class Layout:
  labels: tuple[str, ...]
  kind: str  # 'text' | 'image'
  files: dict[str | None, list[tuple[str, int]]]  # split (None: to be split) -> (relpath, label)
  skipped: tuple[str, ...] = ()  # hidden / OS-junk entries left out, relative to the root
  channels: dict[int, str] = dataclasses.field(default_factory=dict)  # images: count -> a file

  @property
  def mixed_channels(self) -> bool:
    return len(self.channels) > 1


def scan(root: str) -> Layout:
  """Find labels, files and splits under root; every way it can be unusable is an error."""
  if not os.path.isdir(root):
    raise errors.DatasetNotFoundError(
        f'folder dataset {root!r} is not a directory; point data.*.name at folder:DIR with '
        'DIR/<label>/<file> (or DIR/<split>/<label>/<file>)')
  return _scan(os.path.abspath(root), fingerprint(root, with_skipped=True))


@functools.lru_cache(maxsize=16)
def _scan(root: str, fingerprint_: str) -> Layout:
  del fingerprint_  # the cache key: changed files are scanned again
  skipped = []
  split_dirs = _visible_dirs(root, skipped)
  if 'train' in split_dirs and _visible_dirs(os.path.join(root, 'train')):
    groups = {s: os.path.join(root, s) for s in split_dirs}
  else:
    groups = {None: root}
  label_dirs = {}
  for split, path in groups.items():
    prefix = '' if split is None else split + '/'
    label_dirs[split] = _visible_dirs(path, None if split is None else skipped, prefix)
  labels = sorted({lab for dirs in label_dirs.values() for lab in dirs})
  files, empty = {}, []
  for split, path in groups.items():
    prefix = '' if split is None else split + '/'
    files[split] = []
    for lab in label_dirs[split]:
      found = _files(os.path.join(path, lab), skipped, f'{prefix}{lab}/')
      if not found:
        empty.append(f'{prefix}{lab}')
      files[split] += [(f'{prefix}{lab}/{f}', labels.index(lab)) for f in found]
  names = [f for group in files.values() for f, _ in group]
  exts = ', '.join(TEXT_EXTENSIONS + IMAGE_EXTENSIONS)
  if not names:
    raise errors.EmptyDatasetError(
        f'folder dataset {root!r} has no files: expected {root}/<label>/<file> with extension '
        f'{exts}')
  if empty:
    raise errors.EmptyDatasetError(
        f'folder dataset {root!r}: class folder {", ".join(empty)} holds no {exts} files (an empty '
        'class would still get a logit); add files or remove the folder')
  if len(labels) < 2:
    raise errors.DataError(
        f'folder dataset {root!r} has {len(labels)} class ({", ".join(labels)}): a classifier '
        f'needs at least two, one folder per class: {root}/<label>/<file>')
  kinds = {'text' if n.lower().endswith(TEXT_EXTENSIONS) else 'image' for n in names}
  if len(kinds) > 1:
    raise errors.DataError(
        f'folder dataset {root!r} mixes text (.txt) and image files; keep one kind per dataset')
  kind = kinds.pop()
  channels = {}
  if kind == 'image':
    for name in names:
      channels.setdefault(probe_channels(os.path.join(root, name)), name)
  return Layout(labels=tuple(labels), kind=kind, files=files, skipped=tuple(skipped),
                channels=channels)


def fingerprint(root: str, with_skipped: bool = False) -> str:
  """Changes when a file under root is added, removed, resized or touched (hidden entries too,
  with_skipped: what scan reports, not what the prepared copy holds)."""
  digest = hashlib.sha256(os.path.abspath(root).encode())
  if os.path.isdir(root):
    skipped = [] if with_skipped else None
    for rel in _files(root, skipped):  # hidden entries are skipped: junk changes no data
      st = os.stat(os.path.join(root, rel))
      digest.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    digest.update('\0'.join(skipped or ()).encode())
  return digest.hexdigest()[:12]


# PIL modes read as one channel; every other mode is read as RGB (RGBA/P/CMYK: alpha dropped).
_GRAY_MODES = ('L', 'LA', '1', 'I', 'I;16', 'F')


def _unreadable(path: str, e: Exception) -> errors.BadExampleError:
  return errors.BadExampleError(
      f'{path} is not a readable image ({type(e).__name__}: {str(e)[:150]}); replace or remove '
      'the file')


def _check_not_empty(path: str) -> None:
  if os.path.getsize(path) == 0:
    raise errors.BadExampleError(f'{path} is empty (0 bytes); replace or remove the file')


def _pil():
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.DataError('reading image files needs pillow (pip install pillow); or save the '
                           'images as .npy arrays') from e
  return Image


def probe_channels(path: str) -> int:
  """The channel count read_image will give, from the file's header only (cheap)."""
  _check_not_empty(path)
  try:
    if path.lower().endswith('.npy'):
      shape = np.load(path, mmap_mode='r', allow_pickle=False).shape
      if len(shape) not in (2, 3):
        raise errors.BadExampleError(
            f'{path}: an image must be [height, width] or [height, width, channels], got shape '
            f'{shape}; save it with one of those shapes')
      return shape[-1] if len(shape) == 3 else 1
    with _pil().open(path) as im:
      return 1 if im.mode in _GRAY_MODES else 3
  except errors.DataError:
    raise
  except Exception as e:  # PIL and numpy raise many types for a bad file
    raise _unreadable(path, e) from None


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, C] from a PNG/JPEG/... (PIL) or .npy file."""
  _check_not_empty(path)
  if path.lower().endswith('.npy'):
    try:
      array = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated, not an .npy, pickled objects
      raise _unreadable(path, e) from None
    if array.dtype != np.uint8:
      if not np.issubdtype(array.dtype, np.floating) or array.min() < 0 or array.max() > 1:
        raise errors.BadExampleError(
            f'{path}: .npy images must be uint8 (0..255) or float in 0..1, got {array.dtype} '
            f'with range [{array.min()}, {array.max()}]')
      array = np.round(array * 255).astype(np.uint8)
  else:
    image_cls = _pil()
    try:
      with image_cls.open(path) as im:
        im = im.convert('L') if im.mode in _GRAY_MODES else im.convert('RGB')
        array = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # truncated or corrupt pixel data
      raise _unreadable(path, e) from None
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
      # Mixed channel counts are stored as they are (channels None); the pipeline converts.
      channels = None if layout.mixed_channels else next(iter(layout.channels))
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
    for rel, label in group:
      path = os.path.join(root, rel)
      if self.layout.kind == 'text':
        content = {'text': read_text(path)}
      else:
        content = {'image': read_image(path)}
      yield rel, {'path': rel, **content, 'label': label}


def check_channels(root: str, image_channels: int) -> None:
  """A folder mixing channel counts needs data.image_channels to say what to convert to."""
  layout = scan(os.path.abspath(os.path.expanduser(root)))
  if layout.mixed_channels and not image_channels:
    found = ' and '.join(f'{c} (e.g. {name})' for c, name in sorted(layout.channels.items()))
    raise errors.DataError(
        f'folder dataset {root!r} mixes images with {found} channels; set '
        '--config.data.image_channels=3 (RGB) or 1 (grayscale) to convert them')


def make_builder(root: str, data_dir: str | None) -> Folder:
  root = os.path.abspath(os.path.expanduser(root))
  scan(root)  # fail early with the precise message
  base = re.sub('[^a-z0-9_]+', '_', os.path.basename(root.rstrip('/')).lower())[:40] or 'root'
  config = FolderConfig(name=f'{base}_{fingerprint(root)}', root=root,
                        version=Folder.VERSION, description=f'files of {root}')
  return Folder(config=config, data_dir=data_dir, file_format='array_record')
