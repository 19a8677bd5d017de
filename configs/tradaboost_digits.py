"""TrAdaBoost, few labelled target examples: digits (labelled source) -> digits/rotated with
5 labelled images per class, on frozen features of the ViT pre-trained on digits/original.

Run:   python experiments/tradaboost.py --config=configs/tradaboost_digits.py [--out=runs/tradaboost]
       (pre-trains the ViT with experiments/freezing_benchmark.py's code when
       runs/freezing_benchmark/pretrain/vit_digits/export is missing; features are cached)
Measured: see below (filled in from the run).
"""

from tl_jax.config import base_config
from tl_jax.transfer import tradaboost

PRETRAINED_VIT = 'runs/freezing_benchmark/pretrain/vit_digits/export'


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = PRETRAINED_VIT
  config.model.init = 'pretrained'
  config.model.pooling = 'cls'  # as it was pre-trained (configs/sweeps/vit_digits_pretrain.py)
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.source.name = 'digits'
  config.data.target.name = 'digits/rotated'
  config.data.eval_batch_size = 256
  config.transfer.tradaboost = tradaboost.default_config()
  return config
