"""Meta-learning on Finn et al.'s sinusoid regression family (y = A sin(x − φ), 10-shot): MAML,
first-order MAML and Reptile against the same MLP trained jointly on all tasks and a random init,
each then fine-tuned on a NEW task for k SGD steps.

Run:   python experiments/meta.py --config=configs/maml_sinusoid.py
Expected: MEASURED (see experiments/meta.py).
"""

from tl_jax.config import base_config
from tl_jax.transfer import maml


def get_config(arg=None):
  del arg
  config = base_config()
  config.transfer.maml = maml.default_config()
  return config
