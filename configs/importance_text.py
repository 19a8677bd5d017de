"""Importance weighting on the text shift: the source cross-entropy weighted by a density ratio
p_T/p_S on the (stopped) pooled features (tl_jax/methods/importance.py), pretrained MiniLM,
OCR-read later body of BBC articles (labelled source) -> clean headline + lead of other articles
(unlabelled target) (configs/common.py:text_uda). The arg picks the estimator:
  configs/importance_text.py          a domain classifier's odds (trained alongside)
  configs/importance_text.py:kmm      kernel mean matching on each step's global batch
  configs/importance_text.py:kliep    KLIEP on each step's global batch

Defaults (importance.default_config): weight 1, weights clipped at 10, median-heuristic
bandwidth, KMM / KLIEP solved to a certified gap each step (residual logged as
importance/kmm_residual, importance/kliep_gap). Not tuned on this shift: the weighted
cross-entropy is the whole objective, so there is no trade-off weight for the source-validation
grid (configs/sweeps/da_text_grid.py) to choose; no target label was used either.

Run:   tl-jax train --config=configs/importance_text.py[:kmm|:kliep] --workdir=runs/importance_text
       tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (the table)
Expected: see the README's text DA table (3 seeds, mean ± std, 95 % CI).
"""

from tl_jax.config import base_config
from tl_jax.configs import common
from tl_jax.methods import importance


def get_config(arg=None):
  config = common.text_uda(base_config())
  config.transfer.objectives = ('importance_weighting',)
  config.transfer.importance = importance.default_config()
  config.transfer.importance.estimator = importance.check_estimator(arg or 'classifier')
  return config
