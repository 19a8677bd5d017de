"""Meta-learning on Finn et al.'s sinusoid regression family (y = A sin(x − φ), 10-shot): MAML,
first-order MAML and Reptile against the same MLP trained jointly on all tasks and a random init,
each then fine-tuned on a NEW task for k SGD steps.

Run:   python experiments/meta.py --config=configs/maml_sinusoid.py
Measured: query MSE on 200 new tasks after k SGD steps, mean ± std over seeds 0, 1, 2 (2000
meta-steps of 10 tasks; every init fine-tuned at its best of lr 0.02 / 0.005 / 0.001):
  init            1 step           5 steps          10 steps
  MAML            1.3649 ± 0.1867  1.0765 ± 0.2984  0.8282 ± 0.1707
  first-order     1.3503 ± 0.3022  0.9249 ± 0.3379  0.8387 ± 0.3794
  Reptile         1.1648 ± 0.1470  0.5739 ± 0.0893  0.4273 ± 0.0886
  joint training  2.3175 ± 0.0696  1.8793 ± 0.0745  1.7261 ± 0.1033
  random init     3.8174 ± 0.3472  3.6302 ± 0.1684  3.7594 ± 0.1219
"""

from tl_jax.config import base_config
from tl_jax.analysis import maml


def get_config(arg=None):
  del arg
  config = base_config()
  config.transfer.maml = maml.default_config()
  return config
