"""The few-shot fine-tuning table as a sweep: MiniLM-L6 -> BBC News with 8 labelled articles per
class, batch 16 x 64 tokens; one run per method and seed.

  arg 'steps=N,seeds=K'    a capped run (N steps, an eval at N, no early stop) / fewer seeds
                           (default: each method's own recipe, 3 seeds)

Each method is its own config file (configs/<method>_bbc.py[:arg]), built on the shared recipe
configs/common.py:few_shot_bbc: every method trains until the target's validation accuracy
stops improving and its row is its best checkpoint's test accuracy (chosen on validation, never
on test). The base is full fine-tuning (configs/finetune_bbc.py) and a method's run overrides
exactly the keys its file changes. A seed sets the head init, the data order and WHICH 8
articles per class are labelled, so seeds are paired across methods.

Run:   python experiments/finetune_table.py                 (table + plot)
       tl-jax sweep --config=configs/sweeps/finetune_bbc.py --sweepdir=runs/finetune_table/runs
Expected: see the README's fine-tuning table.
"""

from tl_jax import config as config_lib
from tl_jax import config_overrides
from tl_jax import harness
from tl_jax import sweep
from tl_jax.configs import common

BASELINE = 'finetune'  # table.md compares every row with it, seed by seed

# name -> (config file[:arg] under configs/, extra overrides); the base is 'finetune'.
METHODS = {
    'random_init': ('finetune_bbc.py', {'model.init': 'random'}),
    'head_only': ('head_only_bbc.py', {}),
    'finetune': ('finetune_bbc.py', {}),
    'l2sp': ('l2sp_bbc.py', {}),
    'bss': ('bss_bbc.py', {}),
    'distill_hidden': ('distill_bbc.py:hidden', {}),
    'distill_attention': ('distill_bbc.py:attention', {}),
    'lora': ('lora_bbc.py', {}),
}


def _parse(arg: str) -> dict[str, int]:
  arg = (arg or '').lstrip(',')  # 'steps=N,seeds=K' or ',steps=N,seeds=K'
  _, opts = common.parse_options(',' + arg if arg else '', ('steps', 'seeds'),
                                 where='configs/sweeps/finetune_bbc.py')
  return opts


def _file(name: str):
  return config_lib.from_file(harness.config_path(name))


def get_config(arg: str = ''):
  config = _file('finetune_bbc.py')
  config.train.export_hf = False
  if steps := _parse(arg).get('steps'):  # a smoke run: N steps, one eval, no selection
    config.train.num_steps = config.train.eval_every = steps
    config.train.log_every = max(steps // 4, 1)
    config.train.best_metric = ''
    config.train.early_stopping_patience = 0
  return config


def get_sweep(arg: str = ''):
  opts = _parse(arg)
  base = _file('finetune_bbc.py')
  methods = [{'name': m, **config_overrides.between(base, _file(path)), **extra}
             for m, (path, extra) in METHODS.items()]
  seeds = [{'seed': s, 'data.shuffle_seed': s, 'data.few_shot_seed': s}
           for s in range(opts.get('seeds', 3))]
  return sweep.product(methods, seeds)
