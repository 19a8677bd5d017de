"""Unsupervised DA validation of the text DA table (configs/sweeps/da_text.py): every finished
UDA run of that sweep (source only, each DA method, 3 seeds; not the target-supervised ceiling)
restored from its checkpoint and scored without target labels (IWV, DEV, −entropy, SND, source
validation accuracy), against the oracle target test accuracy.

Run:   tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (once)
       python experiments/da_validation.py --config=configs/da_validation_text.py \\
           --out=runs/da_validation_text
Measured: see the README's text DA section.
"""

import ml_collections as mlc

from tl_jax.analysis import uda_validation


def get_config(arg=None):
  del arg
  config = mlc.ConfigDict()
  config.transfer = mlc.ConfigDict()
  config.transfer.uda_validation = uda_validation.default_config()
  config.transfer.uda_validation.runs_dir = 'runs/da_text'
  return config
