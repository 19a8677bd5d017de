"""Source only: the text DA table's baseline, cross-entropy on the labelled OCR-read later body of
BBC articles (`bbc_shift/tail_ocr`), evaluated on the clean headline + lead of other articles
(`bbc_shift/lead`), pretrained MiniLM (configs/common.py:text_uda).

Run:   tl-jax train --config=configs/source_only_text.py --workdir=runs/source_only_text
       tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text   (the table)
Expected: see the README's text DA table.
"""

from tl_jax.config import base_config
from tl_jax.configs import common


def get_config(arg=None):
  del arg
  config = common.text_uda(base_config())
  config.transfer.objectives = ('cross_entropy',)
  return config
