"""Importance weighting: the source cross-entropy weighted by a domain classifier's density
ratio p_T/p_S on the (stopped) pooled features (tl_jax/transfer/importance.py).

Run:   python experiments/da_table.py --methods=importance   (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/importance_digits.py --workdir=runs/importance_digits
       (after the table script has written runs/da_table/vit_random once)
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.recipes import digits_uda
from tl_jax.transfer import importance


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('importance_weighting',)
  config.transfer.importance = importance.default_config()
  return config
