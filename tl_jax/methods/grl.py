"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, −coeff·g backward.

Put between a feature extractor and a domain discriminator, one minimisation trains the
discriminator to tell the domains apart and the features to fool it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def gradient_reversal(x: jax.Array, coeff: jax.Array) -> jax.Array:
  """x in the forward pass; the cotangent −coeff·g in the backward (none for coeff)."""
  del coeff
  return x


def _fwd(x, coeff):
  return x, coeff


def _bwd(coeff, g):
  reversed_g = jax.tree.map(lambda t: (-coeff * t).astype(t.dtype), g)
  return reversed_g, jnp.zeros_like(coeff)


gradient_reversal.defvjp(_fwd, _bwd)
