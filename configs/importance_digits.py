"""Importance weighting: the source cross-entropy weighted by a density ratio p_T/p_S on the
(stopped) pooled features (tl_jax/transfer/importance.py). The config arg picks the estimator:
  configs/importance_digits.py          a domain classifier's odds (trained alongside)
  configs/importance_digits.py:kmm      kernel mean matching on each step's global batch
  configs/importance_digits.py:kliep    KLIEP on each step's global batch

Run:   python experiments/da_table.py --methods=importance,importance_kmm,importance_kliep
       (writes the ViT dir, 3 seeds)
       tl-jax train --config=configs/importance_digits.py:kmm --workdir=runs/importance_kmm
       (after the table script has written runs/da_table/vit_random once)
Expected: see the DA table (experiments/da_table.py docstring) for the measured numbers.
"""

from tl_jax.config import base_config
from tl_jax.recipes import digits_uda
from tl_jax.transfer import importance


def get_config(arg=None):
  config = digits_uda(base_config())
  config.transfer.objectives = ('importance_weighting',)
  config.transfer.importance = importance.default_config()
  config.transfer.importance.estimator = importance.check_estimator(arg or 'classifier')
  return config
