"""tl_jax: transfer learning research in JAX."""

__version__ = "0.1.0"
