"""A small ViT "pre-trained" from scratch on digits/original: the upstream model of the offline
ViT transfer pairs (no ViT weights ship offline). Its export/ is an HF-layout checkpoint.

  arg DIR   a directory holding the ViT's config.json (write_init(DIR) writes VIT_CONFIG there)

Run:   tl-jax sweep --config=configs/sweeps/vit_digits_pretrain.py:DIR --sweepdir=OUT
       (experiments/freezing_benchmark.py and lambda_sweep.py do this first)
Expected: digits/original test accuracy ≈ 0.9 after 400 steps (a few minutes on 2 cores).
"""

import json
import pathlib

from tl_jax.config import base_config

# 8×8 grayscale digits, 2×2 patches: 16 tokens + [CLS]; 4 layers of width 64.
VIT_CONFIG = dict(model_type='vit', architectures=['ViTModel'], image_size=8, patch_size=2,
                  num_channels=1, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=128, hidden_act='gelu', layer_norm_eps=1e-12,
                  initializer_range=0.02, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, qkv_bias=True)


def write_init(directory) -> str:
  """Writes VIT_CONFIG as DIR/config.json (a random init is built from it); returns DIR."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  (directory / 'config.json').write_text(json.dumps(VIT_CONFIG, indent=1))
  return str(directory)


def get_config(arg: str = ''):
  if not arg:
    raise ValueError('configs/sweeps/vit_digits_pretrain.py needs :DIR, a directory with the '
                     "ViT's config.json (see write_init)")
  config = base_config()
  config.model.name = arg
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
