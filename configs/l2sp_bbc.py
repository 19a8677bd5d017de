"""L2-SP: full fine-tuning with α/2·||w − w0||² toward the pretrained weights and β/2·||w_head||²
(Li et al. 2018; tl_jax/methods/l2sp.py). AdamW's decoupled decay toward 0 is switched off, so
the only pull is toward the starting point.

Run:   tl-jax train --config=configs/l2sp_bbc.py --workdir=runs/l2sp_bbc
Measured by python experiments/finetune_table.py with the old recipe (3 seeds, a fixed 30
steps, no validation stop; not yet rerun with the shared stop of configs/common.py):
  target test accuracy 0.9170 ± 0.0408 (full fine-tune 0.9125 ± 0.0453).
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
