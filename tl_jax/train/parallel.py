"""Data parallelism over one 'data' axis: pmap or jit(shard_map) launchers, batch layout,
multi-host start-up.

The per-device step is written once (step.py, using lax.pmean/psum over 'data'); a Launcher
compiles it either way and owns the device layout of states and batches:

  pmap       state replicated with a leading device axis; host batch (B, ...) -> (n_local, B/n, ...)
  shard_map  state replicated on a Mesh (one logical copy); host batch -> global jax.Array
             sharded over 'data' (jax.make_array_from_process_local_data)

The Mesh uses AxisType.Auto: jax.make_mesh defaults to Explicit axes in jax 0.10, and Explicit
sharding breaks the embedding gather.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import logging
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from tl_jax import errors
from tl_jax.errors import BatchSizeError  # one class for the data and the devices

AXIS = 'data'
MODES = ('pmap', 'shard_map')
DISTRIBUTED = ('auto', 'on', 'off')


class ParallelError(errors.TlJaxError, ValueError):
  """A parallel setting or a batch layout that cannot work on these devices."""


# -------------------------------------------------------------------------------------------
# Multi-host start-up.
# -------------------------------------------------------------------------------------------

def _cluster_detected(env: Any) -> bool:
  """True when the environment describes a multi-process job."""
  def more_than_one(key):
    try:
      return int(env.get(key, '1')) > 1
    except ValueError:
      return False
  return (bool(env.get('JAX_COORDINATOR_ADDRESS'))
          or more_than_one('JAX_NUM_PROCESSES')
          or more_than_one('SLURM_NTASKS')
          or more_than_one('OMPI_COMM_WORLD_SIZE')
          or ',' in env.get('TPU_WORKER_HOSTNAMES', '')
          or bool(env.get('MEGASCALE_COORDINATOR_ADDRESS')))


def maybe_initialize_distributed(mode: str = 'auto', environ: Any = None) -> bool:
  """Calls jax.distributed.initialize() for 'on', or for 'auto' when the environment names a
  multi-process job (JAX_COORDINATOR_ADDRESS, SLURM, Open MPI, a multi-host TPU). Call it before
  anything else touches jax devices. Returns whether jax.distributed is initialized."""
  if mode not in DISTRIBUTED:
    raise ParallelError(f'unknown parallel.distributed={mode!r}; valid: {", ".join(DISTRIBUTED)}')
  env = os.environ if environ is None else environ
  if mode == 'off' or (mode == 'auto' and not _cluster_detected(env)):
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if env.get('JAX_COORDINATOR_ADDRESS'):
    kwargs['coordinator_address'] = env['JAX_COORDINATOR_ADDRESS']
  for key, arg in (('JAX_NUM_PROCESSES', 'num_processes'), ('JAX_PROCESS_ID', 'process_id')):
    if env.get(key):
      kwargs[arg] = int(env[key])
  jax.distributed.initialize(**kwargs)  # Without kwargs jax detects SLURM/MPI/TPU clusters.
  logging.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


# -------------------------------------------------------------------------------------------
# Launchers.
# -------------------------------------------------------------------------------------------

def data_mesh(devices: Sequence[Any] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


class Launcher:
  """Compiles per-device functions over the 'data' axis and lays out their inputs."""
  mode: str

  def __init__(self, devices: Sequence[Any] | None = None):
    self._explicit_devices = devices is not None
    self.devices = list(jax.devices() if devices is None else devices)
    if not self.devices:
      raise ParallelError('no devices to run on')
    self.mesh = data_mesh(self.devices)
    self.local_devices = [d for d in self.devices if d.process_index == jax.process_index()]

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def num_local_devices(self) -> int:
    return len(self.local_devices)

  def check_batch(self, batch: Any, micro_steps: int = 1) -> int:
    """Rows of this host's batch; errors unless they split over local devices (× micro steps)."""
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
    if len(sizes) != 1:
      raise BatchSizeError(f'batch arrays disagree on the batch size: {sorted(sizes)}')
    rows = sizes.pop()
    n = self.num_local_devices
    if rows % n:
      raise BatchSizeError(
          f'batch of {rows} rows does not divide over the {n} local devices; set the batch size '
          f'to a multiple of {n} (e.g. {max(n, rows // n * n)})')
    if (rows // n) % micro_steps:
      raise BatchSizeError(
          f'{rows // n} rows per device do not split into optimizer.accumulate_steps='
          f'{micro_steps} micro-batches; make the per-device batch a multiple of {micro_steps}')
    return rows

  # Implemented by each launcher.
  def put_replicated(self, tree: Any) -> Any:
    raise NotImplementedError

  def get_replicated(self, tree: Any) -> Any:
    raise NotImplementedError

  def put_batch(self, batch: Any, micro_steps: int = 1) -> Any:
    raise NotImplementedError

  def compile(self, fn: Callable, *, sharded_args: Sequence[int], num_args: int,
              donate_argnums: Sequence[int] = ()) -> Callable:
    """fn(*args) run per device; args at `sharded_args` are batches, the rest replicated;
    outputs replicated (fn must pmean/psum what it returns)."""
    raise NotImplementedError


class PmapLauncher(Launcher):
  mode = 'pmap'

  def _stacked_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(AXIS))

  def put_replicated(self, tree: Any) -> Any:
    n = self.num_local_devices
    sharding = self._stacked_sharding()
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.broadcast_to(np.asarray(x), (n,) + np.shape(x))), tree)

  def get_replicated(self, tree: Any) -> Any:
    return jax.tree.map(lambda x: x.addressable_data(0)[0], tree)

  def put_batch(self, batch: Any, micro_steps: int = 1) -> Any:
    rows = self.check_batch(batch, micro_steps)
    n = self.num_local_devices
    sharding = self._stacked_sharding()
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x).reshape((n, rows // n) + np.shape(x)[1:])), batch)

  def compile(self, fn, *, sharded_args, num_args, donate_argnums=()):
    del sharded_args, num_args  # every pmap argument carries a leading device axis
    return jax.pmap(fn, axis_name=AXIS, donate_argnums=tuple(donate_argnums),
                    devices=self.devices if self._explicit_devices else None)


class ShardMapLauncher(Launcher):
  mode = 'shard_map'

  def put_replicated(self, tree: Any) -> Any:
    sharding = NamedSharding(self.mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        tree)

  def get_replicated(self, tree: Any) -> Any:
    return tree  # already one logical copy

  def put_batch(self, batch: Any, micro_steps: int = 1) -> Any:
    self.check_batch(batch, micro_steps)
    sharding = NamedSharding(self.mesh, P(AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        batch)

  def compile(self, fn, *, sharded_args, num_args, donate_argnums=()):
    in_specs = tuple(P(AXIS) if i in sharded_args else P() for i in range(num_args))
    mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=P())
    return jax.jit(mapped, donate_argnums=tuple(donate_argnums))


def make_launcher(mode: str, devices: Sequence[Any] | None = None) -> Launcher:
  """parallel.mode -> Launcher over `devices` (default: all devices of all hosts)."""
  launchers = {'pmap': PmapLauncher, 'shard_map': ShardMapLauncher}
  if mode not in launchers:
    raise ParallelError(f'unknown parallel.mode={mode!r}; valid: {", ".join(MODES)}')
  return launchers[mode](devices)
