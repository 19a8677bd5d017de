"""Model selection before training: LogME, H-score, LEEP and NCE (GMM source head) rank MiniLM
pretrained vs random init, and layers of the pretrained one, on 300 BBC News articles.

Run:   python experiments/select_models.py --config=configs/selection_bbc.py
Measured on the de-duplicated splits (first 300 train articles, max_length 64; oracle = probe
on those 300, test split of 214):
  candidate      LogME    H-score(LW)  LEEP     NCE      oracle test acc
  pretrained     0.0266   3.4584      -0.2420  -0.2545   0.9533
  random        -0.4070   2.7689      -1.4849  -1.4843   0.6402
  pretrained:2   0.0084   3.5608      -0.4635  -0.4949   0.9439
  pretrained:4   0.0696   3.6134      -0.4870  -0.5016   0.9486
Every score ranks pretrained above random; LEEP/NCE pick the oracle's best (the last layer) but
order layers 2/4 the other way round, LogME/H-score prefer layer 4 (the oracle gaps between the
three pretrained candidates: 1 article of 214 each).
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
