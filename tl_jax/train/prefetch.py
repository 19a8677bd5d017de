"""Batches put on the devices ahead of the step that consumes them.

The loop dispatches step s and asks for the next batch while s runs: by then the batches up to
s + depth are already on the devices (their host->device copies overlapped earlier steps), so
the host never stalls a step on a transfer. Each batch carries the data position after it, so a
checkpoint records where the consumed batch, not the prefetched ones, left the data stream.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

from tl_jax.train import step as step_lib


def device_batches(core: step_lib.TrainCore, host_batches: Any, *, depth: int,
                   prepare: Callable[[Any], Any] | None = None
                   ) -> Iterator[step_lib.DeviceBatch]:
  """DeviceBatches of `host_batches` (an iterator with get_state(), e.g. grain's), keeping
  `depth` of them on the devices ahead of the one yielded (0 = put on demand). `prepare`
  turns a host batch into what the step takes (the frozen-prefix cache attaches here)."""
  queue: collections.deque[step_lib.DeviceBatch] = collections.deque()

  def put_next() -> None:
    batch = next(host_batches)
    position = host_batches.get_state()  # after this batch: where a resume starts
    queue.append(core.put(prepare(batch) if prepare else batch, data_state=position))

  for _ in range(depth):
    put_next()
  while True:
    put_next()
    yield queue.popleft()
