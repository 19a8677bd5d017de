"""Unsupervised DA validation of the digits -> digits/rotated DA table: every run of
experiments/da_table.py scored without target labels (IWV, DEV, −entropy, SND, source val acc),
against the oracle target test accuracy.

Run:   python experiments/da_table.py            (once: the runs under runs/da_table/runs)
       python experiments/da_validation.py --config=configs/da_validation_digits.py \
           [--out=runs/da_validation]
Measured: see below (filled in from the run).
"""

import ml_collections as mlc

from tl_jax.transfer import uda_validation


def get_config(arg=None):
  del arg
  config = mlc.ConfigDict()
  config.transfer = mlc.ConfigDict()
  config.transfer.uda_validation = uda_validation.default_config()
  return config
