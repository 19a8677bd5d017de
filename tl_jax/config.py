"""The base experiment config: every key a run can set, with its default.

Configs in `configs/` start from `base_config()` and change what their experiment needs; the CLI
locks the result, so a typo (`--config.optimizer.lerning_rate`) is an error, not a silent no-op.
Each section belongs to one subsystem (model, data, transfer, optimizer, train, parallel).
"""

from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import traceback
import types

import ml_collections as mlc

from tl_jax import errors


def model_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      # load_pretrained name_or_path: 'minilm', a hub id, or a local HF-layout directory.
      name='minilm',
      # 'pretrained' loads the weights; 'random' builds the same architecture from scratch
      # (the baseline that shows transfer is doing something).
      init='pretrained',
      pooling='mean',  # 'cls' (first token), 'pooler' (BERT pooler / ViT pre-logits), 'mean'
      num_classes=0,  # 0: taken from the target dataset's label count
      dropout_rate=0.1,
      attention_dropout_rate=0.1,
      # How dropout masks are drawn: 'hash' (counter hash; masks ~10x cheaper than threefry on
      # CPU; rate rounded to k/65536) or 'flax' (nn.Dropout, exact rate). Params unaffected.
      dropout_impl='hash',
      dtype='float32',  # compute dtype; 'bfloat16' for mixed precision
      param_dtype='float32',
      image_size=0,  # ViT only; 0 keeps the pre-training size, else position embeddings resample
      # LoRA adapters on the attention projections (train them with freeze_preset='lora').
      lora_rank=0,  # 0 = none
      lora_alpha=8.0,  # the update is scaled by lora_alpha / lora_rank
      lora_targets=('query', 'value'),  # any of query, key, value
      # Read a PyTorch pytorch_model.bin (a pickle) when no safetensors/msgpack file is there;
      # only for files you trust. Hub code (trust_remote_code) is never run.
      allow_pickle=False,
  ))


def data_section() -> mlc.ConfigDict:
  def domain(name: str) -> mlc.ConfigDict:
    return mlc.ConfigDict(dict(
        name=name,  # a TFDS name ('bbc_news', 'digits/rotated', 'glue/sst2'); '' = not used
        train_split='train',
        eval_splits=('validation', 'test'),
        few_shot=0,  # k labelled examples per class for training; 0 = all
        labeled=True,  # False: labels hidden from the loss (unsupervised domain adaptation)
        head='',  # '' = the shared classification head; else a named head of its own
        text_fields=(),  # () = data.text_fields; else this domain's own
    ))

  return mlc.ConfigDict(dict(
      target=domain('bbc_news'),
      source=domain(''),
      data_dir='',  # '' = TFDS default (~/tensorflow_datasets or $TFDS_DATA_DIR)
      text_fields=('title', 'body'),  # one field, or two tokenised as a pair
      max_length=128,
      # Text: pad each batch only to the smallest of these lengths that fits its longest
      # example (max_length is always the last bucket): fewer pad tokens, one compile per
      # bucket (per pair with a source). Increasing ints <= max_length; () = pad to max_length.
      length_buckets=(),
      image_size=0,  # 0 = the model's image size
      image_channels=0,  # 0 = as stored; 3 repeats grayscale for an RGB model
      image_mean=(0.5,),  # normalise (x - mean) / std, x in 0..1; one value or one per channel
      image_std=(0.5,),
      augment=False,  # images: random crop + flip
      augment_flip=True,  # with augment: also flip left-right (False for digits, text in images)
      mixup=0.0,  # mixup alpha; 0 = off (train images; adds label_probs [B, K] to the batch)
      batch_size=32,  # global, per domain
      eval_batch_size=64,
      # -1 = from config.seed, so `seed` alone changes the draw, the order and the init; a
      # value >= 0 pins one (it gives what config.seed=value gives), e.g. vary init, fixed draw.
      shuffle_seed=-1,  # order (and augmentation) of the training streams
      few_shot_seed=-1,  # which k examples per class a few-shot run gets
      worker_count=0,  # >0: grain worker processes (needs a __main__ guard)
      read_threads=2,
      prefetch_batches=4,
      device_prefetch=1,  # train batches put on the devices ahead of the step (0 = on demand)
  ))


