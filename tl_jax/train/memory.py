"""How much memory a step will need, told before anything compiles.

A batch that cannot fit should be one line naming the key to lower, not minutes of compiling
followed by an out-of-memory kill (or, on CPU, swapping). The estimate counts what dominates a
transformer step: the parameters (+ gradients and optimizer state when training) and the
activations that the backward pass keeps, layer by layer; eval keeps one layer's at a time.
It is a rough figure (tests/test_memory.py holds it within 35 % of the compiled program's own
memory analysis), good for refusing what cannot fit, not for packing a device to the byte.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from tl_jax import errors


class DoesNotFitError(errors.TlJaxError, ValueError):
  """A batch that does not fit into device memory; the message names the key to lower."""


@dataclasses.dataclass(frozen=True)
class Estimate:
  params: int  # bytes of the weights on one device
  state: int  # gradients + optimizer state (0 for eval)
  activations: int  # kept for the backward pass (train) or live within one layer (eval)

  @property
  def total(self) -> int:
    return self.params + self.state + self.activations


def tokens_per_example(module_config, kind: str, max_length: int, image_size: int | None) -> int:
  if kind == 'text':
    return max_length
  side = (image_size or module_config.image_size) // module_config.patch_size
  return side * side + int(getattr(module_config, 'class_token', True))


def _layer_activations(cfg, rows: int, tokens: int, train: bool) -> int:
  """Elements one encoder layer keeps. Training keeps q, k, v, context, residuals, norms, the
  MLP's inner activations, dropout masks, and the attention scores, probabilities and their
  mask for the backward pass; eval needs only the largest of these at once. The factors were
  fitted to XLA's memory analysis of our BERT (tests/test_memory.py)."""
  hidden, inner, heads = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads
  if train:
    return rows * tokens * (12 * hidden + 3 * inner) + 4 * rows * heads * tokens * tokens
  return rows * tokens * (4 * hidden + inner) + rows * heads * tokens * tokens


def estimate(module_config, *, params: int, trainable: int, rows: int, tokens: int,
             train: bool, optimizer_slots: int = 2) -> Estimate:
  """Bytes per device for a step over `rows` examples of `tokens` tokens each.

  params / trainable: parameter counts (trainable ones carry a gradient and `optimizer_slots`
  moments, two for Adam); activations are in the compute dtype, states in float32.
  """
  act_bytes = np.dtype(module_config.dtype).itemsize
  param_bytes = np.dtype(module_config.param_dtype).itemsize
  layer = _layer_activations(module_config, rows, tokens, train)
  activations = layer * module_config.num_layers if train else layer
  state = trainable * (param_bytes + 4 * optimizer_slots) if train else 0
  return Estimate(params=params * param_bytes, state=state, activations=activations * act_bytes)


def available_bytes(device: jax.Device | None = None) -> int | None:
  """Free memory of a device: its allocator's limit on GPU/TPU; on CPU the host's available
  RAM (all simulated CPU devices share it). None when it cannot be told."""
  device = device or jax.local_devices()[0]
  if device.platform == 'cpu':
    return host_available_bytes()
  stats = device.memory_stats() or {}
  if 'bytes_limit' not in stats:
    return None
  return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))


def host_available_bytes() -> int | None:
  """The host's available RAM; None when it cannot be told."""
  try:
    import psutil  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return int(psutil.virtual_memory().available)


def gib(n: int) -> str:
  return f'{n / 2**30:.1f} GiB'


def check_fits(module_config, *, kind: str, params: int, trainable: int, max_length: int,
               image_size: int | None, train_rows: int, eval_rows: int, devices_sharing: int,
               available: int | None = None) -> None:
  """Refuses (DoesNotFitError) a train or eval batch whose step cannot fit. `*_rows` are the
  rows one device processes at once; `devices_sharing` devices draw on `available` bytes
  (simulated CPU devices all use the host's RAM)."""
  available = available_bytes() if available is None else available
  if available is None:
    return
  tokens = tokens_per_example(module_config, kind, max_length, image_size)
  steps = (('train step', train_rows, True, 'data.batch_size',
            'or raise optimizer.accumulate_steps, or freeze more layers'),
           ('eval step', eval_rows, False, 'data.eval_batch_size',
            'eval results do not depend on it'))
  for what, rows, train, key, fix in steps:
    need = estimate(module_config, params=params, trainable=trainable if train else 0,
                    rows=rows, tokens=tokens, train=train)
    total = need.total * devices_sharing
    if total > 0.9 * available:
      raise DoesNotFitError(
          f'the {what} needs about {gib(total)} ({rows} rows x {tokens} tokens per device on '
          f'{devices_sharing} device(s): activations {gib(need.activations * devices_sharing)}'
          f', weights and optimizer {gib((need.params + need.state) * devices_sharing)}) and '
          f'{gib(available)} is free: lower --config.{key} ({fix})')
