"""MiniLM-L6 (packaged, offline) transferred to BBC News topic classification.

Run:   tl-jax train --workdir=runs/default          (this config is the default)
       tl-jax train --config=configs/default.py --config.model.init=random --workdir=runs/rand
Expected: filled in by the training-core work (target test accuracy, pretrained vs random).
"""

from tl_jax.config import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.data.target.name = 'bbc_news'
  return config
