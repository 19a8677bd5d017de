"""Meta-learning few-shot digit classes: 5-way 1-shot episodes of 8×8 digits (pixels as the
features of a small MLP), meta-trained on classes 0-4 and tested on the unseen classes 5-9.

Run:   python experiments/meta.py --config=configs/maml_digits.py
Measured: query accuracy (chance 0.2) on 200 new episodes of classes 5-9 after k SGD steps,
mean ± std over seeds 0, 1, 2, 300 meta-steps of 10 episodes; best lr of 0.1/0.03/0.01 each:
  init            1 step           3 steps          10 steps
  MAML            0.3383 ± 0.0087  0.4400 ± 0.0127  0.4898 ± 0.0147
  first-order     0.3431 ± 0.0113  0.4251 ± 0.0197  0.4813 ± 0.0142
  Reptile         0.3384 ± 0.0131  0.4118 ± 0.0144  0.4657 ± 0.0222
  joint training  0.2652 ± 0.0201  0.3554 ± 0.0255  0.4965 ± 0.0131
  random init     0.2561 ± 0.0207  0.3488 ± 0.0452  0.5612 ± 0.0235
Meta-learned inits adapt faster (1-3 steps) but a random init is best after 10 steps. With only
5 training classes, longer meta-training overfits them: at 1500 meta-steps MAML scores 0.2612 /
0.3706 / 0.4299 (worse than at 300), random init unchanged.
"""

from tl_jax.config import base_config
from tl_jax.analysis import maml


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
