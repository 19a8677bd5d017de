"""Linear probe on cached, frozen MiniLM features: BBC News, full train split -> test split.

Run:   python experiments/linear_probe.py --config=configs/linear_probe_bbc.py
       (features are computed once per backbone/split and cached under
       config.transfer.linear_probe.cache_dir; a rerun only trains the probe)
       python experiments/bench_linear_probe.py --config=configs/linear_probe_bbc.py
Measured on the de-duplicated splits (2 CPU cores shared, load ~7-8; probe: full batch, Adam
0.05, 300 steps, l2 1e-3):
  backbone     train N  test N  train acc  test acc  features s  probe s
  pretrained   1699     214     1.0000     0.9673    202.6       2.13
  random init  1699     214     1.0000     0.8271    222.9       1.08
bench (256 examples x 128 tokens, batch 32, median of 5; not rerun, it reads no split sizes):
probe epoch on the cache 1.09 ms, recomputing the backbone 21516 ms: ~19,700x (the load
inflates the backbone side).
"""

from tl_jax.config import base_config
from tl_jax.analysis import linear_probe


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
