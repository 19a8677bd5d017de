"""Meta-learning few-shot digit classes: 5-way 1-shot episodes of 8×8 digits (pixels as the
features of a small MLP), meta-trained on classes 0-4 and tested on the unseen classes 5-9.

Run:   python experiments/meta.py --config=configs/maml_digits.py
Expected: MEASURED (see experiments/meta.py).
"""

from tl_jax.config import base_config
from tl_jax.transfer import maml


def get_config(arg=None):
  del arg
  config = base_config()
  config.data.target.name = 'digits'
  config.transfer.maml = maml.default_config()
  m = config.transfer.maml
  m.task = 'digits'
  m.hidden = (64, 64)
  m.k_shot, m.n_query, m.n_way = 1, 15, 5
  m.inner_lr, m.inner_steps = 0.1, 3
  m.reptile_inner_steps = 5
  m.outer_lr, m.meta_steps = 1e-3, 300  # 1500 meta-overfits the 5 training classes (docstring)
  m.baseline_lrs = (0.1, 0.03, 0.01)
  m.eval_steps = (1, 3, 10)
  return config
