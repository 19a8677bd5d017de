"""load_pretrained / save_pretrained / load_tokenizer: HF-layout checkpoints <-> module + params."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

from tl_jax import errors
from tl_jax.models import convert
from tl_jax.models import export as export_lib
from tl_jax.models import hf_config
from tl_jax.models import lora as lora_lib
from tl_jax.models import resolve as resolve_lib
from tl_jax.models.resolve import CheckpointNotFoundError
from tl_jax.models.vit import resample_position_embeddings

INITS = ('pretrained', 'random')
_POSEMB = ('embeddings', 'position_embeddings')


class CheckpointMismatchError(errors.TlJaxError, ValueError):
  """Checkpoint keys or shapes do not fit the requested architecture."""


class CorruptWeightsError(errors.TlJaxError, ValueError):
  """A weights file that cannot be parsed (truncated, corrupted, not what its name says)."""


class RemoteCodeError(errors.TlJaxError, ValueError):
  """A checkpoint that needs its own Python code to load (refused: never run)."""


class PickleNotAllowedError(errors.TlJaxError, ValueError):
  """Only a pickled checkpoint is there, and loading pickles was not asked for."""


class VocabularyMismatchError(errors.TlJaxError, ValueError):
  """A tokenizer with more tokens than the model's embedding table has rows."""


def check_vocab(vocab_size: int, tokenizer, source: str) -> None:
  """Token ids >= vocab_size index past the embedding table: jnp.take fills NaN, so training
  fails at step 1 and apply() returns NaN logits. Refuse when model and tokenizer meet."""
  if len(tokenizer) > vocab_size:
    raise VocabularyMismatchError(
        f"{source}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
        f'{vocab_size}, so ids >= {vocab_size} would give NaN; use the tokenizer saved with this '
        f'checkpoint or a model whose vocab_size >= {len(tokenizer)}')


@dataclasses.dataclass
class LoadReport:
  """What load_pretrained did beyond copying weights one to one."""
  source: str
  weights: str | None
  model_type: str
  init: str
  new_keys: list[str] = dataclasses.field(default_factory=list)  # freshly initialised (new heads)
  dropped_keys: list[str] = dataclasses.field(default_factory=list)  # in checkpoint, not used
  resampled_keys: list[str] = dataclasses.field(default_factory=list)  # ViT position embeddings


def _name(key: tuple[str, ...]) -> str:
  return '/'.join(key)


def _listing(keys, limit: int = 20) -> str:
  names = sorted(_name(k) for k in keys)
  more = f' ... and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


# --- reading weights --------------------------------------------------------------------------

def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  if path.name.endswith('.index.json'):
    state = {}
    for shard in sorted(set(json.loads(path.read_text())['weight_map'].values())):
      state.update(load_file(path.parent / shard))
    return state
  return load_file(path)


def _read_torch_bin(path: Path, allow_pickle: bool) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise CheckpointNotFoundError(
        f'{path} is a PyTorch pickle and torch is not installed. Install torch (pip install '
        'tl_jax[torch]), or convert it once to model.safetensors.') from e
  # Even torch's restricted unpickler (weights_only=True) has had bypasses: pickles are read
  # only when the user says they trust the file.
  if not allow_pickle:
    raise PickleNotAllowedError(
        f'{path} is a pickle (PyTorch .bin) and pickles are not loaded unless asked: convert it '
        'once to model.safetensors, or if you trust the file pass allow_pickle=True '
        '(--config.model.allow_pickle=True)')
  state = torch.load(path, map_location='cpu', weights_only=True)
  # bf16 has no numpy twin in torch: go through fp32 (exact), cast to param_dtype later.
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in state.items()}


def read_checkpoint(path: Path, allow_pickle: bool = False) -> convert.Flat:
  """Any supported weights file -> flat dict in our names (foreign heads still included).
  A PyTorch .bin (a pickle) is read only with allow_pickle=True."""
  try:
    return _read_checkpoint(path, allow_pickle)
  except (CheckpointNotFoundError, CheckpointMismatchError, PickleNotAllowedError):
    raise
  except Exception as e:  # safetensors/msgpack/torch each raise their own types
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise CorruptWeightsError(
        f'{path} cannot be read ({reason}): the file is truncated or corrupted; download or '
        'export it again') from e


def _read_checkpoint(path: Path, allow_pickle: bool) -> convert.Flat:
  if path.name.endswith(('.safetensors', '.safetensors.index.json')):
    return convert.torch_to_flax(_read_safetensors(path))
  if path.suffix == '.bin':
    return convert.torch_to_flax(_read_torch_bin(path, allow_pickle))
  if path.suffix == '.msgpack':
    tree = flax.serialization.msgpack_restore(path.read_bytes())
    return convert.strip_prefix(
        {k: np.asarray(v) for k, v in flax.traverse_util.flatten_dict(tree).items()})
  raise CheckpointNotFoundError(f'{path}: unsupported weights file type.')


@functools.lru_cache(maxsize=8)
def _jitted_init(module):
  """One compiled init per architecture (modules are hashable by their config)."""
  return jax.jit(module.init)


