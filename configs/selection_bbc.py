"""Model selection before training: LogME, H-score, LEEP and NCE (GMM source head) rank MiniLM
pretrained vs random init, and layers of the pretrained one, on 300 BBC News articles.

Run:   python experiments/select_models.py --config=configs/selection_bbc.py
Measured (first 300 train articles, max_length 64; oracle = probe on those 300, test split):
  candidate      LogME    H-score(LW)  LEEP     NCE      oracle test acc
  pretrained    -0.0007   3.4391      -0.3930  -0.3971   0.9502
  random        -0.4096   2.7620      -1.4017  -1.4082   0.6154
  pretrained:2   0.0050   3.5698      -0.4299  -0.4293   0.9412
  pretrained:4   0.0698   3.6099      -0.5837  -0.5987   0.9412
Every score ranks pretrained above random; LEEP/NCE also order the layers like the oracle,
LogME/H-score prefer the middle layers (the oracle gap there: 2 of 221 articles).
"""

from tl_jax.config import base_config
from tl_jax.analysis import selection


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
