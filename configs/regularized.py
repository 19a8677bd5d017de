"""Against overfitting, all at once: dropout, L1 + L2 penalties on the weights (biases and
LayerNorm scales left out), early stopping on the validation accuracy and, for images,
augmentation (random crop) and mixup (the loss then uses the mixed soft labels).

arg 'bbc' (default): MiniLM on BBC News, 8 labelled articles per class (text: no augment/mixup).
arg 'vit=DIR': a ViT in HF layout (DIR) on digits/rotated, 10 images per class, with augment and
mixup on top (configs/sweeps/vit_digits_pretrain.py writes such a ViT).

Run:   tl-jax train --config=configs/regularized.py --workdir=runs/regularized_bbc
       tl-jax train --config=configs/regularized.py:vit=DIR --workdir=runs/regularized_digits
Expected: stops early when the validation accuracy has not improved for 3 evals (every 10
steps); the penalties show as loss/l1, loss/l2 and penalties/* in metrics.jsonl.
"""

from tl_jax.config import base_config
from tl_jax.methods import penalties


def get_config(arg=None):
  arg = arg or 'bbc'
  config = base_config()
  if arg == 'bbc':
    config.model.name = 'minilm'
    config.data.target.name = 'bbc_news'
    config.data.target.few_shot = 8
    config.data.max_length = 64
    config.data.batch_size = 16
    config.optimizer.learning_rate = 1e-4
  elif arg.startswith('vit='):
    config.model.name = arg[len('vit='):]
    config.model.pooling = 'cls'
    config.data.target.name = 'digits/rotated'
    config.data.target.few_shot = 10
    config.data.batch_size = 32
    config.data.augment = True  # random crop (no flips: digits are not mirror-symmetric)
    config.data.augment_flip = False
    config.data.mixup = 0.2
    config.optimizer.learning_rate = 1e-3
  else:
    raise ValueError(f"configs/regularized.py: arg {arg!r}; use 'bbc' or 'vit=DIR'")
  config.model.dropout_rate = 0.2
  config.model.attention_dropout_rate = 0.2
  config.transfer.objectives = ('cross_entropy', 'l1', 'l2')
  config.transfer.penalties = penalties.default_config()
  config.transfer.penalties.l1 = 1e-6
  config.transfer.penalties.l2 = 1e-4
  config.optimizer.weight_decay = 0.0  # the L2 term replaces AdamW's decoupled decay
  config.train.num_steps = 200
  config.train.eval_every = 10
  config.train.checkpoint_every = 10
  config.train.best_metric = 'target/validation/accuracy'
  config.train.early_stopping_patience = 3
  return config
