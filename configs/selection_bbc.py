"""Model selection before training: LogME, H-score, LEEP and NCE (GMM source head) rank MiniLM
pretrained vs random init, and layers of the pretrained one, on 300 BBC News articles.

Run:   python experiments/select_models.py --config=configs/selection_bbc.py
Expected: MEASURED (see experiments/select_models.py): every score puts pretrained above random.
"""

from tl_jax.config import base_config
from tl_jax.transfer import selection


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.model.pooling = 'mean'
  config.data.target.name = 'bbc_news'
  config.data.max_length = 64
  config.data.eval_batch_size = 32
  config.transfer.selection = selection.default_config()
  return config
