"""The image DA table: every DA method on digits/original (labelled source) -> digits/rotated
(unlabelled target), a small ViT PRETRAINED ON DIGITS/ORIGINAL (configs/sweeps/
vit_digits_pretrain.py; not ImageNet: no ViT weights ship offline), fully fine-tuned
(configs/common.py:image_uda: 200 steps, batch 64 per domain), seeds 0, 1, 2. Rows: source only,
the methods with the settings of configs/<method>_text.py (chosen on the text shift, not
re-tuned for images; only the recipe differs), and the target-supervised ceiling (the same
recipe on labelled digits/rotated train, no source).

  arg DIR          the pretrained ViT's HF export (vit_digits_pretrain's <run>/export)
  ',seeds=K'       K seeds (default 3);  ',steps=N'  a shorter run (tests)

Run:   tl-jax sweep --config=configs/sweeps/vit_digits_pretrain.py \\
           --sweepdir=runs/vit_pre            (once: runs/vit_pre/vit_digits/export)
       tl-jax sweep --config=configs/sweeps/da_image.py:runs/vit_pre/vit_digits/export \\
           --sweepdir=runs/da_image
Expected: the README's image DA table (target test accuracy, mean ± std, Student-t 95 % CI).
"""

from tl_jax import sweep
from tl_jax.config import base_config
from tl_jax.configs import common
from tl_jax.configs.sweeps import da_text

BASELINE = 'source_only'  # table.md compares every row with it, seed by seed
# table.md: target test (labels score only), source validation (what a user may select on)
COLUMNS = ('target/test/accuracy', 'source/validation/accuracy', 'wall_s', 'peak_rss_mb')


def _parse(arg: str) -> tuple[str, dict[str, int]]:
  if not (arg or '').split(',')[0]:
    raise ValueError('configs/sweeps/da_image.py needs :DIR, the HF export of a ViT pretrained '
                     'on digits/original (configs/sweeps/vit_digits_pretrain.py)')
  return common.parse_options(arg, ('seeds', 'steps'), where='configs/sweeps/da_image.py')


def get_config(arg: str = ''):
  model_dir, opts = _parse(arg)
  config = common.image_uda(base_config(), model_dir)
  config.transfer.objectives = ('cross_entropy',)
  if 'steps' in opts:
    config.train.num_steps = config.train.eval_every = opts['steps']
  return config


def get_sweep(arg: str = ''):
  _, opts = _parse(arg)
  return sweep.product(da_text.method_rows(), sweep.axis('seed', range(opts.get('seeds', 3))))
