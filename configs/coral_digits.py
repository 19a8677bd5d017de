"""Deep CORAL: source cross-entropy plus ||C_S - C_T||_F^2 / 4d^2 on the pooled features
(tl_jax/methods/coral.py).

Run:   python experiments/da_table.py --methods=coral   (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/coral_digits.py --workdir=runs/coral_digits
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.configs.common import digits_uda
from tl_jax.methods import coral


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'coral')
  config.transfer.coral = coral.default_config()
  config.transfer.coral.weight = 10.0
  return config
