"""The joint objective L_T + λ(step)·L_S + Σ method terms, assembled from registered functions.

A new objective is one function in one file of `tl_jax/methods/`:

    @objectives.register('my_method', needs=('pretrained',))
    def my_method(ctx: objectives.Context) -> tuple[jax.Array, dict[str, jax.Array]]:
      ...  # ctx.outputs['source'].pooled, ctx.logits('target'), ctx.lam, ctx.step, ...
      return scalar, {'my_method/some_metric': value}

An objective that owns weights (a domain discriminator, an adversarial head) also registers
`init=fn(rng, dims, config) -> params`; TrainCore puts them in the params tree under
`objectives/<name>/...` (the model ignores that key), the optimizer trains them with the rest,
the objective reads them as `ctx.method_params(name)`, and the HF export leaves them out.

`config.transfer.objectives` lists the names; the joint loss is their sum. 'cross_entropy' is
the supervised part, L_T + λ·L_S; method terms scale themselves (by their own config keys or
by ctx.lam). Every function runs per device inside the jitted step: use `ctx.mean` for batch
means so the result does not depend on how the global batch is split over devices.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from tl_jax import errors

DOMAINS = ('target', 'source')
NEEDS = ('pretrained', 'hidden_states', 'attentions')
PARAMS_KEY = 'objectives'  # top-level key of method-owned params in the params tree

Metrics = dict[str, jax.Array]
ObjectiveFn = Callable[['Context'], tuple[jax.Array, Metrics]]


class ObjectiveError(errors.TlJaxError, ValueError):
  """An objective name, head name or input the objectives cannot use."""


@dataclasses.dataclass(frozen=True)
class Objective:
  name: str
  fn: ObjectiveFn
  needs: frozenset[str]
  init: 'InitFn | None' = None


@dataclasses.dataclass(frozen=True)
class FeatureDims:
  """What a method's params are sized from: the pooled feature width and the target logits'."""
  feature_dim: int
  num_classes: int


InitFn = Callable[[jax.Array, FeatureDims, Any], Any]


_REGISTRY: dict[str, Objective] = {}
_discovered = False


def register(name: str, *, needs: Sequence[str] = (),
             init: InitFn | None = None) -> Callable[[ObjectiveFn], ObjectiveFn]:
  """Registers `fn(ctx) -> (scalar, metrics)` under `name`. `needs`: 'pretrained' (the step
  passes the pretrained params), 'hidden_states' (the model returns every layer) and/or
  'attentions' (the model returns every layer's attention probabilities).
  `init(rng, dims, config) -> params`: the objective owns trainable params (see the top)."""
  unknown = set(needs) - set(NEEDS)
  if unknown:
    raise ObjectiveError(f'objective {name!r}: unknown needs {sorted(unknown)}; valid: {NEEDS}')

  def wrap(fn: ObjectiveFn) -> ObjectiveFn:
    old = _REGISTRY.get(name)
    if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__,
                                                                        fn.__qualname__):
      raise ObjectiveError(f'objective {name!r} is already registered by {old.fn.__module__}')
    _REGISTRY[name] = Objective(name, fn, frozenset(needs), init)
    return fn
  return wrap


def _discover() -> None:
  """Imports every module of tl_jax.methods once, so their @register calls have run."""
  global _discovered
  if _discovered:
    return
  _discovered = True
  package = importlib.import_module('tl_jax.methods')
  for info in pkgutil.iter_modules(package.__path__):
    if not info.name.startswith('_'):
      importlib.import_module(f'tl_jax.methods.{info.name}')


def method_settings(config: Any, key: str, default: Any = None, *, example: str = '') -> Any:
  """`config.transfer.<key>`, a method's settings. A config without that section gets `default`
  when there is one, else one error naming the fix (`example`: a config that has the section)."""
  cfg = config.transfer.get(key)
  if cfg is not None:
    return cfg
  if default is not None:
    return default
  raise ObjectiveError(f'config.transfer.{key} is missing: add `config.transfer.{key} = '
                       f'{key}.default_config()` to the config (see {example})')


def names() -> list[str]:
  _discover()
  return sorted(_REGISTRY)


def get(name: str) -> Objective:
  _discover()
  if name not in _REGISTRY:
    raise ObjectiveError(f'unknown objective {name!r} (transfer.objectives); valid: '
                         f'{", ".join(sorted(_REGISTRY))}')
  return _REGISTRY[name]


# -------------------------------------------------------------------------------------------
# What an objective sees.
# -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Context:
  """Inputs of an objective, per device. `outputs`/`batches` hold 'target' and, when a source
  domain is configured, 'source'. `trainable` and `pretrained` are flat dicts keyed by
  '/'-joined names: the leaves gradients flow into, and the weights training started from.
  A batch may carry `label_probs` [B, K] (mixup): the cross-entropy then uses those targets."""
  outputs: Mapping[str, Any]
  batches: Mapping[str, Mapping[str, jax.Array]]
  params: Any
  trainable: Mapping[str, jax.Array]
  pretrained: Mapping[str, jax.Array] | None
  step: jax.Array
  lam: jax.Array
  config: Any
  axis_name: str | None = 'data'
  train: bool = True
  # The model in eval mode on another set of params: forward(params, batch) -> ModelOutput
  # (a frozen teacher for distillation). Set by the train step.
  forward: Callable[[Any, Mapping[str, jax.Array]], Any] | None = None

  def head(self, domain: str) -> str:
    return self.config.data[domain].head

  def logits(self, domain: str) -> jax.Array:
    return select_logits(self.outputs[domain].logits, self.head(domain), domain)

  def labeled(self, domain: str) -> bool:
    return bool(self.config.data[domain].labeled) and 'label' in self.batches[domain]

  def weights(self, domain: str) -> jax.Array:
    return example_weights(self.batches[domain])

  def method_params(self, name: str) -> Any:
    """The params objective `name` registered an init for (`params['objectives'][name]`)."""
    owned = self.params.get(PARAMS_KEY, {}) if isinstance(self.params, Mapping) else {}
    if name not in owned:
      raise ObjectiveError(f'objective {name!r} has no params in the state; build the state '
                           'with TrainCore (it adds them), or JointObjective.init_params')
    return owned[name]

  def mean(self, values: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Weighted mean over the GLOBAL batch, arranged so that the pmean the step applies to the
    loss and its gradients gives exactly the global weighted mean, whatever the device count."""
    values = values.astype(jnp.float32)
    if weights is None:
      weights = jnp.ones(values.shape[:1], jnp.float32)
    weights = weights.astype(jnp.float32)
    local_sum = jnp.sum(values * weights.reshape(weights.shape + (1,) * (values.ndim - 1)))
    count = jnp.sum(weights)
    if self.axis_name is not None:
      # The count does not depend on the params, so psum-ing it adds nothing to the backward.
      count = jax.lax.psum(count, self.axis_name) / jax.lax.axis_size(self.axis_name)
    return jnp.where(count > 0, local_sum / jnp.maximum(count, 1e-12), 0.0)


def select_logits(logits: Any, head: str, domain: str = 'target') -> jax.Array:
  """The logits of the head `data.<domain>.head` names ('' = the single/shared head)."""
  if logits is None:
    raise ObjectiveError(f'the model has no classification head, so there are no {domain} '
                         'logits; attach one (model.num_classes)')
  if isinstance(logits, Mapping):
    if head in logits:
      return logits[head]
    if not head and len(logits) == 1:
      return next(iter(logits.values()))
    raise ObjectiveError(f'data.{domain}.head={head!r} is not one of the model heads '
                         f'{sorted(logits)}; set it to one of them')
  if head:
    raise ObjectiveError(f'data.{domain}.head={head!r} but the model has a single head; set '
                         f"data.{domain}.head='' or build the model with named heads")
  return logits


def example_weights(batch: Mapping[str, jax.Array]) -> jax.Array:
  """1 for a real, labelled example; 0 for padding (mask False) or an unlabelled one (label<0)."""
  label = batch['label']
  w = (label >= 0).astype(jnp.float32)
  if 'mask' in batch:
    w = w * batch['mask'].astype(jnp.float32)
  return w


def cross_entropy_terms(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-example (cross-entropy, correct) in float32; negative labels give finite garbage that
  `example_weights` zeroes out."""
  logits = logits.astype(jnp.float32)
  safe = jnp.maximum(labels, 0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return ce, correct


def soft_cross_entropy(logits: jax.Array, probs: jax.Array) -> jax.Array:
  """Per-example cross-entropy against target distributions [B, K] (mixup), in float32."""
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), probs.astype(jnp.float32))


# -------------------------------------------------------------------------------------------
# The supervised part and the joint objective.
# -------------------------------------------------------------------------------------------

@register('cross_entropy')
def cross_entropy(ctx: Context) -> tuple[jax.Array, Metrics]:
  """L_T + λ·L_S: softmax cross-entropy on each labelled domain, with that domain's head. An
  unlabelled domain (data.<domain>.labeled False, or no 'label') contributes no term."""
  total = jnp.zeros((), jnp.float32)
  metrics: Metrics = {}
  for domain, weight in (('target', 1.0), ('source', ctx.lam)):
    if domain not in ctx.outputs or not ctx.labeled(domain):
      continue
    batch = ctx.batches[domain]
    ce, correct = cross_entropy_terms(ctx.logits(domain), batch['label'])
    if 'label_probs' in batch:  # mixup: the loss is against the mixed (soft) targets
      ce = soft_cross_entropy(ctx.logits(domain), batch['label_probs'])
    w = ctx.weights(domain)
    loss = ctx.mean(ce, w)
    metrics[f'{domain}/loss'] = loss
    metrics[f'{domain}/accuracy'] = ctx.mean(correct, w)
    total = total + weight * loss
  return total, metrics


class JointObjective:
  """Σ of the named objectives; metrics gain 'loss' and 'loss/<name>' for each term."""

  def __init__(self, objective_names: Sequence[str]):
    if isinstance(objective_names, str) or not objective_names:
      raise ObjectiveError(f'transfer.objectives must be a non-empty tuple of names from '
                           f'{names()}, got {objective_names!r}')
    self.objectives = [get(n) for n in objective_names]

  @property
  def needs(self) -> frozenset[str]:
    return frozenset().union(*(o.needs for o in self.objectives))

  def init_params(self, rng: jax.Array, dims: FeatureDims, config: Any) -> dict[str, Any]:
    """{name: params} of the objectives that own params ({} when none does); an init may
    return {} (its config needs no params) and is then left out."""
    owned = {o.name: o.init(jax.random.fold_in(rng, i), dims, config)
             for i, o in enumerate(self.objectives) if o.init is not None}
    return {name: p for name, p in owned.items() if jax.tree.leaves(p)}

  def __call__(self, ctx: Context) -> tuple[jax.Array, Metrics]:
    total = jnp.zeros((), jnp.float32)
    metrics: Metrics = {}
    for o in self.objectives:
      value, m = o.fn(ctx)
      value = jnp.asarray(value, jnp.float32)
      total = total + value
      metrics.update(m)
      metrics[f'loss/{o.name}'] = value
    metrics['loss'] = total
    return total, metrics


def from_config(config: Any) -> JointObjective:
  return JointObjective(tuple(config.transfer.objectives))


def module_params(params: Mapping[str, Any]) -> dict[str, Any]:
  """The params tree without the method-owned `objectives/` subtree: what the model exports."""
  return {k: v for k, v in params.items() if k != PARAMS_KEY}
