"""λ sweep of the joint loss L_T + λ(step)·L_S: digits (labelled source) -> digits/rotated
(5 labelled images per class), a small ViT trained from a random init.

  arg DIR   optional: a directory with another ViT's config.json (default: the shipped
            configs/models/vit_digits8, the architecture of configs/sweeps/vit_digits_pretrain.py)
  'steps=N,seeds=K' (after DIR, if any): a shorter run / fewer seeds

From a random init the source labels are the only thing that teaches digit shapes beyond the 50
target images, so λ decides how much of that transfer happens (λ = 0: the target alone).
Schedules: constant λ ∈ {0, 0.1, 0.3, 1, 3}; linear ramp 0 -> 1 over the run; DANN schedule
(value 1, γ 10); step 1 -> 0.1 at half the run (source first, then the target).

Run:   python experiments/lambda_sweep.py                              (table + plot)
       tl-jax sweep --config=configs/sweeps/lambda.py --sweepdir=runs/lam
Expected: see the README table made by experiments/lambda_sweep.py.
"""

from tl_jax import sweep
from tl_jax.config import base_config
from tl_jax.configs import common

CONSTANTS = (0.0, 0.1, 0.3, 1.0, 3.0)


def _parse(arg: str) -> tuple[str, dict[str, int]]:
  model, opts = common.parse_options(arg or '', ('steps', 'seeds'),
                                     where='configs/sweeps/lambda.py')
  return model or common.VIT8_DIR, opts


def get_config(arg: str = ''):
  model, opts = _parse(arg)
  config = base_config()
  config.model.name = model
  config.model.init = 'random'
  config.model.pooling = 'cls'
  config.model.dropout_rate = 0.0
  config.model.attention_dropout_rate = 0.0
  config.data.target.name = 'digits/rotated'
  config.data.target.few_shot = 5
  config.data.target.eval_splits = ('test',)
  config.data.source.name = 'digits/original'
  config.data.source.eval_splits = ('test',)
  config.data.batch_size = 32  # per domain
  config.data.eval_batch_size = 256
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 10
  config.train.num_steps = opts.get('steps', 150)
  config.train.log_every = 5
  config.train.eval_every = config.train.num_steps // 3
  config.train.checkpoint_every = config.train.num_steps // 3
  config.train.keep_checkpoints = 1
  config.train.best_metric = ''
  config.train.export_hf = False
  return config


def get_sweep(arg: str = ''):
  _, opts = _parse(arg)
  half = get_config(arg).train.num_steps // 2
  lams = [{'name': f'constant{v:g}', 'transfer.lam': {'kind': 'constant', 'value': v}}
          for v in CONSTANTS]
  lams += [
      {'name': 'linear1', 'transfer.lam': {'kind': 'linear', 'value': 1.0, 'ramp_steps': 0}},
      {'name': 'dann1', 'transfer.lam': {'kind': 'dann', 'value': 1.0, 'gamma': 10.0}},
      {'name': 'step1to0.1', 'transfer.lam': {'kind': 'step', 'steps': (half,),
                                              'values': (1.0, 0.1)}},
  ]
  seeds = [{'seed': s, 'data.few_shot_seed': s} for s in range(opts.get('seeds', 2))]
  return sweep.product(lams, seeds)
