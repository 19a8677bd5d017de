"""LoRA (Hu et al. 2021): a low-rank update of the attention projections, W x + (α/r)·B A x.

With `lora_rank=r` in the model config, every projection named in `lora_targets` (query, key,
value) gets a sibling module `<name>_lora` holding `lora_A` [in, r] and `lora_B` [r, out]. B
starts at zero, so a freshly adapted model computes exactly what the loaded one did; A starts
as PEFT's (kaiming-uniform, a=√5). The freezing preset 'lora' trains only these and the head(s),
so the optimizer keeps state for a few thousand numbers instead of the whole backbone.

`merge(params, config)` folds the update into the kernels (W + (α/r)·A B) and drops the
adapters: exports are plain HF checkpoints that any BERT/ViT loader reads.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp

TARGETS = ('query', 'key', 'value')
SUFFIX = '_lora'
# PEFT's init of A: kaiming_uniform(a=√5) = U(±1/√fan_in), i.e. variance_scaling(1/3, uniform).
init_a = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def validate(cfg) -> None:
  if cfg.lora_rank < 0:
    raise ValueError(f'lora_rank={cfg.lora_rank} must be >= 0 (0 = no adapters).')
  if cfg.lora_rank and not cfg.lora_targets:
    raise ValueError(f'lora_rank={cfg.lora_rank} needs lora_targets, a subset of {TARGETS}.')
  unknown = sorted(set(cfg.lora_targets) - set(TARGETS))
  if unknown:
    raise ValueError(f'lora_targets {unknown} unknown; choose from {TARGETS}.')


def scale(cfg) -> float:
  return cfg.lora_alpha / cfg.lora_rank


class LoRA(nn.Module):
  """The update (α/r)·(x A) B of one projection."""
  rank: int
  alpha: float
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    a = self.param('lora_A', init_a, (x.shape[-1], self.rank), self.param_dtype)
    b = self.param('lora_B', nn.initializers.zeros, (self.rank, self.features),
                   self.param_dtype)
    h = jnp.dot(x, a.astype(self.dtype))
    return jnp.dot(h, b.astype(self.dtype)) * jnp.asarray(self.alpha / self.rank, self.dtype)


def is_adapter(key: tuple[str, ...]) -> bool:
  """Whether a flat param key (tuple of names) belongs to an adapter."""
  return len(key) >= 2 and key[-2].endswith(SUFFIX)


def initial_value(key: tuple[str, ...], rng: jax.Array, shape, dtype) -> jax.Array:
  """What the module's init gives a (fresh) adapter leaf: A random, B zero."""
  if key[-1] == 'lora_A':
    return init_a(rng, shape, dtype)
  return jnp.zeros(shape, dtype)


def merge(params: Any, cfg) -> Any:
  """Params with every adapter folded into its kernel and removed (unchanged without LoRA)."""
  flat = flax.traverse_util.flatten_dict(params)
  if not any(is_adapter(k) for k in flat):
    return params
  merged = {k: v for k, v in flat.items() if not is_adapter(k)}
  for key in flat:
    if key[-1] != 'lora_A' or not is_adapter(key):
      continue
    kernel_key = key[:-2] + (key[-2][:-len(SUFFIX)], 'kernel')
    a, b = flat[key], flat[key[:-1] + ('lora_B',)]
    kernel = merged[kernel_key]
    update = jnp.dot(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)) * scale(cfg)
    merged[kernel_key] = (jnp.asarray(kernel, jnp.float32) + update).astype(kernel.dtype)
  return flax.traverse_util.unflatten_dict(merged)
