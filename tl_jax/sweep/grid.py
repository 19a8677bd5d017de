"""Declaring a sweep and expanding it: override dicts → named runs with resolved configs."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections as mlc

from tl_jax import config as config_lib
from tl_jax import config_overrides
from tl_jax import errors

NAME_KEY = 'name'  # an override dict's label for its run (not a config key)
SEED_KEY = 'seed'
Overrides = dict[str, Any]


class SweepError(errors.TlJaxError, ValueError):
  """A sweep that cannot run as declared; the message names the fix."""


# -------------------------------------------------------------------------------------------
# Declaring sweeps.
# -------------------------------------------------------------------------------------------

def axis(key: str, values: Iterable[Any]) -> list[Overrides]:
  """One override dict per value of one dotted key: axis('seed', [0, 1])."""
  return [{key: v} for v in values]


def product(*axes: Sequence[Overrides]) -> list[Overrides]:
  """The grid: every combination of one dict from each axis, merged (later axes vary fastest).
  Names ('name' keys) of the combined dicts are joined with '-'."""
  out = []
  for combo in itertools.product(*axes):
    merged: Overrides = {}
    names = []
    for part in combo:
      names += [str(part[NAME_KEY])] if NAME_KEY in part else []
      merged.update({k: v for k, v in part.items() if k != NAME_KEY})
    if names:
      merged = {NAME_KEY: '-'.join(names), **merged}
    out.append(merged)
  return out


def chain(*lists: Sequence[Overrides]) -> list[Overrides]:
  """Runs of several sweeps one after another."""
  return [dict(d) for lst in lists for d in lst]


# -------------------------------------------------------------------------------------------
# Runs: names and resolved configs.
# -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
  index: int  # position in the expanded sweep (what --only=K/N shards on)
  name: str  # directory name under SWEEPDIR
  group: str  # the name without the seed: runs of one group are aggregated
  overrides: Overrides
  config: mlc.ConfigDict


def slug(value: Any) -> str:
  """A value as a file-name-safe piece of a run name (0.001 -> '0.001', 'top:2' -> 'top-2')."""
  if isinstance(value, float):
    text = f'{value:g}'
  elif isinstance(value, (tuple, list)):
    text = '_'.join(slug(v) for v in value) or 'none'
  else:
    text = str(value)
  return re.sub(r'[^A-Za-z0-9._+-]+', '-', text).strip('-') or 'none'


_slug = slug  # the name experiments/ used before it was public


def run_name(overrides: Mapping[str, Any], *, with_seed: bool = True) -> str:
  """'name' (if given) else 'key=value' of each override by the key's last part, ',' joined;
  e.g. {'transfer.freeze_preset': 'top:2', 'seed': 1} -> 'freeze_preset=top-2,seed=1'."""
  parts = []
  if NAME_KEY in overrides:
    parts.append(slug(overrides[NAME_KEY]))
  else:
    parts += [f'{k.split(".")[-1]}={slug(v)}' for k, v in overrides.items()
              if k not in (NAME_KEY, SEED_KEY)]
  if with_seed and SEED_KEY in overrides:
    parts.append(f'seed={overrides[SEED_KEY]}')
  return ','.join(parts) or 'base'


def apply_overrides(config: mlc.ConfigDict, overrides: Mapping[str, Any]) -> mlc.ConfigDict:
  """A copy of `config` with dotted keys set ('name' is a label, skipped); an unknown key names
  the closest valid one. The parser is the CLI's (tl_jax.config_overrides)."""
  try:
    return config_overrides.apply(config, {k: v for k, v in overrides.items() if k != NAME_KEY})
  except config_overrides.OverrideError as e:
    raise SweepError(f'sweep {e}') from None


def expand(base: mlc.ConfigDict, sweep: Sequence[Mapping[str, Any]]) -> list[Run]:
  """Resolved runs of a sweep; every override is checked before anything runs."""
  if not sweep:
    raise SweepError('the sweep is empty: get_sweep() returned no override dicts')
  runs, seen = [], {}
  for i, overrides in enumerate(sweep):
    overrides = dict(overrides)
    name = run_name(overrides)
    if name in seen:
      raise SweepError(f'runs {seen[name]} and {i} of the sweep are both named {name!r}; give '
                       "them distinct 'name' entries")
    seen[name] = i
    runs.append(Run(i, name, run_name(overrides, with_seed=False), overrides,
                    apply_overrides(base, overrides)))
  return runs


def shard(runs: Sequence[Run], only: str | None) -> list[Run]:
  """--only=K/N: the runs with index ≡ K (mod N); None or '' = all."""
  if not only:
    return list(runs)
  match = re.fullmatch(r'(\d+)/(\d+)', only)
  if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
    raise SweepError(f'--only={only!r}: expected K/N with 0 <= K < N (this host takes the runs '
                     'i ≡ K mod N), e.g. --only=0/4')
  k, n = int(match.group(1)), int(match.group(2))
  return [r for r in runs if r.index % n == k]


def table_settings(path_with_arg: str) -> dict[str, Any]:
  """How the sweep's table.md is laid out, from optional names in the sweep file: COLUMNS (the
  metrics and costs shown; the first is the one rows are compared on) and BASELINE (the group
  every other row is compared with, seed by seed, e.g. 'source_only')."""
  module = config_lib.load_module(path_with_arg.partition(':')[0], '_tl_jax_sweep_config')
  settings = {'baseline': getattr(module, 'BASELINE', None)}
  if hasattr(module, 'COLUMNS'):
    settings['columns'] = tuple(module.COLUMNS)
  return settings


def load_sweep_file(path_with_arg: str) -> tuple[mlc.ConfigDict, list[Overrides]]:
  """(base config, override dicts) from a sweep file with get_config() and get_sweep()."""
  path, _, arg = path_with_arg.partition(':')
  if not os.path.exists(path):
    raise FileNotFoundError(f'sweep config {path!r} not found (sweeps live in configs/sweeps/)')
  module = config_lib.load_module(path, '_tl_jax_sweep_config')
  for fn in ('get_config', 'get_sweep'):
    if not hasattr(module, fn):
      raise SweepError(f'sweep config {path!r} has no {fn}(arg=None) function')
  return (config_lib.call_get_config(module, arg),
          list(module.get_sweep(arg) if arg else module.get_sweep()))
