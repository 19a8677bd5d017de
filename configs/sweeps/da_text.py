"""The text DA table: every DA method on the later body of BBC articles as a bad OCR scan reads
it (labelled source, `bbc_shift/tail_ocr`) -> the clean headline + lead sentences of other
articles (unlabelled target, `bbc_shift/lead`), pretrained MiniLM (configs/common.py:text_uda:
bottom 4 of 6 layers frozen, 64 tokens, batch 16 per domain, 60 steps), seeds 0, 1, 2
(`config.seed`: init of the head and discriminators, shuffling, dropout). Rows: source only,
the target-supervised ceiling (the same recipe trained on the labelled target train split, no
source), then each configs/<method>_text.py as it is. Target labels score the test split only.

  arg ',seeds=K'   K seeds (default 3)
  arg ',steps=N'   a shorter run (tests)

Run:   tl-jax sweep --config=configs/sweeps/da_text.py --sweepdir=runs/da_text
       python experiments/da_table.py --sweep=configs/sweeps/da_text.py --out=runs/da_text_table
           (the same runs, plus a plot)
Expected: the README's text DA table; table.md in the sweep dir gives target test accuracy,
mean ± std and the Student-t 95 % CI over the seeds.
"""

from tl_jax import sweep
from tl_jax.config import base_config
from tl_jax.configs import cdan_text
from tl_jax.configs import common
from tl_jax.configs import coral_text
from tl_jax.configs import dann_text
from tl_jax.configs import importance_text
from tl_jax.configs import mdd_text
from tl_jax.configs import mmd_text

BASELINE = 'source_only'  # table.md compares every row with it, seed by seed
# table.md: target test (labels score only), source validation (what a user may select on)
COLUMNS = ('target/test/accuracy', 'source/validation/accuracy', 'wall_s', 'peak_rss_mb')

# row name -> (config module, arg, the transfer section it sets); one row per DA method, in the
# order they run (the rows after the baselines are what 2 shared cores finish first).
METHODS = {
    'dann': (dann_text, None, 'dann'),
    'coral': (coral_text, None, 'coral'),
    'iw_classifier': (importance_text, 'classifier', 'importance'),
    'mmd': (mmd_text, None, 'mmd'),
    'cdan_e': (cdan_text, 'e', 'cdan'),
    'mdd': (mdd_text, None, 'mdd'),
    'cdan': (cdan_text, None, 'cdan'),
    'iw_kmm': (importance_text, 'kmm', 'importance'),
    'iw_kliep': (importance_text, 'kliep', 'importance'),
}


def _parse(arg: str) -> dict[str, int]:
  _, opts = common.parse_options(arg or '', ('seeds', 'steps'),
                                 where='configs/sweeps/da_text.py')
  return opts


def get_config(arg: str = ''):
  opts = _parse(arg)
  config = common.text_uda(base_config())
  config.transfer.objectives = ('cross_entropy',)
  if 'steps' in opts:
    config.train.num_steps = config.train.eval_every = opts['steps']
  return config


def method_rows() -> list[dict]:
  """The override dict of every row: source only, the ceiling, the DA methods."""
  rows = [{'name': 'source_only'},
          {'name': 'target_supervised', 'data.source.name': '', 'data.target.labeled': True}]
  for name, (module, arg, section) in METHODS.items():
    config = module.get_config(arg)
    rows.append({'name': name, 'transfer.objectives': tuple(config.transfer.objectives),
                 f'transfer.{section}': config.transfer[section].to_dict()})
  return rows


def get_sweep(arg: str = ''):
  opts = _parse(arg)
  return sweep.product(method_rows(), sweep.axis('seed', range(opts.get('seeds', 3))))
