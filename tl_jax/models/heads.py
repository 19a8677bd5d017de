"""Classification heads on the pooled output: one head, several named heads, or none.

Heads sit at the top of the param tree beside embeddings/encoder/pooler: one head is `head/{kernel,
bias}`, named heads are `heads/<name>/{kernel,bias}`. Logits come out in fp32 for the losses.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

HeadSpec = tuple[tuple[str, int], ...]


def normalize_heads(heads) -> HeadSpec:
  """{'topic': 5} or [('topic', 5)] -> (('topic', 5),), the hashable form a module field needs."""
  if not heads:
    return ()
  items = heads.items() if isinstance(heads, dict) else heads
  spec = tuple((str(name), int(n)) for name, n in items)
  for name, n in spec:
    if n <= 0 or not name.isidentifier():
      raise ValueError(f'Bad head {name!r}: {n} classes; names must be identifiers, counts > 0.')
  return spec


class NamedHeads(nn.Module):
  """One dense layer per named task; params `<name>/{kernel,bias}`."""
  heads: HeadSpec
  kernel_init: Callable
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, pooled: jax.Array) -> dict[str, jax.Array]:
    return {name: nn.Dense(n, kernel_init=self.kernel_init, dtype=self.dtype,
                           param_dtype=self.param_dtype, name=name)(pooled).astype(jnp.float32)
            for name, n in self.heads}


def classifier_logits(pooled: jax.Array, *, num_classes: int, heads: HeadSpec,
                      kernel_init: Callable, dtype, param_dtype):
  """Called inside the backbone's compact __call__, so the heads become its direct children."""
  if num_classes and heads:
    raise ValueError('Give either num_classes (one head) or heads (named heads), not both.')
  if num_classes:
    return nn.Dense(num_classes, kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype,
                    name='head')(pooled).astype(jnp.float32)
  if heads:
    return NamedHeads(heads, kernel_init, dtype, param_dtype, name='heads')(pooled)
  return None
