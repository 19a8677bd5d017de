"""CDAN+E: a domain discriminator on features x softmax predictions behind gradient reversal,
entropy-conditioned (tl_jax/methods/cdan.py).

Run:   python experiments/da_table.py --methods=cdan_e   (3 seeds)
       tl-jax train --config=configs/cdan_digits.py --workdir=runs/cdan_digits
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.configs.common import digits_uda
from tl_jax.methods import cdan


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'cdan')
  config.transfer.cdan = cdan.default_config()
  config.transfer.cdan.hidden = (64,)
  # The DA table was measured before discriminators had their own LR (x1); the new
  # default x10 (reference code) is not re-measured on digits yet.
  config.transfer.cdan.lr_multiplier = 1.0
  return config