def transfer_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      # big_vision-style rules over '/'-joined parameter names: first match wins, every leaf
      # must be covered; group None (or 'frozen') is frozen.
      freeze=(('.*', 'train'),),
      # A preset instead of the rules (BERT and ViT alike): 'all' | 'head_only' | 'lora'
      # (adapters + head) | 'bottom:K' (freeze embeddings + layers 0..K-1) | 'top:K' (train
      # the top K layers and above).
      freeze_preset='',
      # Freezing schedule: '' (fixed rules above), or a ready-made one: 'gradual_unfreeze'
      # (top-down, one more layer every schedule_every steps) or 'chain_thaw';
      # stages=((start_step, rules_or_preset), ...) for a custom one. At a stage change the
      # step recompiles and leaves that keep training keep their optimizer state.
      schedule='',
      schedule_every=0,
      stages=(),
      # Text models whose embeddings + bottom layers stay frozen for the whole run: compute the
      # frozen prefix once per training example and train only the top on those activations
      # (the prefix then runs without dropout; tl_jax/train/prefix_cache.py).
      cache_frozen_prefix=False,
      # λ(step) weighting the source loss: constant | linear (0 -> value over ramp_steps,
      # 0 = the whole run) | dann (value * (2/(1+exp(-gamma p)) - 1), p = step/num_steps) |
      # step (values[i] after the i-th boundary in steps; len(values) = len(steps) + 1).
      lam=mlc.ConfigDict(dict(kind='constant', value=1.0, gamma=10.0, ramp_steps=0, steps=(),
                              values=())),
      objectives=('cross_entropy',),  # names from the objective registry
      l2sp_alpha=0.0,
      l2sp_beta=0.0,
      # One section per method (read only when its objective is in `objectives`), so
      # `--config.transfer.<method>.<key>=...` works from any config file.
      **method_sections(),
  ))


# Adversarial methods train their own params (discriminator / adversarial head, under
# `objectives/<name>/`) at learning_rate x lr_multiplier, with `optimizer` ('' = the model's
# optimizer.name; else adamw | sgd | adafactor, same hyper-parameters). 10 as in the reference
# code (DANN's and CDAN's discriminators train at lr_mult 10); measured on the tiny test (DANN,
# 30 steps): at 1 the discriminator collapses (domain loss 3.0 at the end), at 10 it holds on
# (0.98; chance 0.69).
def _adversary(**keys) -> dict:
  return dict(keys, lr_multiplier=10.0, optimizer='')


def method_sections() -> dict[str, mlc.ConfigDict]:
  """`config.transfer.<method>` defaults: equal to `tl_jax/methods/<method>.py`'s
  default_config() (tests/test_objectives.py checks it). Spelled out here, not imported: the
  config layer imports nothing of tl_jax.methods (and so no jax), so `tl-jax --help` and config
  errors stay instant. Keys are documented in each method's file."""
  sections = dict(
      dann=_adversary(weight=1.0, coeff=1.0, gamma=10.0, hidden=(256, 256)),
      cdan=_adversary(weight=1.0, coeff=1.0, gamma=10.0, hidden=(256, 256), entropy=True,
                      random_dim=0),
      mdd=_adversary(weight=1.0, margin=4.0, coeff=0.1, gamma=10.0, hidden=(256,)),
      coral=dict(weight=1.0, normalize='d2'),
      mmd=dict(weight=1.0, estimator='unbiased', kernel_num=5, kernel_mul=2.0),
      importance=dict(weight=1.0, hidden=(), max_weight=10.0, estimator='classifier',
                      sigma=0.0, kmm_steps=300, kmm_tol=1e-6, kmm_bound=1000.0,
                      kmm_ridge=1e-2, kliep_steps=300, kliep_tol=1e-5, kliep_centres=64,
                      kliep_ridge=1e-3),
      bss=dict(eta=1e-3, k=1, domain='target'),
      distill=dict(domain='target', distance_weight=1.0, angle_weight=2.0, rkd_weight=1.0,
                   hidden_weight=1.0, attention_weight=1.0, layers=(), attention_layers=()),
      multitask=dict(weights=mlc.ConfigDict(dict(target=1.0, source=1.0))),
      penalties=dict(l1=0.0, l2=0.0, exclude=r'.*/(bias|scale)'),
  )
  return {name: mlc.ConfigDict(keys) for name, keys in sections.items()}


