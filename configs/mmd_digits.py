"""DAN: source cross-entropy plus multi-kernel MMD² between source and target pooled features
(tl_jax/methods/mmd.py).

Run:   python experiments/da_table.py --methods=mmd   (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/mmd_digits.py --workdir=runs/mmd_digits
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.configs.common import digits_uda
from tl_jax.methods import mmd


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'mmd')
  config.transfer.mmd = mmd.default_config()
  # From a random init, weight 1 kept the classifier at chance (source test acc 0.10-0.49).
  config.transfer.mmd.weight = 0.1
  return config
