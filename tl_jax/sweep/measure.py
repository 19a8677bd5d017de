"""One run of a sweep: train it (resuming what is there), measure it, write its result marker.

The measurements are what a freezing-schedule comparison needs beside accuracy: wall time,
median step time (the compile left out), examples/sec, peak RSS, trainable parameters and
optimizer-state bytes (from shapes, so nothing extra is trained).
"""

from __future__ import annotations

import math
import os
import pathlib
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections as mlc

from tl_jax import machine_load
from tl_jax.sweep import grid
from tl_jax.sweep import results as results_lib


def step_times(train_records: Sequence[Mapping[str, Any]], examples_per_step: int) -> list[float]:
  """Mean seconds per step of each logged interval (examples/sec is over the interval since the
  previous record); the first record (it holds the compile) and records without a throughput
  are left out."""
  return [examples_per_step / r['examples_per_sec'] for r in train_records[1:]
          if r.get('examples_per_sec')]


def state_costs(config: mlc.ConfigDict) -> dict[str, int]:
  """Parameters and optimizer-state bytes of a config, from shapes (nothing is trained): the
  largest over the stages of a freezing schedule."""
  # Lazy: declaring, expanding and tabulating a sweep needs no jax.
  import jax  # pylint: disable=g-import-not-at-top
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.train import freezing  # pylint: disable=g-import-not-at-top
  pieces = pieces_lib.build(config)
  core = step_lib.TrainCore(config, pieces.module, pieces.params,
                           pretrained_params=pieces.params)  # as the loop builds it (L2-SP, ...)
  params = core.with_objective_params(pieces.params)  # discriminators and heads count too
  sizes = {n: int(math.prod(x.shape)) for n, x in freezing.flatten(params).items()}
  trainable, opt_bytes = 0, 0
  for stage in range(core.schedule.num_stages):
    trainable = max(trainable, sum(sizes[n] for n in core.schedule.trainable(stage)))
    state = jax.eval_shape(core.tx(stage).init, params)
    opt_bytes = max(opt_bytes, sum(int(math.prod(x.shape)) * x.dtype.itemsize
                                   for x in jax.tree.leaves(state)))
  return {'total_params': sum(sizes.values()), 'trainable_params': trainable,
          'opt_state_bytes': opt_bytes, 'freezing_stages': core.schedule.num_stages}


def execute(run: grid.Run, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains one run in `workdir` (resuming what is there) and writes its result marker."""
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  resumed = (workdir / 'checkpoints').is_dir()
  start = time.monotonic()
  final = loop.train(run.config, str(workdir))
  wall = time.monotonic() - start
  peak_rss = machine_load.peak_rss_mb() * 2**20
  data = run.config.data
  per_step = data.batch_size * (2 if data.source.name else 1)
  train_records, eval_records = results_lib.read_history(workdir)
  times = step_times(train_records, per_step)
  median = statistics.median(times) if times else float('nan')
  result = {
      'name': run.name, 'group': run.group, 'index': run.index,
      'overrides': results_lib.jsonable(run.overrides), 'seed': run.config.seed,
      'config': results_lib.jsonable(run.config.to_dict()),  # what a rerun checks it against
      'final': final, 'num_steps': run.config.train.num_steps,
      'wall_s': wall, 'resumed': resumed,
      'median_step_s': median, 'examples_per_sec': per_step / median if times else float('nan'),
      'peak_rss_mb': peak_rss / 2**20,
      **state_costs(run.config),
      'train_curve': [[r['step'], r.get('loss')] for r in train_records],
      'eval_curve': [{k: v for k, v in r.items() if k == 'step' or k.endswith('accuracy')}
                     for r in eval_records],
      'finished': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }
  results_lib.write_result(workdir, result)
  return result
