"""What the configs share: the recipes a table compares methods in, and the `:arg` parser.

A config calls a recipe and then adds its method, so every row of a table differs only by the
method. Configs import this as `from tl_jax.configs import common` (configs/ ships inside the
package as tl_jax/configs).
"""

import pathlib

# Architectures that are trained from a random init: only their config.json ships.
MODELS_DIR = pathlib.Path(__file__).resolve().parent / 'models'


def parse_options(arg: str, allowed: tuple[str, ...], *, where: str) -> tuple[str, dict[str, int]]:
  """'NAME,key=N,key=N' -> (NAME, {key: N}) (NAME may be left out: 'key=N' -> ('', {key: N}));
  one error naming the allowed keys otherwise."""
  name, *options = arg.split(',')
  if '=' in name:
    name, options = '', [name, *options]
  try:
    opts = {k: int(v) for k, v in (o.split('=', 1) for o in options)}
  except ValueError:
    opts = {'?': 0}
  if set(opts) - set(allowed):
    spelled = ','.join(f'{k}=N' for k in allowed)
    raise ValueError(f"{where}: arg {arg!r}; options are ',{spelled}'")
  return name, opts


def few_shot_bbc(config):
  """The shared recipe of the fine-tuning table: MiniLM, BBC News with 8 labelled per class,
  trained until the target's validation accuracy stops improving (an eval every 10 steps, stop
  after 3 without a gain, at most 500 steps); the run's result is its best checkpoint. The test
  split is evaluated too, never used to choose. AdamW 1e-4, cosine decay over the 500 steps (a
  stop at step 100 still sees 0.9 of the peak LR)."""
  config.model.name = 'minilm'
  config.data.target.name = 'bbc_news'
  config.data.target.few_shot = 8
  config.data.max_length = 64
  config.data.batch_size = 16
  config.train.num_steps = 500
  config.train.eval_every = 10
  config.train.log_every = 10
  config.train.checkpoint_every = 0
  config.train.best_metric = 'target/validation/accuracy'
  config.train.best_mode = 'max'
  config.train.early_stopping_patience = 3
  config.optimizer.learning_rate = 1e-4
  return config


VIT_DIR = str(MODELS_DIR / 'vit_digits16')  # 16x16 input, patch 4, width 64, 2 layers
# 8x8 input, 2x2 patches (16 tokens + [CLS]), width 64, 4 layers: the ViT pre-trained on
# digits/original (configs/sweeps/vit_digits_pretrain.py) that the ViT transfer pairs start from.
VIT8_DIR = str(MODELS_DIR / 'vit_digits8')


def digits_uda(config):
  """The shared recipe of the DA table: digits (labelled source) -> digits/rotated (unlabelled
  target), a small ViT from random init (16x16 input, patch 4, width 64, 2 layers)."""
  config.model.name = VIT_DIR
  config.model.init = 'random'
  config.model.pooling = 'mean'
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.source.name = 'digits'
  config.data.source.eval_splits = ('test',)
  config.data.target.name = 'digits/rotated'
  config.data.target.labeled = False  # unsupervised DA: target labels never reach the loss
  config.data.target.eval_splits = ('test',)
  config.data.batch_size = 64
  config.data.eval_batch_size = 256
  config.train.num_steps = 400
  config.train.log_every = 50
  config.train.eval_every = 400
  config.train.checkpoint_every = 0
  config.train.best_metric = ''  # no target validation labels in UDA
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 20
  config.optimizer.weight_decay = 1e-4
  return config


TEXT_SOURCE, TEXT_TARGET = 'bbc_shift/tail_ocr', 'bbc_shift/lead'


def text_uda(config):
  """The shared recipe of the text DA table: the later body of BBC articles as a bad OCR scan
  reads it (labelled source, `bbc_shift/tail_ocr`) -> the clean headline + lead sentences of
  other articles (unlabelled target, `bbc_shift/lead`; tl_jax/data/builders/bbc_shift.py),
  pretrained MiniLM-L6 with its embeddings and bottom 4 of 6 layers frozen (2 shared CPU cores:
  no backward below layer 4), 64 tokens, batch 16 per domain, 60 steps (~1.1 epochs of the
  source). Nothing here reads target labels: the run evaluates the target test split only for
  the report and keeps the last step (no best checkpoint by a target metric)."""
  config.model.name = 'minilm'
  config.model.init = 'pretrained'
  config.model.pooling = 'mean'
  config.transfer.stages = ()
  config.transfer.freeze_preset = 'bottom:4'
  config.data.text_fields = ('text',)
  config.data.source.name = TEXT_SOURCE
  config.data.source.eval_splits = ('validation',)
  config.data.target.name = TEXT_TARGET
  config.data.target.labeled = False  # unsupervised DA: target labels never reach the loss
  config.data.target.eval_splits = ('test',)
  config.data.max_length = 64
  config.data.batch_size = 16
  config.data.eval_batch_size = 64
  config.train.num_steps = 60
  config.train.log_every = 5
  config.train.eval_every = 60
  config.train.checkpoint_every = 0
  config.train.best_metric = ''  # no target validation labels in UDA
  config.train.export_hf = False
  config.optimizer.learning_rate = 1e-4
  config.optimizer.warmup_steps = 10
  return config


def image_uda(config, model_dir: str):
  """The shared recipe of the image DA table: digits/original (labelled source) ->
  digits/rotated (unlabelled target), the small ViT of configs/sweeps/vit_digits_pretrain.py
  (8x8 input, patch 2, width 64, 4 layers) *pretrained on digits/original* (not ImageNet: no ViT
  weights ship offline), loaded from its HF export `model_dir` with a new head, every weight
  fine-tuned, 200 steps, batch 64 per domain. Target labels only score the test split."""
  config.model.name = model_dir
  config.model.init = 'pretrained'
  config.model.pooling = 'cls'
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.transfer.stages = ()
  config.transfer.freeze_preset = 'all'
  config.data.source.name = 'digits/original'
  config.data.source.eval_splits = ('validation', 'test')
  config.data.target.name = 'digits/rotated'
  config.data.target.labeled = False  # unsupervised DA: target labels never reach the loss
  config.data.target.eval_splits = ('test',)
  config.data.batch_size = 64
  config.data.eval_batch_size = 256
  config.train.num_steps = 200
  config.train.log_every = 10
  config.train.eval_every = 200
  config.train.checkpoint_every = 0
  config.train.best_metric = ''  # no target validation labels in UDA
  config.train.export_hf = False
  config.optimizer.learning_rate = 5e-4
  config.optimizer.warmup_steps = 10
  config.optimizer.weight_decay = 1e-4
  return config
