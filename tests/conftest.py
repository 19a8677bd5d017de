"""Test-wide environment: 8 simulated CPU devices, no network, no TensorFlow/torch surprises."""

import atexit
import os
import shutil
import tempfile

# Must happen before jax initialises its backend anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# In-process runs (train.compilation_cache_dir='auto') cache compiled steps here, not in the
# user's ~/.cache: one throwaway cache per test process.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tl_jax_test_jit_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