# --- load ---------------------------------------------------------------------------------------

def load_pretrained(
    name_or_path: str | os.PathLike, *,
    init: str = 'pretrained',
    num_classes: int | None = None,
    heads: Mapping[str, int] | None = None,
    pooling: str | None = None,
    dropout_rate: float | None = None,
    attention_dropout_rate: float | None = None,
    dropout_impl: str | None = None,
    dtype: Any = None,
    param_dtype: Any = None,
    image_size: int | None = None,
    output_hidden_states: bool | None = None,
    output_attentions: bool | None = None,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    lora_targets: tuple[str, ...] | None = None,
    seed: int = 0,
    with_report: bool = False,
    allow_pickle: bool = False,
):
  """Returns (module, params) [+ LoadReport when with_report].

  name_or_path: 'minilm', a hub id, a local HF-layout dir, or a ViT `.npz`. None for an option
  keeps the checkpoint's value. Giving num_classes or heads (even 0 / {}) replaces the
  checkpoint's head(s) by fresh ones (reported in new_keys / dropped_keys); image_size (ViT, 0 =
  keep) resamples the position embeddings. init='random' builds the same architecture afresh.
  allow_pickle: read a PyTorch `pytorch_model.bin` (a pickle; refused by default).
  """
  if init not in INITS:
    raise ValueError(f'init={init!r}; choose one of {INITS}.')
  resolved = resolve_lib.resolve(name_or_path, need_weights=(init == 'pretrained'))
  weights: convert.Flat = {}
  if resolved.hf_config is None:  # a .npz: architecture comes from the arrays
    model_type = 'vit'
    weights, kwargs = convert.npz_to_flax(dict(np.load(resolved.weights)))
  else:
    model_type, kwargs = hf_config.config_kwargs_from_hf(
        resolved.hf_config, f'{resolved.directory}/config.json')
    if init == 'pretrained':
      weights = export_lib.from_export(read_checkpoint(resolved.weights, allow_pickle), kwargs,
                                       model_type)
  if init == 'random':
    weights = {}
  weights, foreign = convert.split_foreign(weights)

  if weights and 'add_pooler' not in kwargs:
    kwargs['add_pooler'] = any(k[0] == 'pooler' for k in weights)
  if 'pooling' not in kwargs:
    kwargs['pooling'] = ('pooler' if kwargs.get('add_pooler', True)
                         else 'cls' if kwargs.get('class_token', True) else 'mean')
  new_head = num_classes is not None or heads is not None
  if new_head:
    kwargs['num_classes'] = num_classes or 0
    kwargs['heads'] = heads or ()
  overrides = dict(pooling=pooling, dropout_rate=dropout_rate,
                   attention_dropout_rate=attention_dropout_rate, dropout_impl=dropout_impl,
                   dtype=dtype,
                   param_dtype=param_dtype, output_hidden_states=output_hidden_states,
                   output_attentions=output_attentions, lora_rank=lora_rank,
                   lora_alpha=lora_alpha, lora_targets=lora_targets,
                   image_size=image_size or None)
  if image_size and model_type != 'vit':
    raise ValueError('image_size applies to ViT only.')
  kwargs.update({k: v for k, v in overrides.items() if v is not None})
  for key in ('dtype', 'param_dtype'):
    if key in kwargs:
      kwargs[key] = jnp.dtype(kwargs[key]).name
  module = hf_config.build_module(model_type, **kwargs)
  cfg = module.config
  report = LoadReport(str(name_or_path), str(resolved.weights) if resolved.weights else None,
                      model_type, init)
  rng = jax.random.key(seed)

  if init == 'random':
    params = _jitted_init(module)(rng, **module.dummy_inputs())['params']
    logging.info('Initialised %s (%s) at random, seed %d.', model_type, name_or_path, seed)
    return (module, params, report) if with_report else (module, params)

  expected = flax.traverse_util.flatten_dict(
      jax.eval_shape(module.init, rng, **module.dummy_inputs())['params'])
  dropped = list(foreign)
  if new_head:
    dropped += [k for k in weights if k[0] in convert.HEAD_ROOTS]
  weights = {k: v for k, v in weights.items() if k not in dropped}
  if dropped:
    report.dropped_keys = sorted(map(_name, dropped))
    logging.info('%s: dropped the checkpoint head(s) not used by this model: %s',
                 name_or_path, _listing(dropped))

  if model_type == 'vit' and _POSEMB in weights:
    old, want = weights[_POSEMB].shape, expected[_POSEMB].shape
    if old != want and old[1] != want[1]:
      weights[_POSEMB] = np.asarray(resample_position_embeddings(
          weights[_POSEMB], (cfg.grid_size, cfg.grid_size), cfg.num_prefix_tokens))
      report.resampled_keys = [_name(_POSEMB)]
      logging.info('Resampled ViT position embeddings %s -> %s for image_size %d.', old,
                   weights[_POSEMB].shape, cfg.image_size)

  missing = set(expected) - set(weights)
  new_keys = {k for k in missing if k[0] in convert.HEAD_ROOTS or lora_lib.is_adapter(k)}
  problems = []
  if missing - new_keys:
    problems.append(f'missing in the checkpoint: {_listing(missing - new_keys)}')
  if unexpected := set(weights) - set(expected):
    problems.append(f'unexpected in the checkpoint: {_listing(unexpected)}')
  if mismatched := {k for k in set(weights) & set(expected)
                    if tuple(weights[k].shape) != tuple(expected[k].shape)}:
    problems.append('shape mismatch: ' + '; '.join(
        f'{_name(k)} checkpoint {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}'
        for k in sorted(mismatched)))
  if problems:
    raise CheckpointMismatchError(
        f'{name_or_path} ({resolved.weights}) does not fit the {model_type} config: '
        + ' | '.join(problems))

  for i, key in enumerate(sorted(new_keys)):
    shape, leaf_dtype = expected[key].shape, expected[key].dtype
    if lora_lib.is_adapter(key):
      weights[key] = np.asarray(lora_lib.initial_value(key, jax.random.fold_in(rng, i), shape,
                                                       leaf_dtype))
    elif key[-1] == 'kernel':
      init_fn = jax.nn.initializers.normal(cfg.initializer_range)
      weights[key] = np.asarray(init_fn(jax.random.fold_in(rng, i), shape, leaf_dtype))
    else:
      weights[key] = np.zeros(shape, leaf_dtype)
  if new_keys:
    report.new_keys = sorted(map(_name, new_keys))
    logging.info('%s: new head/adapter parameters, initialised with seed %d: %s', name_or_path,
                 seed, _listing(new_keys))

  params = flax.traverse_util.unflatten_dict(
      {k: jnp.asarray(v, dtype=expected[k].dtype) for k, v in weights.items()})
  return (module, params, report) if with_report else (module, params)


