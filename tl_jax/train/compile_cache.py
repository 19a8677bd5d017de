"""jax's persistent compilation cache, switched on by `train.compilation_cache_dir`.

A compiled train step is a pure function of the program and the devices: a rerun, a resumed
run, every seed of a sweep and every run of a freezing schedule that reaches the same stage
shapes load it from disk instead of compiling again (seconds per stage on CPU, minutes for a
large model on TPU). jax keys the cache by the program, the jax/XLA versions and the devices,
so a stale entry is never used.
"""

from __future__ import annotations

import os
import pathlib

from absl import logging
import jax

ENV = 'JAX_COMPILATION_CACHE_DIR'


def default_dir() -> pathlib.Path:
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'tl_jax' / 'jax'


def resolve(setting: str) -> str:
  """The directory `train.compilation_cache_dir` asks for ('' = off); the environment wins."""
  if os.environ.get(ENV):
    return os.environ[ENV]
  if setting == 'auto':
    return str(default_dir())
  return str(pathlib.Path(setting).expanduser()) if setting else ''


def enable(setting: str) -> str:
  """Points jax at the cache directory (created on first write); returns it ('' = off). An
  unwritable directory only costs the compile: jax warns and compiles as without a cache."""
  directory = resolve(setting)
  if directory and jax.config.jax_compilation_cache_dir != directory:
    jax.config.update('jax_compilation_cache_dir', directory)
    logging.info('persistent compilation cache: %s', directory)
  return directory
