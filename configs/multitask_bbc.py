"""Multi-task: one MiniLM backbone, two heads trained in the same step with per-task loss weights
(tl_jax/methods/multitask.py). Task 'fewshot': BBC News with 8 labelled articles per class
(the target, weight 1); task 'full': every BBC News training article (the source, weight 0.5),
each with its own head (data.<domain>.head). The heads may have different label sets: a source
dataset with another label count gets a head of its size.

Run:   tl-jax train --config=configs/multitask_bbc.py --workdir=runs/multitask_bbc
Expected: target/accuracy and source/accuracy both rise; eval reports each head on its domain.
"""

from tl_jax.config import base_config
from tl_jax.methods import multitask


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.data.target.name = 'bbc_news'
  config.data.target.few_shot = 8
  config.data.target.head = 'fewshot'
  config.data.source.name = 'bbc_news'
  config.data.source.head = 'full'
  config.data.max_length = 64
  config.data.batch_size = 16
  config.transfer.objectives = ('multitask',)
  config.transfer.multitask = multitask.default_config()
  config.transfer.multitask.weights.target = 1.0
  config.transfer.multitask.weights.source = 0.5
  config.train.num_steps = 60
  config.train.eval_every = 30
  config.optimizer.learning_rate = 1e-4
  return config
