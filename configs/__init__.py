"""The example configs, importable as `tl_jax.configs` (shared recipes: `tl_jax.configs.common`)."""
