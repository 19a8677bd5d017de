"""A seconds-long run for end-to-end tests and smoke checks: few steps, short texts, small batches.

Run:   tl-jax train --config=configs/tiny_test.py --workdir=/tmp/tiny
       (the packaged MiniLM on BBC News; the reliability tests point model.name at a tiny random
       BERT and data.target.name at a folder of a few texts, see tests/cli_helpers.py)
Expected: 6 steps, an eval and a checkpoint every 2 steps; nothing to learn from the numbers.
"""

from tl_jax.config import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.model.name = 'minilm'
  config.data.target.name = 'bbc_news'
  config.data.max_length = 16
  config.data.batch_size = 8
  config.data.eval_batch_size = 8
  config.data.read_threads = 1
  config.data.prefetch_batches = 1
  config.train.num_steps = 6
  config.train.log_every = 1
  config.train.eval_every = 2
  config.train.checkpoint_every = 2
  config.train.keep_checkpoints = 3
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'constant'
  config.optimizer.warmup_steps = 0
  return config