def optimizer_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      name='adamw',  # adamw | sgd | adafactor
      learning_rate=5e-5,
      weight_decay=0.01,
      schedule='warmup_cosine',  # constant | warmup_cosine | warmup_linear
      warmup_steps=0,
      grad_clip_norm=1.0,  # 0 = off
      accumulate_steps=1,
      layer_decay=0.0,  # layer-wise LR decay: factor^(depth from top); 0 = off
      lr_multipliers=(),  # ((regex over param names, factor), ...), first match wins
      group_lr_multipliers=(),  # ((group name from the freezing rules, factor), ...)
      b1=0.9,  # adamw
      b2=0.999,
      eps=1e-8,
      momentum=0.9,  # sgd; 0 = plain SGD
      nesterov=False,
  ))


def train_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      num_steps=200,
      log_every=10,
      eval_every=100,
      checkpoint_every=100,
      keep_checkpoints=2,  # latest K; the best by best_metric is kept on top of these
      best_metric='target/validation/accuracy',  # '' = keep only the latest
      best_mode='max',  # 'min' for a loss; also the direction for early stopping
      async_checkpoint=True,  # write in a background thread (arrays are copied first)
      early_stopping_patience=0,  # evals without improvement; 0 = off
      export_hf=True,
      # jax's persistent compilation cache: a rerun, a resumed run or another run of the same
      # shapes (each stage of a freezing schedule, each seed of a sweep) loads its compiled steps
      # instead of compiling. 'auto' = $XDG_CACHE_HOME/tl_jax/jax (~/.cache/...), '' = off,
      # or a directory. JAX_COMPILATION_CACHE_DIR, when set, wins.
      compilation_cache_dir='auto',
  ))


def parallel_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      # shard_map: jit over a device mesh (jax builds pmap on it too); pmap stays selectable.
      mode='shard_map',  # shard_map | pmap
      distributed='auto',  # auto | on | off: jax.distributed.initialize()
  ))


def base_config() -> mlc.ConfigDict:
  config = mlc.ConfigDict()
  config.seed = 0
  config.model = model_section()
  config.data = data_section()
  config.transfer = transfer_section()
  config.optimizer = optimizer_section()
  config.train = train_section()
  config.parallel = parallel_section()
  return config


class ConfigFileError(errors.TlJaxError, ValueError):
  """A config file that cannot be found, run, or that does not return a config."""


def configs_dir() -> pathlib.Path:
  """The example configs: `configs/` of the checkout, shipped inside the package as
  `tl_jax/configs` (a link in the checkout, a copy in a wheel), so an installed tl_jax finds
  its default job wherever it runs."""
  return pathlib.Path(__file__).resolve().parent / 'configs'


def resolve_path(path: str | os.PathLike) -> pathlib.Path:
  """`path` as given, else the shipped config of that name (`configs/x.py` or `x.py`)."""
  given = pathlib.Path(path)
  if given.exists():
    return given
  parts = given.parts[1:] if given.parts[:1] == ('configs',) else given.parts
  shipped = configs_dir().joinpath(*parts) if parts and not given.is_absolute() else None
  if shipped is not None and shipped.exists():
    return shipped
  raise ConfigFileError(f'config file {str(path)!r} not found (configs live in configs/ of the '
                        f'checkout, shipped as {configs_dir()})')


def _user_error(path: str | os.PathLike, error: BaseException, doing: str) -> ConfigFileError:
  """`error` raised by the user's own file, as one line with that file's line number."""
  if isinstance(error, SyntaxError):
    where = f'line {error.lineno}'
    message = f'invalid syntax: {error.msg}'
  else:
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    where = f'line {frames[-1].lineno}' if frames else 'a function it calls'
    message = f'{type(error).__name__}: {error}'
  return ConfigFileError(f'{path}, {where}: {message} (while {doing}; --debug shows the '
                         'traceback)')


