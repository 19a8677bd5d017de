"""The optimizer: optax by name, LR schedules, layer-wise LR decay, multipliers, clipping.

Layout of the transformation (the same at every freezing stage, so state paths stay stable):

  clip_by_global_norm                      (when optimizer.grad_clip_norm > 0)
  multi_transform({'frozen': set_to_zero,  no state for frozen leaves
                   'train_s<j>': base, ...})  one base optimizer per cohort (see freezing.labels)
  scale_by_learning_rate(schedule)         one global count: the schedule never restarts
  per-leaf LR scale                        layer_decay^depth × lr_multipliers × group multipliers
                                           × transfer.<method>.lr_multiplier (objectives/<m>/)

Method-owned params (`objectives/<name>/...`, a discriminator or adversarial head) take the LR
factor `config.transfer.<name>.lr_multiplier`, and with `transfer.<name>.optimizer` set their
own base optimizer (a label '<cohort>:<name>' of their own in the multi_transform; unset, the
state layout is the same as without the setting, so old checkpoints resume).

`base` (scale_by_adam + decoupled weight decay, momentum SGD, or Adafactor) works at unit LR, so
a cohort that starts at a later stage gets a fresh Adam count (correct bias correction) while the
LR schedule follows the global step. Gradient accumulation is done inside the step (lax.scan
over micro-batches), so it needs no optimizer state either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import optax

from tl_jax import errors
from tl_jax.train import freezing
from tl_jax.methods import objectives

OPTIMIZERS = ('adamw', 'sgd', 'adafactor')
SCHEDULES = ('constant', 'warmup_cosine', 'warmup_linear')


class OptimizerConfigError(errors.TlJaxError, ValueError):
  """An optimizer, schedule or multiplier setting that cannot be built."""


def learning_rate_schedule(opt: Any, total_steps: int) -> optax.Schedule:
  """optimizer.schedule over `total_steps`, with `warmup_steps` of linear warmup from 0."""
  lr, warmup = float(opt.learning_rate), int(opt.warmup_steps)
  if warmup < 0 or (opt.schedule != 'constant' and warmup >= total_steps):
    raise OptimizerConfigError(f'optimizer.warmup_steps={warmup} must be in [0, num_steps='
                               f'{total_steps})')
  warm = [optax.linear_schedule(0.0, lr, warmup)] if warmup else []
  if opt.schedule == 'constant':
    rest = optax.constant_schedule(lr)
  elif opt.schedule == 'warmup_cosine':
    rest = optax.cosine_decay_schedule(lr, total_steps - warmup)
  elif opt.schedule == 'warmup_linear':
    rest = optax.linear_schedule(lr, 0.0, total_steps - warmup)
  else:
    raise OptimizerConfigError(f'unknown LR schedule {opt.schedule!r} (optimizer.schedule); '
                               f'valid: {", ".join(SCHEDULES)}')
  return optax.join_schedules(warm + [rest], [warmup]) if warm else rest


def base_optimizer(opt: Any, name: str = '') -> optax.GradientTransformation:
  """The named optimizer (`name`, else opt.name) at unit learning rate, returning an ascent
  direction (no sign flip)."""
  wd = float(opt.weight_decay)
  decay = [optax.add_decayed_weights(wd)] if wd else []
  name = name or opt.name
  if name == 'adamw':
    return optax.chain(optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps), *decay)
  if name == 'sgd':
    momentum = [optax.trace(decay=opt.momentum, nesterov=opt.nesterov)] if opt.momentum else []
    return optax.chain(*decay, *momentum) if decay or momentum else optax.identity()
  if name == 'adafactor':
    # optax.adafactor's defaults, with decoupled weight decay scaled by the LR like AdamW.
    return optax.chain(optax.scale_by_factored_rms(), optax.clip_by_block_rms(1.0),
                       optax.scale_by_param_block_rms(), *decay)
  raise OptimizerConfigError(f'unknown optimizer {name!r} (optimizer.name); valid: '
                             f'{", ".join(OPTIMIZERS)}')


# -------------------------------------------------------------------------------------------
# Method-owned params: their own LR factor and optimizer.
# -------------------------------------------------------------------------------------------

def method_settings(transfer: Any, params: Any) -> dict[str, tuple[float, str]]:
  """{method: (lr_multiplier, optimizer name or '')} for each method owning params under
  `objectives/` whose `transfer.<method>` section sets them (others: (1.0, ''))."""
  owned = params.get(objectives.PARAMS_KEY, {}) if isinstance(params, Mapping) else {}
  out = {}
  for name in owned:
    cfg = transfer.get(name)
    factor = cfg.get('lr_multiplier', 1.0) if cfg is not None else 1.0
    optimizer = cfg.get('optimizer', '') if cfg is not None else ''
    if (isinstance(factor, bool) or not isinstance(factor, (int, float))
        or not 0 < factor < float('inf')):
      raise OptimizerConfigError(f'transfer.{name}.lr_multiplier={factor!r} must be a finite '
                                 'number > 0 (the LR factor of its own params)')
    if optimizer not in ('',) + OPTIMIZERS:
      raise OptimizerConfigError(f"transfer.{name}.optimizer={optimizer!r}: must be '' (the "
                                 f'model\'s optimizer.name) or one of {", ".join(OPTIMIZERS)}')
    out[name] = (float(factor), optimizer)
  return out


def _owner(name: str) -> str | None:
  """The method owning leaf `name` ('objectives/<method>/...'), else None."""
  parts = name.split('/')
  return parts[1] if len(parts) > 2 and parts[0] == objectives.PARAMS_KEY else None


def _match_multipliers(rules: Any, names: list[str], what: str) -> dict[str, float]:
  """First-match-wins (regex, factor) rules -> name -> factor; a rule matching nothing errors."""
  out: dict[str, float] = {}
  for regex, factor in rules:
    try:
      pattern = re.compile(regex)
    except re.error as e:
      raise OptimizerConfigError(f'{what} rule {regex!r} is not a valid regex: {e}') from None
    hit = [n for n in names if n not in out and pattern.fullmatch(n)]
    if not hit:
      raise OptimizerConfigError(f"{what} rule {regex!r} matches nothing (re.fullmatch over "
                                 f"{'group names' if 'group' in what else 'parameter names'} "
                                 f'such as {names[0]!r}; first match wins)')
    out.update({n: float(factor) for n in hit})
  return out


def lr_scales(opt: Any, params: Any, groups: Mapping[str, str],
              methods: Mapping[str, tuple[float, str]] | None = None) -> dict[str, float]:
  """Flat name -> LR factor: layer_decay^(depth from top) × lr_multipliers (regex over names)
  × group_lr_multipliers (group names from the freezing rules) × the owning method's
  lr_multiplier (`methods`, see method_settings)."""
  names = freezing.param_names(params)
  n_layers = freezing.num_layers(params)
  decay = float(opt.layer_decay)
  if decay < 0 or decay > 1:
    raise OptimizerConfigError(f'optimizer.layer_decay={decay} must be in (0, 1], or 0 for off')
  scales = {n: decay ** freezing.depth_from_top(n, n_layers) if decay else 1.0 for n in names}
  for n, f in _match_multipliers(opt.lr_multipliers, names, 'optimizer.lr_multipliers').items():
    scales[n] *= f
  group_names = sorted(set(groups.values()) - {freezing.FROZEN})
  known = {g for g, _ in opt.group_lr_multipliers}
  missing = known - set(group_names)
  if missing:
    raise OptimizerConfigError(f'optimizer.group_lr_multipliers names groups {sorted(missing)} '
                               f'that no freezing rule uses; groups: {group_names}')
  by_group = dict(opt.group_lr_multipliers)
  for n in names:
    scales[n] *= float(by_group.get(groups[n], 1.0))
    owner = _owner(n)
    if methods and owner in methods:
      scales[n] *= methods[owner][0]
  return scales


def scale_per_leaf(scales: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies each leaf's update by a constant factor (stateless)."""
  tree = freezing.unflatten(scales)

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u if s == 1.0 else u * jnp.asarray(s, u.dtype),
                        updates, tree), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def build_optimizer(opt: Any, labels: Mapping[str, str], scales: Mapping[str, float],
                    schedule: optax.Schedule,
                    methods: Mapping[str, tuple[float, str]] | None = None
                    ) -> optax.GradientTransformation:
  """The full transformation for one freezing stage (see the module docstring)."""
  labels = dict(labels)
  names = {}  # label -> optimizer name ('' = opt.name)
  for n, label in labels.items():
    owner = _owner(n)
    if label != freezing.FROZEN and methods and owner in methods and methods[owner][1]:
      labels[n] = f'{label}:{owner}'  # a method's own optimizer: a label of its own
      names[labels[n]] = methods[owner][1]
  transforms = {label: optax.set_to_zero() if label == freezing.FROZEN
                else base_optimizer(opt, names.get(label, ''))
                for label in sorted(set(labels.values()))}
  clip = [optax.clip_by_global_norm(opt.grad_clip_norm)] if opt.grad_clip_norm > 0 else []
  if opt.grad_clip_norm < 0:
    raise OptimizerConfigError(f'optimizer.grad_clip_norm={opt.grad_clip_norm} must be >= 0')
  return optax.chain(
      *clip,
      optax.multi_transform(transforms, freezing.unflatten(labels)),
      optax.scale_by_learning_rate(schedule),
      scale_per_leaf(scales))


