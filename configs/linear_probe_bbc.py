"""Linear probe on cached, frozen MiniLM features: BBC News, full train split -> test split.

Run:   python experiments/linear_probe.py --config=configs/linear_probe_bbc.py
       (features are computed once per backbone/split and cached under
       config.transfer.linear_probe.cache_dir; a rerun only trains the probe)
       python experiments/bench_linear_probe.py --config=configs/linear_probe_bbc.py
Expected: MEASURED (see the docstring of experiments/linear_probe.py).
"""

from tl_jax.config import base_config
from tl_jax.transfer import linear_probe


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.model.pooling = 'mean'  # sentence-transformers' pooling for all-MiniLM-L6-v2
  config.data.target.name = 'bbc_news'
  config.data.max_length = 128
  config.data.eval_batch_size = 32
  config.transfer.linear_probe = linear_probe.default_config()
  return config
