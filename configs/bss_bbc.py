"""BSS: full fine-tuning plus η·Σ σ_min² of the batch's pooled features (Chen et al. 2019;
tl_jax/methods/bss.py).

Run:   tl-jax train --config=configs/bss_bbc.py --workdir=runs/bss_bbc
Measured by python experiments/finetune_table.py (seeds 0-2, the shared validation stop, the
214-article test split; README):
  target test accuracy 0.916 ± 0.016 (full fine-tune 0.914 ± 0.013): paired difference +0.2
  (95 % CI ± 0.7 points), no difference.
"""

from tl_jax.config import base_config
from tl_jax.configs.common import few_shot_bbc
from tl_jax.methods import bss


def get_config(arg=None):
  del arg
  config = few_shot_bbc(base_config())
  config.transfer.freeze_preset = 'all'
  config.transfer.objectives = ('cross_entropy', 'bss')
  config.transfer.bss = bss.default_config()
  config.transfer.bss.eta = 1e-3
  config.transfer.bss.k = 1
  return config
