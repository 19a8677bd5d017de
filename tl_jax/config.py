"""The base experiment config: every key a run can set, with its default.

Configs in `configs/` start from `base_config()` and change what their experiment needs; the CLI
locks the result, so a typo (`--config.optimizer.lerning_rate`) is an error, not a silent no-op.
Each section belongs to one subsystem (model, data, transfer, optimizer, train, parallel).
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections as mlc


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
      image_size=0,  # 0 = the model's image size
      image_channels=0,  # 0 = as stored; 3 repeats grayscale for an RGB model
      image_mean=(0.5,),  # normalise (x - mean) / std, x in 0..1; one value or one per channel
      image_std=(0.5,),
      augment=False,  # images: random crop + flip
      augment_flip=True,  # with augment: also flip left-right (False for digits, text in images)
      mixup=0.0,  # mixup alpha; 0 = off (train images; adds label_probs [B, K] to the batch)
      batch_size=32,  # global, per domain
      eval_batch_size=64,
      shuffle_seed=0,
      few_shot_seed=0,  # which k examples per class a few-shot run gets
      worker_count=0,  # >0: grain worker processes (needs a __main__ guard)
      read_threads=2,
      prefetch_batches=4,
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
      # λ(step) weighting the source loss: constant | linear (0 -> value over ramp_steps,
      # 0 = the whole run) | dann (value * (2/(1+exp(-gamma p)) - 1), p = step/num_steps) |
      # step (values[i] after the i-th boundary in steps; len(values) = len(steps) + 1).
      lam=mlc.ConfigDict(dict(kind='constant', value=1.0, gamma=10.0, ramp_steps=0, steps=(),
                              values=())),
      objectives=('cross_entropy',),  # names from the objective registry
      l2sp_alpha=0.0,
      l2sp_beta=0.0,
  ))


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
      # Testing aid (tests/test_reliability.py): step k runs on NaN parameters, as if the loss
      # had diverged there, to check that training stops at k and keeps the last good
      # checkpoint. 0 = off.
      inject_nan_at_step=0,
  ))


def parallel_section() -> mlc.ConfigDict:
  return mlc.ConfigDict(dict(
      mode='pmap',  # pmap | shard_map
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


def load_module(path: str | os.PathLike, name: str = '_tl_jax_config') -> types.ModuleType:
  """Runs a Python file (a config, a sweep file, an experiment script) and returns it as a module:
  config files are Python by design, so only load files you trust."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def call_get_config(module: types.ModuleType, arg: str = ''):
  """`get_config(arg)`, or `get_config()` when there is no arg (the `file.py:arg` convention)."""
  return module.get_config(arg) if arg else module.get_config()


def from_file(path_with_arg: str | os.PathLike) -> mlc.ConfigDict:
  """The config of 'path/to/config.py[:arg]'."""
  path, _, arg = str(path_with_arg).partition(':')
  return call_get_config(load_module(path), arg)