def load_module(path: str | os.PathLike, name: str = '_tl_jax_config') -> types.ModuleType:
  """Runs a Python file (a config, a sweep file, an experiment script) and returns it as a module:
  config files are Python by design, so only load files you trust."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # the user's code: say where, in one line
    raise _user_error(path, e, 'running the file') from e
  return module


def call_get_config(module: types.ModuleType, arg: str = '') -> mlc.ConfigDict:
  """`get_config(arg)`, or `get_config()` when there is no arg (the `file.py:arg` convention)."""
  path = getattr(module, '__file__', '<config>')
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigFileError(f'config file {path!r} has no get_config(arg) function')
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except Exception as e:
    if type(e).__module__.startswith('tl_jax.'):  # ours: already one line naming the fix
      raise
    raise _user_error(path, e, f'calling get_config({arg!r})' if arg else 'calling get_config()'
                      ) from e
  if not isinstance(config, mlc.ConfigDict):
    raise ConfigFileError(f'get_config() in {path} returned a {type(config).__name__}, not an '
                          'ml_collections.ConfigDict: start from tl_jax.config.base_config() and '
                          'return it')
  return config


def from_file(path_with_arg: str | os.PathLike) -> mlc.ConfigDict:
  """The config of 'path/to/config.py[:arg]' (a shipped config when the path is not there)."""
  path, _, arg = str(path_with_arg).partition(':')
  return call_get_config(load_module(resolve_path(path)), arg)


# --- value checks ---------------------------------------------------------------------------
# Every value a run reads is checked here, before a model, a dataset or the workdir is touched:
# a bad value is one line naming its key and the valid range (never a jax-internal message at
# step 2, and never a run that trains by gradient ascent because a multiplier was negative).

class ConfigValueError(errors.TlJaxError, ValueError):
  """A config value outside its valid range; the message names the key."""


FLOAT_DTYPES = ('float32', 'bfloat16', 'float16')


def _number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def _finite(x) -> bool:
  return _number(x) and math.isfinite(x)


def _check(ok: bool, key: str, value, want: str) -> None:
  if not ok:
    raise ConfigValueError(f'{key}={value!r}: must be {want}')


def _check_range(config: mlc.ConfigDict, key: str, low: float, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
  value = config
  for part in key.split('.'):
    value = value[part]
  ok = _finite(value) and (not integer or float(value).is_integer())
  ok = ok and (value > low if low_open else value >= low)
  ok = ok and (value < high if high_open else value <= high)
  interval = (f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
              if high != math.inf else f"{'> ' if low_open else '>= '}{low:g}")
  _check(ok, key, value, f"{'an integer' if integer else 'a finite number'} {interval}")


def _check_multipliers(key: str, rules) -> None:
  for rule in rules:
    ok = isinstance(rule, (tuple, list)) and len(rule) == 2
    _check(ok, key, tuple(rules), '((name or regex, factor), ...) pairs')
    _check(_finite(rule[1]) and rule[1] > 0, f'{key} factor for {rule[0]!r}', rule[1],
           'a finite number > 0 (a factor <= 0 would stop or reverse training)')


def _check_length_buckets(buckets, max_length: int, cache_frozen_prefix: bool) -> None:
  values = tuple(buckets) if isinstance(buckets, (tuple, list)) else (buckets,)
  ok = all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in values)
  ok = ok and all(a < b for a, b in zip(values, values[1:]))
  ok = ok and max(values, default=0) <= max_length
  _check(ok, 'data.length_buckets', buckets, '() (off) or strictly increasing positive ints '
         f'<= data.max_length={max_length}, e.g. (32, 64) for max_length=128 (max_length is '
         'always the last bucket)')
  # The cache holds every example's activations at max_length, joined to batches by row.
  if values and cache_frozen_prefix:
    raise ConfigValueError('data.length_buckets and transfer.cache_frozen_prefix=True cannot be '
                           'combined (the cache is computed at max_length); set '
                           '--config.data.length_buckets=() or '
                           '--config.transfer.cache_frozen_prefix=False')


def length_buckets(data_cfg) -> tuple[int, ...]:
  """The lengths text batches are padded to: data.length_buckets then data.max_length; just
  (max_length,) when off."""
  max_length = int(data_cfg.max_length)
  buckets = tuple(int(b) for b in data_cfg.get('length_buckets', ()) if int(b) < max_length)
  return buckets + (max_length,)


def validate(config: mlc.ConfigDict) -> None:
  """Raises ConfigValueError on the first value outside its range; checks values only, the
  parts that need the model or the data (heads, metrics, splits) are checked once built."""
  m, d, t, o, tr = config.model, config.data, config.train, config.optimizer, config.transfer
  _check_range(config, 'seed', 0, integer=True)
  # Model.
  for key in ('dtype', 'param_dtype'):
    _check(m[key] in FLOAT_DTYPES, f'model.{key}', m[key], f'one of {FLOAT_DTYPES}')
  for key in ('dropout_rate', 'attention_dropout_rate'):
    _check_range(config, f'model.{key}', 0, 1, high_open=True)
  _check_range(config, 'model.image_size', 0, integer=True)
  _check_range(config, 'model.lora_rank', 0, integer=True)
  _check_range(config, 'model.lora_alpha', 0, low_open=True)
  # Data.
  _check_range(config, 'data.max_length', 1, integer=True)
  _check_range(config, 'data.device_prefetch', 0, integer=True)
  _check_length_buckets(d.length_buckets, d.max_length, tr.cache_frozen_prefix)
  if not (_finite(d.batch_size) and d.batch_size > 0 and float(d.batch_size).is_integer()):
    raise ConfigValueError(f'data.batch_size={d.batch_size!r} must be positive (global, per '
                           'domain)')
  _check_range(config, 'data.eval_batch_size', 1, integer=True)
  for key in ('image_size', 'image_channels', 'worker_count', 'prefetch_batches'):
    _check_range(config, f'data.{key}', 0, integer=True)
  for key in ('few_shot_seed', 'shuffle_seed'):  # -1 = from config.seed
    _check_range(config, f'data.{key}', -1, integer=True)
  _check_range(config, 'data.read_threads', 1, integer=True)
  _check_range(config, 'data.mixup', 0)
  for key in ('image_mean', 'image_std'):
    values = tuple(d[key]) if isinstance(d[key], (tuple, list)) else (d[key],)
    _check(bool(values) and all(_finite(v) for v in values), f'data.{key}', d[key],
           'one finite number or one per channel')
    if key == 'image_std':  # images are divided by it
      _check(all(v > 0 for v in values), 'data.image_std', d.image_std, '> 0')
  for domain in ('target', 'source'):
    _check_range(config, f'data.{domain}.few_shot', 0, integer=True)
  # Optimizer.
  _check(_finite(o.learning_rate) and o.learning_rate > 0, 'optimizer.learning_rate',
         o.learning_rate, '> 0 and finite')
  _check_range(config, 'optimizer.weight_decay', 0)
  _check_range(config, 'optimizer.warmup_steps', 0, integer=True)
  _check_range(config, 'optimizer.grad_clip_norm', 0)
  _check_range(config, 'optimizer.accumulate_steps', 1, integer=True)
  _check_range(config, 'optimizer.layer_decay', 0, 1)
  _check_range(config, 'optimizer.b1', 0, 1, high_open=True)
  _check_range(config, 'optimizer.b2', 0, 1, high_open=True)
  _check_range(config, 'optimizer.eps', 0, low_open=True)
  _check_range(config, 'optimizer.momentum', 0, 1, high_open=True)
  _check_multipliers('optimizer.lr_multipliers', o.lr_multipliers)
  _check_multipliers('optimizer.group_lr_multipliers', o.group_lr_multipliers)
  # Training.
  _check(_finite(t.num_steps) and t.num_steps > 0, 'train.num_steps', t.num_steps, '> 0')
  for key in ('log_every', 'eval_every', 'checkpoint_every'):
    _check(_finite(t[key]) and t[key] >= 0, f'train.{key}', t[key], '>= 0 (0 = only at the end)')
  _check_range(config, 'train.keep_checkpoints', 1, integer=True)
  _check(t.best_mode in ('max', 'min'), 'train.best_mode', t.best_mode,
         "'max' (accuracy) or 'min' (a loss)")
  _check_range(config, 'train.early_stopping_patience', 0, integer=True)
  # Transfer.
  _check_range(config, 'transfer.schedule_every', 0, integer=True)
  _check_range(config, 'transfer.l2sp_alpha', 0)
  _check_range(config, 'transfer.l2sp_beta', 0)
  _check(_finite(tr.lam.value), 'transfer.lam.value', tr.lam.value, 'a finite number')
  _check(config.parallel.distributed in ('auto', 'on', 'off'), 'parallel.distributed',
         config.parallel.distributed, "one of 'auto', 'on', 'off'")
