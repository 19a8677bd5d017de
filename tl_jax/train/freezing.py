"""Which parameters train: big_vision-style freezing rules, presets and freezing schedules.

A rule list is an ordered sequence of `(regex, group)` over '/'-joined parameter names
(`encoder/layer/3/attention/self/query/kernel`). The first rule whose regex fullmatches a name
decides its group; group None or 'frozen' freezes the leaf. Every leaf must be covered and every
rule must claim at least one leaf, so a typo is an error instead of a silently frozen layer.

Instead of a rule list, a config may name a preset (BERT and ViT share the layout
`embeddings/`, `encoder/layer/<i>/`, then pooler / final layernorm / `head` or `heads/<name>`):
  'all'        everything trains
  'head_only'  only `head/` or `heads/` trains (and method-owned `objectives/` params)
  'bottom:K'   embeddings and encoder layers 0..K-1 are frozen, the rest trains
  'top:K'      only the top K encoder layers and everything above them train
  'lora'       only the LoRA adapters (`..._lora/`, config.model.lora_rank > 0) and the head(s)

A schedule is a list of stages `(start_step, rules)`. The optimizer label of a trainable leaf
records the stage since which it has trained without a break (its cohort), so a stage change
can keep the optimizer state of every leaf that keeps training (see `optim.migrate_opt_state`).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Union

from absl import logging
import flax.traverse_util
import numpy as np

from tl_jax import errors

FROZEN = 'frozen'
TRAIN = 'train'
PRESETS = ('all', 'head_only', 'lora', 'bottom:K', 'top:K')
SCHEDULES = ('gradual_unfreeze', 'chain_thaw')

Rules = tuple[tuple[str, Union[str, None]], ...]
RuleSpec = Union[str, Sequence[Sequence[Any]]]  # a preset name or a rule list

_LAYER = re.compile(r'encoder/layer/(\d+)/')
# Everything that is neither embeddings nor an encoder layer sits above the last layer:
# BERT pooler, ViT final layernorm, the head(s).
_TOP_BLOCK = r'(?!embeddings/|encoder/layer/\d+/).*'


class FreezingError(errors.TlJaxError, ValueError):
  """A freezing rule, preset or schedule does not fit the parameters."""


# -------------------------------------------------------------------------------------------
# Parameter names.
# -------------------------------------------------------------------------------------------

def flatten(params: Any) -> dict[str, Any]:
  """The params tree as a flat dict keyed by '/'-joined names."""
  return flax.traverse_util.flatten_dict(params, sep='/')


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  return flax.traverse_util.unflatten_dict(dict(flat), sep='/')


def param_names(params: Any) -> list[str]:
  return list(flatten(params))


def num_layers(params: Any) -> int:
  """Encoder depth, from the `encoder/layer/<i>/` names (0 when there are none)."""
  indices = [int(m.group(1)) for n in param_names(params) if (m := _LAYER.match(n))]
  return max(indices) + 1 if indices else 0


def depth_from_top(name: str, n_layers: int) -> int:
  """0 for the top block (pooler, final norm, heads), 1 for the last layer, ..., n+1 for the
  embeddings: the exponent of layer-wise LR decay and the order of gradual unfreezing."""
  if name.startswith('embeddings/'):
    return n_layers + 1
  if m := _LAYER.match(name):
    return n_layers - int(m.group(1))
  return 0


def split_trainable(params: Any, trainable: frozenset[str]) -> tuple[dict, dict]:
  """(trainable, frozen) flat dicts: gradients are taken of the first only."""
  flat = flatten(params)
  return ({n: v for n, v in flat.items() if n in trainable},
          {n: v for n, v in flat.items() if n not in trainable})


def merge(trainable: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict[str, Any]:
  return unflatten({**trainable, **frozen})


# -------------------------------------------------------------------------------------------
# Rules -> groups.
# -------------------------------------------------------------------------------------------

def _compact(names: Sequence[str]) -> str:
  """'embeddings, encoder/layer/{0-3}' for logging: the prefix up to the first layer index."""
  prefixes: dict[str, set[int]] = {}
  for name in names:
    parts = name.split('/')
    idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
    if idx is None:
      key, num = parts[0], None
    else:
      key, num = '/'.join(parts[:idx]) + '/{}', int(parts[idx])
    prefixes.setdefault(key, set())
    if num is not None:
      prefixes[key].add(num)
  out = []
  for key, nums in prefixes.items():
    if not nums:
      out.append(key)
      continue
    s = sorted(nums)
    span = f'{s[0]}-{s[-1]}' if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ','.join(
        map(str, s))
    out.append(key.replace('{}', '{' + span + '}'))
  return ', '.join(out)


def _normalise_group(group: Any) -> str:
  if group is None or group == FROZEN:
    return FROZEN
  if not isinstance(group, str) or not group:
    raise FreezingError(f'freezing group {group!r} must be a non-empty string or None '
                        '(None or "frozen" freezes)')
  return group


def assign_groups(params: Any, rules: RuleSpec, *, log: bool = True,
                  tag: str = '') -> dict[str, str]:
  """Flat name -> group ('frozen' for frozen leaves); first fullmatch wins."""
  rules = resolve_rules(rules, params)
  names = param_names(params)
  compiled = []
  for regex, group in rules:
    try:
      compiled.append((re.compile(regex), _normalise_group(group)))
    except re.error as e:
      raise FreezingError(f'freezing rule {regex!r} is not a valid regex: {e}') from None
  groups: dict[str, str] = {}
  claimed: list[list[str]] = [[] for _ in rules]
  for name in names:
    for i, (pattern, group) in enumerate(compiled):
      if pattern.fullmatch(name):
        groups[name] = group
        claimed[i].append(name)
        break
  uncovered = [n for n in names if n not in groups]
  if uncovered:
    raise FreezingError(
        f'freezing rules leave {len(uncovered)} parameters uncovered: {uncovered[:20]}'
        f'{" ..." if len(uncovered) > 20 else ""}; add a rule for them, e.g. (".*", "train") '
        'last')
  for (regex, _), got in zip(rules, claimed):
    if not got:
      raise FreezingError(
          f'freezing rule {regex!r} matches no parameter (rules are re.fullmatch-ed against '
          f"'/'-joined names such as {names[0]!r}; first match wins, so an earlier rule may "
          'have taken them)')
  if log:
    flat = flatten(params)
    for (regex, group), got in zip(compiled, claimed):
      size = sum(int(np.prod(np.shape(flat[n]))) for n in got)
      logging.info('freezing%s: %r -> %s: %d leaves, %s params: %s', tag, regex.pattern, group,
                   len(got), f'{size:,}', _compact(got))
  return groups


def resolve_rules(spec: RuleSpec, params: Any) -> Rules:
  """A rule list, or a preset name (see the module docstring), as a rule tuple."""
  if isinstance(spec, str):
    return _preset(spec, params)
  try:
    rules = tuple((str(regex), group) for regex, group in spec)
  except (TypeError, ValueError):
    raise FreezingError(f'freezing rules must be a preset {PRESETS} or a sequence of '
                        f'(regex, group) pairs, got {spec!r}') from None
  if not rules:
    raise FreezingError('freezing rules are empty; use ((".*", "train"),) to train everything')
  return rules


def _preset(spec: str, params: Any) -> Rules:
  name, _, arg = spec.partition(':')
  n = num_layers(params)
  if name == 'all' and not arg:
    return ((r'.*', TRAIN),)
  if name == 'head_only' and not arg:
    # Method-owned params (discriminators, adversarial heads) train with the head.
    return ((r'(?:head|heads|objectives)/.*', TRAIN), (r'.*', None))
  if name == 'lora' and not arg:
    if not any(re.search(r'_lora/', n) for n in param_names(params)):
      raise FreezingError("freezing preset 'lora' needs LoRA adapters: set "
                          'config.model.lora_rank > 0')
    return ((r'(?:head|heads|objectives)/.*|.*_lora/.*', TRAIN), (r'.*', None))
  if name in ('bottom', 'top'):
    try:
      k = int(arg)
    except ValueError:
      k = -1
    if not 0 <= k <= n:
      raise FreezingError(f'freezing preset {spec!r}: K must be an integer in [0, {n}] '
                          f'(the model has {n} encoder layers)')
    return freeze_bottom(k if name == 'bottom' else n - k)
  raise FreezingError(f'unknown freezing preset {spec!r}; valid: {", ".join(PRESETS)} or a '
                      'rule list ((regex, group), ...)')


def _layers_regex(layers: Sequence[int]) -> str:
  return r'encoder/layer/(?:' + '|'.join(str(i) for i in sorted(layers)) + r')/.*'


def freeze_bottom(k: int) -> Rules:
  """Freeze the embeddings and encoder layers 0..k-1; everything else trains."""
  frozen = r'embeddings/.*' + ('|' + _layers_regex(range(k)) if k else '')
  return ((frozen, None), (r'.*', TRAIN))


def head_only() -> Rules:
  return _preset('head_only', {})


def train_top(k: int, n_layers: int) -> Rules:
  """Train the top k encoder layers and everything above them."""
  return freeze_bottom(n_layers - k)


def train_blocks(blocks: Sequence[int], n_layers: int) -> Rules:
  """Rules that train exactly the given blocks (depth from top: 0 = pooler/norm/heads, i = layer
  n-i, n+1 = embeddings) and freeze the rest."""
  blocks = set(blocks)
  if blocks >= set(range(n_layers + 2)):
    return ((r'.*', TRAIN),)
  parts = []
  if 0 in blocks:
    parts.append(_TOP_BLOCK)
  layers = [n_layers - b for b in blocks if 1 <= b <= n_layers]
  if layers:
    parts.append(_layers_regex(layers))
  if n_layers + 1 in blocks:
    parts.append(r'embeddings/.*')
  return ('|'.join(f'(?:{p})' for p in parts), TRAIN), (r'.*', None)


# -------------------------------------------------------------------------------------------
# Schedules.
# -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stage:
  start_step: int
  rules: RuleSpec


def gradual_unfreeze(n_layers: int, every: int) -> list[Stage]:
  """Top-down (ULMFiT, Howard & Ruder 2018): the top block first, then one more encoder layer
  every `every` steps, the embeddings last."""
  return [Stage(s * every, train_blocks(range(s + 1), n_layers)) for s in range(n_layers + 2)]


def chain_thaw(n_layers: int, every: int) -> list[Stage]:
  """Chain-thaw (Felbo et al. 2017): the new top block alone, then each block alone from the
  embeddings upwards, then everything together; a stage every `every` steps."""
  order = [0, n_layers + 1] + list(range(n_layers, 0, -1))
  stages = [Stage(i * every, train_blocks([b], n_layers)) for i, b in enumerate(order)]
  return stages + [Stage(len(order) * every, ((r'.*', TRAIN),))]


class FreezeSchedule:
  """Stages of freezing rules, validated against the params up front (errors at start-up)."""

  def __init__(self, stages: Sequence[Stage], params: Any):
    if not stages:
      raise FreezingError('a freezing schedule needs at least one stage')
    starts = [int(s.start_step) for s in stages]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
      raise FreezingError(f'freezing stage start steps must begin at 0 and increase strictly, '
                          f'got {starts}')
    self.starts = starts
    self.names = param_names(params)
    self.n_layers = num_layers(params)
    self.groups = [
        assign_groups(params, s.rules, tag=f' stage {i} (from step {s.start_step})')
        for i, s in enumerate(stages)]

  @property
  def num_stages(self) -> int:
    return len(self.starts)

  def stage_at(self, step: int) -> int:
    """Index of the stage in force at `step` (host side; the step is recompiled per stage)."""
    return bisect.bisect_right(self.starts, int(step)) - 1

  def trainable(self, stage: int) -> frozenset[str]:
    return frozenset(n for n, g in self.groups[stage].items() if g != FROZEN)

  @functools.lru_cache(maxsize=None)
  def labels(self, stage: int) -> dict[str, str]:
    """Flat name -> optimizer label: 'frozen', or 'train_s<j>' where j is the stage since which
    the leaf has trained without a break. Leaves that keep training keep their label (and so
    their optimizer state); a leaf that starts (or restarts) training gets a fresh label."""
    labels = {}
    for name in self.names:
      if self.groups[stage][name] == FROZEN:
        labels[name] = FROZEN
        continue
      j = stage
      while j > 0 and self.groups[j - 1][name] != FROZEN:
        j -= 1
      labels[name] = f'{TRAIN}_s{j}'
    return labels

  def label_tree(self, stage: int) -> dict[str, Any]:
    return unflatten(self.labels(stage))


def schedule_from_config(transfer: Any, params: Any) -> FreezeSchedule:
  """`config.transfer` -> FreezeSchedule: `schedule` (a ready-made one, every `schedule_every`
  steps), else `stages` ((start_step, rules_or_preset), ...), else `freeze_preset` or the fixed
  `freeze` rules."""
  preset = transfer.get('freeze_preset')
  if preset and (transfer.schedule or transfer.stages):
    which = 'schedule' if transfer.schedule else 'stages'
    raise FreezingError(f'transfer.freeze_preset={preset!r} would be ignored: transfer.{which} '
                        f'decides the freezing in this config; clear it (--config.transfer.'
                        f"{which}={chr(39) * 2 if which == 'schedule' else '()'}) or drop the "
                        'preset')
  if transfer.schedule:
    if transfer.stages:
      raise FreezingError('set either transfer.schedule or transfer.stages, not both')
    builders = {'gradual_unfreeze': gradual_unfreeze, 'chain_thaw': chain_thaw}
    if transfer.schedule not in builders:
      raise FreezingError(f'unknown freezing schedule {transfer.schedule!r}; valid: '
                          f'{", ".join(SCHEDULES)} (or transfer.stages for a custom one)')
    if transfer.schedule_every <= 0:
      raise FreezingError(f'transfer.schedule={transfer.schedule!r} needs '
                          'transfer.schedule_every > 0 (steps per stage)')
    n = num_layers(params)
    if n == 0:
      raise FreezingError(f'transfer.schedule={transfer.schedule!r} needs encoder/layer/<i>/ '
                          'parameters; this model has none')
    stages = builders[transfer.schedule](n, transfer.schedule_every)
  elif transfer.stages:
    try:
      stages = [Stage(int(start), rules) for start, rules in transfer.stages]
    except (TypeError, ValueError):
      raise FreezingError('transfer.stages must be ((start_step, rules_or_preset), ...), got '
                          f'{transfer.stages!r}') from None
  else:
    stages = [Stage(0, transfer.get('freeze_preset') or transfer.freeze)]
  return FreezeSchedule(stages, params)
