"""Unsupervised DA validation of the text DA table (configs/sweeps/da_text.py): every finished
UDA run of that sweep (source only, each DA method, 3 seeds; not the target-supervised ceiling)
restored from its checkpoint and scored without target labels (IWV, DEV, −entropy, SND, source
validation accuracy), against the oracle target test accuracy.

Run:   tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (once)
       python experiments/da_validation.py --config=configs/da_validation_text.py \\
           --out=runs/da_validation_text
Measured (30 runs, 17 min on 2 cores shared with another job; per-run scores in OUT/table.md):
  | score          | Spearman ρ vs oracle | picks           | its target acc | oracle best      |
  | source val acc | +0.400               | cdan,seed=0     | 0.888          | iw_classifier s1 |
  | −IWV (CE)      | -0.497               | mdd,seed=2      | 0.832          | 0.897            |
  | −IWV (0-1)     | +0.295               | iw_classifier,1 | 0.897          |                  |
  | −DEV (CE)      | +0.639               | dann,seed=0     | 0.879          |                  |
  | −entropy       | +0.577               | mdd,seed=1      | 0.869          |                  |
  | SND            | -0.742               | coral,seed=2    | 0.813          |                  |
The domain classifier separates the two text domains almost perfectly (mean weight 0.007-0.2,
Kish effective sample size 1-6 of 105 source validation articles): IWV/DEV rest on a few
articles. See the README's text DA section.
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
