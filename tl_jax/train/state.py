"""TrainState: everything a step changes and a checkpoint restores, as one pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """params: the full tree (frozen leaves included); opt_state: for the current freezing stage;
  step: int32; rng: a raw uint32[2] key (orbax-friendly), folded with the step and the device
  index inside the step, never split on the host; stage: int32 freezing-stage index."""
  params: Any
  opt_state: Any
  step: jax.Array
  rng: jax.Array
  stage: jax.Array

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation, rng: Any, *, stage: int = 0,
             step: int = 0) -> 'TrainState':
    if isinstance(rng, int):
      rng = jax.random.PRNGKey(rng)
    elif isinstance(rng, jax.Array) and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)
    return cls(params=params, opt_state=tx.init(params), step=jnp.asarray(step, jnp.int32),
               rng=jnp.asarray(rng, jnp.uint32), stage=jnp.asarray(stage, jnp.int32))