def optimizer_for_stage(opt: Any, schedule: freezing.FreezeSchedule, stage: int, params: Any,
                        lr_schedule: optax.Schedule,
                        methods: Mapping[str, tuple[float, str]] | None = None
                        ) -> optax.GradientTransformation:
  """`methods`: the method-owned params' settings (method_settings(config.transfer, params))."""
  scales = lr_scales(opt, params, schedule.groups[stage], methods)
  return build_optimizer(opt, schedule.labels(stage), scales, lr_schedule, methods)


def migrate_opt_state(old_state: Any, new_tx: optax.GradientTransformation, params: Any) -> Any:
  """Optimizer state for `new_tx` that keeps every array of `old_state` found at the same path.

  With cohort labels (freezing.FreezeSchedule.labels) a leaf that keeps training keeps its label,
  so its moments (and its cohort's count) carry over unchanged; a leaf that starts training
  lands in a new cohort and gets fresh init state; a leaf that stops training loses its state.
  The global LR-schedule count carries over too. Works on unreplicated (single-copy) states.
  """
  fresh = new_tx.init(params)
  old = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(old_state)[0]}
  kept = 0

  def pick(path, new):
    nonlocal kept
    key = jax.tree_util.keystr(path)
    if key not in old:
      return new
    value = old[key]
    if jnp.shape(value) != jnp.shape(new):
      raise ValueError(f'optimizer state {key}: shape {jnp.shape(value)} cannot become '
                       f'{jnp.shape(new)} (pass single-copy states, not pmap-replicated ones)')
    kept += 1
    return value
  state = jax.tree_util.tree_map_with_path(pick, fresh)
  logging.info('optimizer state: kept %d of %d arrays across the stage change', kept,
               len(jax.tree.leaves(fresh)))
  return state
