"""L2-SP: full fine-tuning with α/2·||w − w0||² toward the pretrained weights and β/2·||w_head||²
(Li et al. 2018; tl_jax/methods/l2sp.py). AdamW's decoupled decay toward 0 is switched off, so
the only pull is toward the starting point.

Run:   tl-jax train --config=configs/l2sp_bbc.py --workdir=runs/l2sp_bbc
Measured by python experiments/finetune_table.py (seeds 0-2, the shared validation stop, the
214-article test split; README):
  target test accuracy 0.914 ± 0.010, the same as full fine-tuning (0.914 ± 0.013): paired
  difference +0.0 (95 % CI ± 1.2 points).
"""

from tl_jax.config import base_config
from tl_jax.configs.common import few_shot_bbc


def get_config(arg=None):
  del arg
  config = few_shot_bbc(base_config())
  config.transfer.freeze_preset = 'all'
  config.transfer.objectives = ('cross_entropy', 'l2sp')
  config.transfer.l2sp_alpha = 0.1
  config.transfer.l2sp_beta = 0.01
  config.optimizer.weight_decay = 0.0
  return config
