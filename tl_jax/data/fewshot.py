"""Few-shot subsets: k examples of every class, chosen by seed, the same on every run."""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import hashlib

import numpy as np

from tl_jax.data import errors


def read_labels(source, label_key: str) -> np.ndarray:
  """All labels of a random-access source, read in chunks."""
  labels = []
  for start in range(0, len(source), 1024):
    records = source.__getitems__(list(range(start, min(len(source), start + 1024))))
    labels.extend(int(r[label_key]) for r in records)
  return np.asarray(labels, np.int64)


def few_shot_indices(labels: np.ndarray, k: int, seed: int,
                     class_names: Sequence[str], where: str = 'dataset') -> np.ndarray:
  """Sorted indices of k examples per class (a seeded permutation within each class)."""
  if k <= 0:
    raise errors.DataError(f'{where}: few_shot must be positive, got {k}')
  rng = np.random.default_rng(seed)
  chosen = []
  for c, name in enumerate(class_names):
    members = np.flatnonzero(labels == c)
    if len(members) < k:
      counts = np.bincount(labels, minlength=len(class_names))
      raise errors.DataError(
          f'{where}: few_shot={k} but class {name!r} has only {len(members)} examples '
          f'(smallest class: {counts.min()}); lower few_shot to at most {counts.min()}')
    chosen.append(rng.permutation(members)[:k])
  return np.sort(np.concatenate(chosen))


def example_ids(source, indices: np.ndarray) -> list[str]:
  """Stable names of the records at `indices`: their 'id' (bbc_news), 'path' (folders) or
  'index' (digits) feature, else the position in the split."""
  records = source.__getitems__([int(i) for i in indices]) if len(indices) else []
  ids = []
  for i, r in zip(indices, records):
    keys = [k for k in ('id', 'path', 'index') if isinstance(r, dict) and k in r]
    value = r[keys[0]] if keys else i
    ids.append(value.decode() if isinstance(value, bytes) else str(value))
  return ids


def digest(ids: Sequence[str]) -> str:
  """8 hex digits of sha1 over the sorted ids: two runs drew the same examples iff equal."""
  return hashlib.sha1('\n'.join(sorted(ids)).encode()).hexdigest()[:8]


@dataclasses.dataclass(frozen=True)
class Draw:
  """What a few-shot run trains on: printed at start and recorded in the run's config.json."""
  role: str  # 'target' | 'source'
  where: str  # 'name/split'
  per_class: int
  num_classes: int
  of: int  # examples in the split
  seed: int
  seed_from: str  # 'config.seed' | 'data.few_shot_seed'
  digest: str

  def line(self) -> str:
    return (f'few-shot {self.role} {self.where}: {self.per_class} per class x '
            f'{self.num_classes} = {self.per_class * self.num_classes} of {self.of} examples, '
            f'seed {self.seed} ({self.seed_from}), ids sha1 {self.digest}')

  def record(self) -> dict:
    return dataclasses.asdict(self)


class SubsetSource:
  """The records at `indices` of a random-access source, itself a random-access source."""

  def __init__(self, source, indices: np.ndarray):
    self._source = source
    self._indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i: int):
    return self._source[int(self._indices[i])]

  def __getitems__(self, indices: Sequence[int]):
    return self._source.__getitems__([int(self._indices[i]) for i in indices])

  def __repr__(self) -> str:
    return f'SubsetSource({self._source!r}, n={len(self)})'
