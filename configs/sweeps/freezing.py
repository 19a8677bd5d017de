"""Freezing-schedule benchmark sweeps: schedules × seeds on one transfer pair.

  arg 'minilm'      MiniLM-L6 (packaged) -> BBC News, 8 labelled articles per class, 64 tokens
  arg 'vit=DIR'     a ViT in HF layout (DIR) -> digits/rotated, 10 images per class
                    (experiments/freezing_benchmark.py pre-trains a small one on digits/original)
  ',steps=N,seeds=K' after either: a shorter run / fewer seeds (stage lengths follow N)

Run:   tl-jax sweep --config=configs/sweeps/freezing.py:minilm --sweepdir=runs/fz_minilm
       python experiments/freezing_benchmark.py        (both pairs, plus plots)
Schedules: full fine-tune, head only, top-1 and top-half, gradual unfreezing (ULMFiT),
chain-thaw, layer-wise LR decay 0.7; the same learning rate and steps for all.
Expected: see the README table made by experiments/freezing_benchmark.py.
"""

from tl_jax import sweep
from tl_jax.config import base_config
from tl_jax.configs import common


def _common(config, num_steps: int):
  config.train.num_steps = num_steps
  config.train.log_every = 1  # every step's time: the median step time needs them
  config.train.eval_every = num_steps // 2
  config.train.checkpoint_every = num_steps // 2
  config.train.keep_checkpoints = 1
  config.train.best_metric = ''
  config.train.export_hf = False
  config.data.target.eval_splits = ('test',)
  config.optimizer.schedule = 'warmup_cosine'
  config.optimizer.warmup_steps = 0
  return config


def _parse(arg: str) -> tuple[str, dict[str, int]]:
  return common.parse_options(arg, ('steps', 'seeds'), where='configs/sweeps/freezing.py')


def get_config(arg: str = 'minilm'):
  return get_pair_config(*_parse(arg))


def get_pair_config(arg: str, opts: dict[str, int]):
  config = base_config()
  if arg == 'minilm':
    config.model.name = 'minilm'
    config.data.target.name = 'bbc_news'
    config.data.target.few_shot = 8
    config.data.max_length = 64
    config.data.batch_size = 16
    config.data.eval_batch_size = 64
    config.optimizer.learning_rate = 2e-4
    return _common(config, num_steps=opts.get('steps', 30))
  if arg.startswith('vit='):
    config.model.name = arg[len('vit='):]
    config.model.pooling = 'cls'
    config.data.target.name = 'digits/rotated'
    config.data.target.few_shot = 10
    config.data.batch_size = 32
    config.data.eval_batch_size = 256
    config.optimizer.learning_rate = 1e-3
    return _common(config, num_steps=opts.get('steps', 60))
  raise ValueError(f"configs/sweeps/freezing.py: arg {arg!r}; use 'minilm' or 'vit=DIR'")


def schedules(num_layers: int, num_steps: int) -> list[dict]:
  """One override dict per freezing schedule; stage lengths fit the run's steps."""
  # gradual unfreezing has num_layers + 2 stages, chain-thaw num_layers + 3 (the last: all)
  every_gradual = max(1, num_steps // (num_layers + 3))
  every_chain = max(1, num_steps // (num_layers + 4))
  return [
      {'name': 'full', 'transfer.freeze_preset': 'all'},
      {'name': 'head_only', 'transfer.freeze_preset': 'head_only'},
      {'name': 'top1', 'transfer.freeze_preset': 'top:1'},
      {'name': f'top{num_layers // 2}', 'transfer.freeze_preset': f'top:{num_layers // 2}'},
      {'name': 'gradual_unfreeze', 'transfer.schedule': 'gradual_unfreeze',
       'transfer.schedule_every': every_gradual},
      {'name': 'chain_thaw', 'transfer.schedule': 'chain_thaw',
       'transfer.schedule_every': every_chain},
      {'name': 'layer_decay0.7', 'transfer.freeze_preset': 'all', 'optimizer.layer_decay': 0.7},
  ]


def get_sweep(arg: str = 'minilm'):
  pair, opts = _parse(arg)
  config = get_pair_config(pair, opts)
  num_layers = 6 if pair == 'minilm' else _vit_layers(config.model.name)
  seeds = [{'seed': s, 'data.few_shot_seed': s} for s in range(opts.get('seeds', 2))]
  return sweep.product(schedules(num_layers, config.train.num_steps), seeds)


def _vit_layers(directory: str) -> int:
  import json, pathlib  # pylint: disable=g-import-not-at-top,multiple-imports
  path = pathlib.Path(directory) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'{path} not found: vit=DIR must be a ViT in HF layout (run '
                            'experiments/freezing_benchmark.py to pre-train one)')
  return int(json.loads(path.read_text())['num_hidden_layers'])
