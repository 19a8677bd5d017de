"""DANN on the text shift: source cross-entropy plus a domain discriminator behind gradient reversal
(tl_jax/methods/dann.py), pretrained MiniLM, OCR-read later body of BBC articles (labelled source)
-> clean headline + lead of other articles (unlabelled target) (configs/common.py:text_uda).

Defaults: weight 1 and the discriminator at lr_multiplier 10 (dann.default_config, the
reference code's two-time-scale setting), reversal coefficient warmed up 0 -> 1 (gamma 10).
NOT tuned on this shift: the planned one-seed grid over weight {0.1, 0.3, 1} scored on source
validation accuracy did not fit the compute (2 CPU cores shared with other jobs, load 5-11: one
60-step run takes 3-5 min); no target label was used to pick them either. Measured in the table
(seeds 0-2): the discriminator collapses ('lost': domain accuracy ~0.5 with domain loss 1.6-2.4,
the reversed features outrun it) and source validation accuracy drops to 0.52-0.58 (source only
0.73-0.75), which a source-validation grid would have rejected: lower the weight first.

Run:   tl-jax train --config=configs/dann_text.py --workdir=runs/dann_text
       tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (the table)
Expected: see the README's text DA table (3 seeds, mean ± std, 95 % CI).
"""

from tl_jax.config import base_config
from tl_jax.configs import common
from tl_jax.methods import dann

WEIGHT = 1.0  # see the docstring: how it was chosen


def get_config(arg=None):
  del arg
  config = common.text_uda(base_config())
  config.transfer.objectives = ('cross_entropy', 'dann')
  config.transfer.dann = dann.default_config()
  config.transfer.dann.weight = WEIGHT
  return config
