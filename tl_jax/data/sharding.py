"""Which rows of each global batch this host reads, and batch-size checks.

Every host walks the same seeded global order and takes its own contiguous rows of each global
batch: host p of P reads rows [p*B, (p+1)*B) with B = global / P. The hosts together read
exactly the global batch a single host would read, so results do not depend on the topology.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from tl_jax.data import errors


def process_layout(process_index: int | None, process_count: int | None,
                   num_devices: int | None) -> tuple[int, int, int]:
  """(process_index, process_count, global device count), from jax unless given."""
  if process_index is None or process_count is None or num_devices is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    num_devices = jax.device_count() if num_devices is None else num_devices
  if not 0 <= process_index < process_count:
    raise errors.DataError(f'process_index={process_index} outside 0..{process_count - 1}')
  return process_index, process_count, num_devices


def host_batch_size(global_batch: int, *, num_devices: int, process_count: int,
                    what: str = 'data.batch_size') -> int:
  """Rows per host; the global batch must split evenly over devices and hosts."""
  if global_batch <= 0:
    raise errors.BatchSizeError(f'{what}={global_batch} must be positive')
  if global_batch % num_devices:
    lower = max(num_devices, global_batch // num_devices * num_devices)
    raise errors.BatchSizeError(
        f'{what}={global_batch} does not divide by the {num_devices} devices; set {what} to a '
        f'multiple of {num_devices} (e.g. {lower} or {lower + num_devices})')
  if global_batch % process_count:
    raise errors.BatchSizeError(
        f'{what}={global_batch} does not divide by the {process_count} hosts; set {what} to a '
        f'multiple of {process_count * num_devices // np.gcd(process_count, num_devices)}')
  return global_batch // process_count


class HostRowsMapDataset(grain.MapDataset):
  """This host's rows of every global batch of the parent (see the module docstring)."""

  def __init__(self, parent: grain.MapDataset, host_batch: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    self._host_batch = host_batch
    self._offset = process_index * host_batch
    self._global_batch = host_batch * process_count
    parent_len = len(parent)
    if parent_len >= sys.maxsize:
      self._length = sys.maxsize
    else:
      self._length = parent_len // self._global_batch * host_batch

  def __len__(self) -> int:
    return self._length

  def _parent_index(self, index: int) -> int:
    batch, row = divmod(index, self._host_batch)
    return batch * self._global_batch + self._offset + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self._parent_index(index)]

  def _getitems(self, indices: Sequence[int]):
    return self._parent._getitems([self._parent_index(i) for i in indices])  # pylint: disable=protected-access

  def __str__(self) -> str:
    return f'HostRowsMapDataset(offset={self._offset}, global_batch={self._global_batch})'


class PaddedMapDataset(grain.MapDataset):
  """The parent's records with `mask`=True, then copies of record 0 with `mask`=False up to
  `length`: eval batches keep static shapes and every example counts exactly once."""

  def __init__(self, parent: grain.MapDataset, length: int):
    super().__init__(parent)
    self._length = length
    self._parent_len = len(parent)

  def __len__(self) -> int:
    return self._length

  def _mark(self, record: dict[str, Any], real: bool) -> dict[str, Any]:
    return {**record, 'mask': real}

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    real = index % self._length < self._parent_len
    return self._mark(self._parent[index % self._length if real else 0], real)

  def _getitems(self, indices: Sequence[int]):
    real = [i % self._length < self._parent_len for i in indices]
    records = self._parent._getitems(  # pylint: disable=protected-access
        [i % self._length if r else 0 for i, r in zip(indices, real)])
    return [self._mark(rec, r) for rec, r in zip(records, real)]

  def __str__(self) -> str:
    return f'PaddedMapDataset(length={self._length})'


def split_for_devices(batch: dict[str, np.ndarray], num_local_devices: int) -> dict[str, Any]:
  """[B, ...] -> [devices, B / devices, ...] on every leaf (the layout pmap takes)."""
  def split(x):
    if x.shape[0] % num_local_devices:
      raise errors.BatchSizeError(
          f'host batch of {x.shape[0]} rows does not split over {num_local_devices} devices')
    return x.reshape((num_local_devices, x.shape[0] // num_local_devices) + x.shape[1:])
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(split, batch)


def to_global_arrays(batch: dict[str, Any], mesh, axis: str = 'data') -> dict[str, Any]:
  """Host-local [B, ...] leaves -> global jax.Arrays sharded over `axis` of `mesh` (the layout
  jit / shard_map take); every host passes its own rows."""
  import jax  # pylint: disable=g-import-not-at-top
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
