"""DAN on the text shift: source cross-entropy plus multi-kernel MMD^2 between source and target
pooled features (tl_jax/methods/mmd.py; bandwidths from the batch's mean distance, so the term is
scale-free), pretrained MiniLM, OCR-read later body of BBC articles (labelled source) -> clean
headline + lead of other articles (unlabelled target) (configs/common.py:text_uda).

Defaults: 5 Gaussian kernels, multiplier 2, the unbiased estimator (mmd.default_config,
DAN's settings).
Weight chosen on SOURCE validation accuracy (configs/sweeps/da_text_grid.py, seeds 100 and
101, not the table's; no target label read), mean % of the two seeds (source only 74.8):
  0.03 75.7, 0.1 75.2, 0.3 73.3, 1 66.7, 3 59.0
  -> 0.03 (the grid's lower edge, as after its first pass, 0.1-3: source accuracy only
  falls as the weight grows).

Run:   tl-jax train --config=configs/mmd_text.py --workdir=runs/mmd_text
       tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (the table)
Expected: see the README's text DA table (3 seeds, mean ± std, 95 % CI).
"""

from tl_jax.config import base_config
from tl_jax.configs import common
from tl_jax.methods import mmd

WEIGHT = 0.03  # see the docstring: how it was chosen


def get_config(arg=None):
  del arg
  config = common.text_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'mmd')
  config.transfer.mmd = mmd.default_config()
  config.transfer.mmd.weight = WEIGHT
  return config
