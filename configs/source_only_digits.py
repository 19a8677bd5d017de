"""Source only: the digits -> digits/rotated baseline of the DA table, cross-entropy on the
labelled source alone.

Run:   python experiments/da_table.py --methods=source_only   (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/source_only_digits.py --workdir=runs/source_only_digits
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.configs.common import digits_uda


def get_config(arg=None):
  del arg
  config = digits_uda(base_config())
  config.transfer.objectives = ('cross_entropy',)
  return config
