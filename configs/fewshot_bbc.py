"""Few-shot BBC News on frozen MiniLM features: 5-way 5-shot episodes (15 queries per class)
drawn from the 5 topics, nearest-prototype (cosine) and k-shot linear probe classifiers.

Run:   python experiments/fewshot.py --config=configs/fewshot_bbc.py
       (--config.transfer.fewshot.k_shot=1 for 1-shot; features are shared with
       configs/linear_probe_bbc.py through the same cache when max_length matches)
Expected: MEASURED (see experiments/fewshot.py).
"""

from tl_jax.config import base_config
from tl_jax.transfer import fewshot


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.model.pooling = 'mean'
  config.data.target.name = 'bbc_news'
  config.data.max_length = 128
  config.data.eval_batch_size = 32
  config.transfer.fewshot = fewshot.default_config()
  return config
