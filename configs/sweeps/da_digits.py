"""The domain-adaptation table as a sweep: digits (labelled source) -> digits/rotated (unlabelled
target), the small random-init ViT (configs/models/vit_digits16), one run per method and seed.

  arg 'steps=N,seeds=K'    a shorter run / fewer seeds (default: the configs' 400 steps, 3 seeds)

Each method is its own config file (configs/<method>_digits.py[:arg]); the sweep's base config is
source-only and a method's run overrides exactly the keys its file changes, so the files stay
the one place a method's settings live. Target labels are read for the report only.

Run:   python experiments/da_table.py [--sweep=configs/sweeps/da_digits.py] (table + plot)
       tl-jax sweep --config=configs/sweeps/da_digits.py --sweepdir=runs/da_table/runs
Expected: see the README's domain-adaptation table.
"""

from tl_jax import config as config_lib
from tl_jax import config_overrides
from tl_jax import harness
from tl_jax import sweep
from tl_jax.configs import common

BASELINE = 'source_only'  # table.md compares every row with it, seed by seed

# name -> config file[:arg] under configs/; the first is the base.
METHODS = {
    'source_only': 'source_only_digits.py',
    'dann': 'dann_digits.py',
    'mmd': 'mmd_digits.py',
    'coral': 'coral_digits.py',
    'cdan_e': 'cdan_digits.py',  # entropy conditioning on: CDAN+E
    'mdd': 'mdd_digits.py',
    'importance': 'importance_digits.py',
    'importance_kmm': 'importance_digits.py:kmm',
    'importance_kliep': 'importance_digits.py:kliep',
}


def _parse(arg: str) -> dict[str, int]:
  _, opts = common.parse_options(arg or '', ('steps', 'seeds'),
                                 where='configs/sweeps/da_digits.py')
  return opts


def _method(name: str):
  return config_lib.from_file(harness.config_path(METHODS[name]))


def get_config(arg: str = ''):
  opts = _parse(arg)
  config = _method('source_only')
  config.train.export_hf = False
  if 'steps' in opts:
    config.train.num_steps = opts['steps']
    config.train.eval_every = opts['steps']
    config.train.log_every = max(1, opts['steps'] // 4)
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, opts['steps'] // 2)
  return config


def get_sweep(arg: str = ''):
  opts = _parse(arg)
  base = _method('source_only')
  methods = [{'name': m, **config_overrides.between(base, _method(m))} for m in METHODS]
  seeds = [{'seed': s, 'data.shuffle_seed': s} for s in range(opts.get('seeds', 3))]
  return sweep.product(methods, seeds)
