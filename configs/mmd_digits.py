"""DAN: source cross-entropy plus multi-kernel MMD² between source and target pooled features
(tl_jax/transfer/mmd.py).

Run:   python experiments/da_table.py --methods=mmd   (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/mmd_digits.py --workdir=runs/mmd_digits
       (after the table script has written runs/da_table/vit_random once)
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.transfer import mmd


VIT_DIR = 'runs/da_table/vit_random'  # written by experiments/da_table.py (HF layout)


def digits_uda(config):
  """The shared recipe of the DA table: digits (labelled source) -> digits/rotated (unlabelled
  target), a small ViT from random init (16x16 input, patch 4, width 64, 2 layers)."""
  config.model.name = VIT_DIR
  config.model.init = 'random'
  config.model.pooling = 'mean'
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.source.name = 'digits'
  config.data.source.eval_splits = ('test',)
  config.data.target.name = 'digits/rotated'
  config.data.target.labeled = False  # unsupervised DA: target labels never reach the loss
  config.data.target.eval_splits = ('test',)
  config.data.batch_size = 64
  config.data.eval_batch_size = 256
  config.train.num_steps = 400
  config.train.log_every = 50
  config.train.eval_every = 400
  config.train.checkpoint_every = 0
  config.train.best_metric = ''  # no target validation labels in UDA
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 20
  config.optimizer.weight_decay = 1e-4
  return config


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'mmd')
  config.transfer.mmd = mmd.default_config()
  # From a random init, weight 1 kept the classifier at chance (source test acc 0.10-0.49).
  config.transfer.mmd.weight = 0.1
  return config
