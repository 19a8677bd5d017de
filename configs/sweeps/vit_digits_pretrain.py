"""A small ViT "pre-trained" from scratch on digits/original: the upstream model of the offline
ViT transfer pairs (no ViT weights ship offline). Its export/ is an HF-layout checkpoint.

  arg DIR   optional: a directory holding another ViT's config.json (default: the shipped
            configs/models/vit_digits8, 8x8 digits in 2x2 patches, 4 layers of width 64)

Run:   tl-jax sweep --config=configs/sweeps/vit_digits_pretrain.py --sweepdir=runs/vit_pre
       (experiments/freezing_benchmark.py and lambda_sweep.py do this first)
Expected: digits/original test accuracy ≈ 0.9 after 400 steps (a few minutes on 2 cores);
runs/vit_pre/vit_digits/export is the pretrained ViT.
"""

from tl_jax.config import base_config
from tl_jax.configs import common


def get_config(arg: str = ''):
  config = base_config()
  config.model.name = arg or common.VIT8_DIR
  config.model.init = 'random'
  config.model.pooling = 'cls'
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.target.name = 'digits/original'
  config.data.target.eval_splits = ('test',)
  config.data.batch_size = 64
  config.data.eval_batch_size = 256
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 20
  config.train.num_steps = 400
  config.train.log_every = 20
  config.train.eval_every = 200
  config.train.checkpoint_every = 200
  config.train.keep_checkpoints = 1
  config.train.best_metric = ''
  config.train.export_hf = True  # export/ is the "pretrained" ViT the transfer runs load
  return config


def get_sweep(arg: str = ''):
  del arg
  return [{'name': 'vit_digits'}]
