"""λ(step) schedules that weight the source loss: pure jnp functions of the step, used in jit.

  constant  λ = value
  linear    λ = value · min(step / ramp_steps, 1)
  dann      λ = value · (2 / (1 + exp(-γ p)) - 1),  p = min(step / total_steps, 1)
            (Ganin & Lempitsky 2015, the gradient-reversal weight schedule)
  step      λ = values[i], i = number of boundaries in `steps` that are <= step
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from tl_jax import errors

KINDS = ('constant', 'linear', 'dann', 'step')
LambdaFn = Callable[[Any], Any]


class LambdaConfigError(errors.TlJaxError, ValueError):
  """A λ schedule config that cannot be built."""


def constant(value: float) -> LambdaFn:
  return lambda step: jnp.full((), value, jnp.float32)


def linear(value: float, ramp_steps: int) -> LambdaFn:
  if ramp_steps <= 0:
    raise LambdaConfigError(f'linear λ needs ramp_steps > 0, got {ramp_steps}')
  def fn(step):
    p = jnp.minimum(jnp.asarray(step, jnp.float32) / ramp_steps, 1.0)
    return jnp.float32(value) * p
  return fn


def dann(value: float, gamma: float, total_steps: int) -> LambdaFn:
  if total_steps <= 0:
    raise LambdaConfigError(f'dann λ needs total_steps > 0, got {total_steps}')
  def fn(step):
    p = jnp.minimum(jnp.asarray(step, jnp.float32) / total_steps, 1.0)
    return jnp.float32(value) * (2.0 / (1.0 + jnp.exp(-gamma * p)) - 1.0)
  return fn


def piecewise(boundaries: Sequence[int], values: Sequence[float]) -> LambdaFn:
  boundaries, values = list(boundaries), list(values)
  if len(values) != len(boundaries) + 1:
    raise LambdaConfigError(f'step λ needs len(values) == len(steps) + 1 (a value before the '
                            f'first boundary), got steps={boundaries} values={values}')
  if any(b <= a for a, b in zip(boundaries, boundaries[1:])):
    raise LambdaConfigError(f'step λ boundaries must increase strictly, got {boundaries}')
  b = jnp.asarray(boundaries, jnp.int32)
  v = jnp.asarray(values, jnp.float32)
  return lambda step: v[jnp.searchsorted(b, jnp.asarray(step, jnp.int32), side='right')]


def from_config(lam: Any, total_steps: int) -> LambdaFn:
  """`config.transfer.lam` -> λ(step). `ramp_steps` 0 means the whole run."""
  kind = lam.kind
  if kind == 'constant':
    return constant(lam.value)
  if kind == 'linear':
    return linear(lam.value, lam.get('ramp_steps', 0) or total_steps)
  if kind == 'dann':
    return dann(lam.value, lam.gamma, total_steps)
  if kind == 'step':
    return piecewise(lam['steps'], lam['values'])  # lam.values is ConfigDict.values()
  raise LambdaConfigError(f'unknown λ schedule {kind!r} (transfer.lam.kind); valid: '
                          f'{", ".join(KINDS)}')