# --- save ---------------------------------------------------------------------------------------

def save_pretrained(module, params, directory: str | os.PathLike,
                    tokenizer_from: str | os.PathLike | None = None, *,
                    class_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                    max_length: int | None = None) -> Path:
  """Writes HF layout: config.json (+ our options under "tl_jax") and model.safetensors in
  PyTorch layout, in the export layout of the model (tl_jax/models/export.py): one head on a
  pooling transformers has is a Bert/ViT*For*Classification (`bert.`/`vit.` prefixes,
  `classifier.*`, id2label from class_names); other heads stay `head.*` / `heads.<name>.*`
  beside a sentence-transformers layout (BERT) or labels.json. load_pretrained(directory)
  restores all, bitwise. LoRA adapters are merged into their kernels first, so the export is a
  plain checkpoint. class_names: one list (one head) or {head name: list}; max_length: the
  token length trained on (the tokenizer's model_max_length, sentence-transformers' max).
  """
  from safetensors.numpy import save_file
  if module.config.lora_rank:
    params = lora_lib.merge(params, module.config)
    module = module.clone(config=dataclasses.replace(module.config, lora_rank=0))
  cfg = module.config
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(jax.device_get(params)))
  state = convert.flax_to_torch(flat)
  layout = export_lib.layout_of(module.model_type, cfg)
  config = hf_config.config_to_hf(module.model_type, cfg)
  out_state, config = export_lib.to_layout(layout, module.model_type, cfg, state, config,
                                           class_names)
  save_file(out_state, directory / 'model.safetensors', metadata={'format': 'pt'})
  (directory / 'config.json').write_text(json.dumps(config, indent=2) + '\n')
  if layout.kind in (export_lib.SENTENCE_TRANSFORMERS, export_lib.BACKBONE_HEAD):
    export_lib.write_labels(directory, cfg, class_names)
  if layout.kind == export_lib.SENTENCE_TRANSFORMERS:
    export_lib.write_sentence_transformers(directory, cfg, state, max_length)
  if tokenizer_from is not None:
    tokenizer = load_tokenizer(tokenizer_from)
    if max_length:  # pipeline(..., truncation=True) then cuts where training did
      tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(directory))
  return directory


# --- tokenizer ----------------------------------------------------------------------------------

def load_tokenizer(name_or_path: str | os.PathLike):
  """transformers AutoTokenizer from the resolved local directory (v4 and v5 alike)."""
  from transformers import AutoTokenizer
  directory = resolve_lib.tokenizer_dir(name_or_path)
  try:  # trust_remote_code=False: never run a repository's code (nor ask on a terminal)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
  except ValueError as e:
    if 'trust_remote_code' not in str(e):
      raise
    raise RemoteCodeError(
        f'{directory} wants custom code to build its tokenizer (auto_map in '
        'tokenizer_config.json); tl_jax never runs code from a model repository: use a '
        'checkpoint with a standard tokenizer (e.g. BertTokenizerFast)') from None
  hf = resolve_lib.read_config_json(directory / 'config.json') if (
      directory / 'config.json').is_file() else {}
  if hf.get('model_type') == 'bert' and isinstance(hf.get('vocab_size'), int):
    check_vocab(hf['vocab_size'], tokenizer, str(name_or_path))
  return tokenizer
