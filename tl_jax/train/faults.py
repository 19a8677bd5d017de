"""Fault injection for the reliability tests: crashes, pre-emptions and NaNs at exact places.

The loop calls `at(point, step, ...)` wherever a fault matters; it does nothing unless the
environment of the process arms one fault (tests/test_reliability.py sets it on the CLI):

  TL_JAX_TEST_KILL_AT='<fault>:<step>', fault one of
    step  SIGKILL right after the step is dispatched (nothing of it saved)
    save  SIGKILL once a checkpoint write of the step has started and is not finished
    eval  SIGKILL between two eval batches of the step's eval
    term  SIGTERM right after the step is dispatched (a pre-emption)
    nan   the step runs on NaN parameters, as if the loss had diverged there

Kept out of the loop and the config so a user never sees it; read on every call (not cached)
so a test may arm it in-process with monkeypatch.setenv.
"""

from __future__ import annotations

import os
import pathlib
import signal
import time
from typing import Any

import jax
import numpy as np

ENV = 'TL_JAX_TEST_KILL_AT'
FAULTS = ('step', 'save', 'eval', 'term', 'nan')
# Where the loop calls `at`: before a step runs, after it is dispatched, after its checkpoint
# write starts, after each eval batch.
POINTS = ('before_step', 'step', 'save', 'eval')


def armed() -> tuple[str, int] | None:
  """(fault, step) from the environment, or None; a malformed value is an error (a typo in a
  test must not pass silently as 'no fault')."""
  spec = os.environ.get(ENV)
  if not spec:
    return None
  fault, _, step = spec.partition(':')
  if fault not in FAULTS or not step.isdigit():
    raise ValueError(f'{ENV}={spec!r}: want <fault>:<step>, fault one of {", ".join(FAULTS)}')
  return fault, int(step)


def at(point: str, step: int | None, *, state: Any = None,
       checkpoints: pathlib.Path | None = None) -> Any:
  """The loop's one hook: fires the armed fault if it belongs to `point` of `step`; returns
  `state` (with NaN params for the 'nan' fault at 'before_step'), unchanged otherwise."""
  if not os.environ.get(ENV) or step is None:  # the production path: one dict lookup
    return state
  if point not in POINTS:
    raise ValueError(f'unknown fault point {point!r}; one of {", ".join(POINTS)}')
  fault = armed()
  if fault is None or fault[1] != step:
    return state
  what = fault[0]
  if point == 'before_step' and what == 'nan':
    return state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params))
  if point == 'step' and what == 'term':
    os.kill(os.getpid(), signal.SIGTERM)
  elif point == what and point in ('step', 'save', 'eval'):
    if checkpoints is not None:
      _wait_for_write(checkpoints, step)
    os.kill(os.getpid(), signal.SIGKILL)
  return state


def _wait_for_write(checkpoints: pathlib.Path, step: int) -> None:
  """Dies mid-write: waits (at most 10 s) until orbax's temporary step directory exists."""
  deadline = time.monotonic() + 10
  while not any(checkpoints.glob(f'{step}.orbax-checkpoint-tmp*')):
    if time.monotonic() > deadline or (checkpoints / str(step)).exists():
      break
    time.sleep(0.001)
