"""The per-device train and eval steps, and TrainCore, which compiles them per freezing stage.

Per device, one train step: split params into trainable and frozen leaves, differentiate the
joint objective w.r.t. the trainable ones only (frozen layers get no backward pass at all),
optionally over micro-batches (lax.scan), pmean grads and metrics over 'data', optax update,
skip the update when the loss, the gradients or the updated params are not finite
(metric `is_finite` = 0; `update_finite` = 0 when only the update is). Text batches also give
`real_tokens` (attention_mask ones, all devices and domains) for tokens/sec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tl_jax import errors
from tl_jax.models.forward import forward
from tl_jax.train import optim
from tl_jax.train import parallel
from tl_jax.train.state import TrainState
from tl_jax.train import freezing
from tl_jax.train import metrics as metrics_lib
from tl_jax.methods import lambdas
from tl_jax.methods import objectives

AXIS = parallel.AXIS
Batch = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class DeviceBatch:
  """A train batch laid out on the devices (TrainCore.put), with what the step needs of the host
  batch: its shapes (what compiles) and the data position after it (what a checkpoint saves)."""
  arrays: Any
  shapes: Mapping[str, Mapping[str, tuple[int, ...]]]  # role -> key -> host shape
  data_state: Any = None

  @property
  def rows(self) -> int:
    """Target rows of this process's share of the global batch."""
    return next(iter(self.shapes['target'].values()))[0]


class StepConfigError(errors.TlJaxError, ValueError):
  """A training-step setting that cannot be used."""


def _all_finite(tree: Any) -> jax.Array:
  checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def _select(ok: jax.Array, new: Any, old: Any) -> Any:
  # A cond, not a per-leaf jnp.where: XLA would inline the and-chain of every leaf's finiteness
  # into every leaf's select fusion (~300 x 300 ops for MiniLM: an 8x larger program, several
  # times the compile time and ~0.8 GB more host memory). The cond computes `ok` once.
  return jax.lax.cond(ok, lambda: new, lambda: old)


def make_train_step(module: Any, *, tx: optax.GradientTransformation, trainable: frozenset[str],
                    objective: objectives.JointObjective, config: Any,
                    lr_schedule: optax.Schedule, lam_fn: lambdas.LambdaFn,
                    micro_steps: int = 1, dropout: bool = True,
                    axis_name: str = AXIS) -> Callable:
  """Per-device `step(state, batch, pretrained) -> (state, metrics)`.

  batch: {'target': {...}, 'source': {...}} with this device's rows; pretrained: flat dict of
  the pretrained params (or None when no objective needs them). Metrics are pmean'd.
  """
  if not trainable:
    raise StepConfigError('the freezing rules freeze every parameter; nothing would train')
  # Outputs an objective reads from every layer: this step's model returns them (eval steps
  # do not).
  per_layer = [need for need in ('hidden_states', 'attentions') if need in objective.needs]
  switches = {f'output_{need}': True for need in per_layer
              if getattr(module.config, f'output_{need}', True) is False}
  if switches:
    module = module.clone(config=dataclasses.replace(module.config, **switches))

  def loss_fn(train_params, frozen_params, batch, pretrained, step, rng):
    params = freezing.merge(train_params, frozen_params)
    outputs = {}
    for i, domain in enumerate(sorted(batch)):
      outputs[domain] = forward(module, params, batch[domain], train=dropout,
                                rng=jax.random.fold_in(rng, i))
      for need in per_layer:
        if getattr(outputs[domain], need, None) is None:
          raise objectives.ObjectiveError(
              f'an objective needs {need}, but the model returns none; load it with '
              f'output_{need}=True')
    ctx = objectives.Context(outputs=outputs, batches=batch, params=params,
                             trainable=train_params, pretrained=pretrained, step=step,
                             lam=lam_fn(step), config=config, axis_name=axis_name, train=True,
                             forward=lambda p, b: forward(module, p, b, train=False))
    return objective(ctx)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step_fn(state: TrainState, batch: Batch, pretrained: Any):
    # Distinct dropout noise per step and per device; nothing to split or store on the host.
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                             jax.lax.axis_index(axis_name))
    train_params, frozen_params = freezing.split_trainable(state.params, trainable)
    # Differentiate a per-device ("varying") view of the params: under shard_map, the gradient
    # of a replicated input would otherwise come back already psum'd (n× the pmap result).
    local_params = jax.lax.pcast(train_params, axis_name, to='varying')
    if micro_steps == 1:
      (_, metrics), grads = grad_fn(local_params, frozen_params, batch, pretrained, state.step,
                                    rng)
    else:
      # Gradient accumulation: the mean over micro-batches equals the big-batch gradient.
      micro = jax.tree.map(lambda x: x.reshape((micro_steps, -1) + x.shape[1:]), batch)
      first = jax.tree.map(lambda x: x[0], micro)
      _, metrics_shape = jax.eval_shape(loss_fn, train_params, frozen_params, first, pretrained,
                                        state.step, rng)
      zeros = (jax.tree.map(jnp.zeros_like, train_params),
               jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape))
      zeros = jax.lax.pcast(zeros, axis_name, to='varying')

      def body(carry, xs):
        i, mb = xs
        (_, m), g = grad_fn(local_params, frozen_params, mb, pretrained, state.step,
                            jax.random.fold_in(rng, i))
        return jax.tree.map(jnp.add, carry, (g, m)), None
      (grads, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(micro_steps), micro))
      grads, metrics = jax.tree.map(lambda x: x / micro_steps, (grads, metrics))

    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
    grad_norm = optax.global_norm(grads)
    grads_ok = jnp.isfinite(metrics['loss']) & jnp.isfinite(grad_norm)

    # Frozen leaves get zero "gradients" that set_to_zero discards: XLA folds them away.
    full_grads = freezing.merge(grads, jax.tree.map(jnp.zeros_like, frozen_params))
    updates, opt_state = tx.update(full_grads, state.opt_state, state.params)
    flat_updates = freezing.flatten(updates)
    new_train = {n: (p + flat_updates[n]).astype(p.dtype) for n, p in train_params.items()}
    # Finite loss and gradients can still give a non-finite update (an overflowing learning
    # rate): caught in this step, before it is applied. The new params suffice: with finite
    # gradients (their global norm is finite, so every g² is) each optimizer's moments stay
    # finite, and checking them too costs ~1 s of compile for MiniLM and finds nothing more.
    update_ok = _all_finite(new_train)
    ok = grads_ok & update_ok
    # Frozen leaves are passed through untouched (bit-identical, not p + 0).
    params = freezing.merge(_select(ok, new_train, train_params), frozen_params)
    opt_state = _select(ok, opt_state, state.opt_state)
    metrics = dict(metrics, grad_norm=grad_norm, learning_rate=lr_schedule(state.step),
                   lam=lam_fn(state.step), is_finite=ok.astype(jnp.float32),
                   update_finite=update_ok.astype(jnp.float32))
    masks = [b['attention_mask'] for b in batch.values() if 'attention_mask' in b]
    if masks:  # real (non-pad) tokens: what padding to a length bucket does not change
      metrics['real_tokens'] = jax.lax.psum(
          sum(jnp.sum(m, dtype=jnp.float32) for m in masks), axis_name)
    return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

  return step_fn


def make_eval_step(module: Any, *, head: str = '', domain: str = 'target',
                   axis_name: str = AXIS) -> Callable:
  """Per-device `eval(params, batch) -> sums` for one domain's batch (with a bool `mask` for
  padding rows): {'loss_sum', 'correct', 'count'} summed over the global batch."""

  def eval_fn(params, batch):
    out = forward(module, params, batch, train=False)
    logits = objectives.select_logits(out.logits, head, domain)
    ce, correct = objectives.cross_entropy_terms(logits, batch['label'])
    w = objectives.example_weights(batch)
    sums = {'loss_sum': jnp.sum(ce * w), 'correct': jnp.sum(correct * w), 'count': jnp.sum(w)}
    return jax.lax.psum(sums, axis_name)

  return eval_fn


def summarize_eval(sums: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Host side: per-batch sums -> {'accuracy', 'loss', 'count'} over the whole split."""
  host = [metrics_lib.to_host_floats(s) for s in sums]
  total = {k: float(sum(h[k] for h in host)) for k in ('loss_sum', 'correct', 'count')}
  n = max(total['count'], 1.0)
  return {'accuracy': total['correct'] / n, 'loss': total['loss_sum'] / n,
          'count': total['count']}


# -------------------------------------------------------------------------------------------
# TrainCore: the steps of one run, compiled per freezing stage.
# -------------------------------------------------------------------------------------------

class TrainCore:
  """Freezing schedule, optimizer per stage and compiled steps for one run.

  Invariant: a state this class returns has `stage == schedule.stage_at(step)`; train_step
  switches stage (migrating the optimizer state, recompiling on the next call) right after the
  step that reaches a stage boundary, so a checkpoint at step s restores into
  `abstract_state(s)`.
  """

  def __init__(self, config: Any, module: Any, params: Any, *,
               pretrained_params: Any = None, launcher: parallel.Launcher | None = None,
               devices: Sequence[Any] | None = None, total_steps: int | None = None):
    self.config = config
    self.module = module
    self.launcher = launcher or parallel.make_launcher(config.parallel.mode, devices)
    self.total_steps = int(total_steps or config.train.num_steps)
    self.micro_steps = int(config.optimizer.accumulate_steps)
    if self.micro_steps < 1:
      raise StepConfigError(f'optimizer.accumulate_steps={self.micro_steps} must be >= 1')
    self.objective = objectives.from_config(config)
    # Method-owned params (discriminators, adversarial heads) join the tree under
    # 'objectives/': the freezing rules, the optimizer and checkpoints all see them.
    self._objective_params = self._init_objective_params(params)
    params = self.with_objective_params(params)
    self.schedule = freezing.schedule_from_config(config.transfer, params)
    self.lam_fn = lambdas.from_config(config.transfer.lam, self.total_steps)
    self.lr_schedule = optim.learning_rate_schedule(config.optimizer, self.total_steps)
    self._params_shape = jax.eval_shape(lambda p: p, params)
    methods = optim.method_settings(config.transfer, params)  # discriminators' own LR / opt
    self._txs = [optim.optimizer_for_stage(config.optimizer, self.schedule, k, params,
                                           self.lr_schedule, methods)
                 for k in range(self.schedule.num_stages)]  # errors surface at start-up
    self._steps: dict[int, Callable] = {}
    self._evals: dict[str, Callable] = {}
    # Batch shapes the current stage's step has seen: each compiles once (jit caches it); with
    # data.length_buckets there are at most len(buckets) per domain.
    self.train_shapes: set[tuple] = set()
    self._real_tokens: list[Any] = []  # device scalars of steps not yet read by host_metrics
    self._pretrained = None
    if 'pretrained' in self.objective.needs:
      if pretrained_params is None:
        raise StepConfigError(f'objectives {tuple(config.transfer.objectives)} need the '
                              'pretrained params: pass pretrained_params=')
      self._pretrained = self.launcher.put_replicated(freezing.flatten(pretrained_params))
    self.step = 0  # host mirrors of state.step / state.stage: no device sync per step
    self.stage = 0

  # -- states ---------------------------------------------------------------------------------
  def _init_objective_params(self, params: Any) -> dict[str, Any]:
    if not any(o.init for o in self.objective.objectives):
      return {}
    module_params = objectives.module_params(params)
    out = jax.eval_shape(lambda p: self.module.apply({'params': p}, **self.module.dummy_inputs()),
                         module_params)
    num_classes = 0
    if out.logits is not None:
      num_classes = objectives.select_logits(out.logits, self.config.data.target.head).shape[-1]
    dims = objectives.FeatureDims(feature_dim=int(out.pooled.shape[-1]),
                                  num_classes=int(num_classes))
    rng = jax.random.fold_in(jax.random.key(self.config.seed), 0x0b7)  # apart from model init
    return jax.device_get(self.objective.init_params(rng, dims, self.config))

  def with_objective_params(self, params: Any) -> Any:
    """`params` plus the objectives' own params under 'objectives/' (as is when there)."""
    if not self._objective_params or objectives.PARAMS_KEY in params:
      return params
    return {**params, objectives.PARAMS_KEY: self._objective_params}

  def tx(self, stage: int) -> optax.GradientTransformation:
    return self._txs[stage]

  def stage_at(self, step: int) -> int:
    return self.schedule.stage_at(step)

  def init_state(self, params: Any, rng: Any) -> TrainState:
    """A fresh state at step 0, laid out on the devices (objective params added)."""
    params = self.with_objective_params(params)
    return self.to_devices(TrainState.create(params, self.tx(0), rng, stage=0))

  def abstract_state(self, step: int = 0) -> TrainState:
    """Shapes/dtypes of a single-copy state at `step` (an orbax restore target)."""
    stage = self.stage_at(step)
    return jax.eval_shape(
        lambda p: TrainState.create(p, self.tx(stage), 0, stage=stage, step=step),
        self._params_shape)

  def to_devices(self, state: TrainState) -> TrainState:
    """Single-copy state (fresh or restored) -> the launcher's device layout."""
    self.step, self.stage = int(state.step), int(state.stage)
    if self.stage != self.stage_at(self.step):
      raise StepConfigError(f'state at step {self.step} is in freezing stage {self.stage}, but '
                            f'the schedule says stage {self.stage_at(self.step)}: the checkpoint '
                            'was written under a different freezing schedule')
    return self.launcher.put_replicated(state)

  def to_host(self, state: TrainState) -> TrainState:
    """Device layout -> one copy (what a checkpoint saves)."""
    return self.launcher.get_replicated(state)

  # -- steps ----------------------------------------------------------------------------------
  def train_fn(self, stage: int) -> Callable:
    """The compiled step of a stage: fn(state, device_batch, pretrained) -> (state, metrics)
    (for benchmarks and cost analysis; train_step is the way to train)."""
    if stage not in self._steps:
      logging.info('compiling the train step for freezing stage %d (%d trainable leaves)', stage,
                   len(self.schedule.trainable(stage)))
      fn = make_train_step(
          self.module, tx=self.tx(stage), trainable=self.schedule.trainable(stage),
          objective=self.objective, config=self.config, lr_schedule=self.lr_schedule,
          lam_fn=self.lam_fn, micro_steps=self.micro_steps)
      self._steps = {stage: self.launcher.compile(fn, sharded_args=(1,), num_args=3,
                                                   donate_argnums=(0,))}  # drop old stages
      self.train_shapes = set()
    return self._steps[stage]

  def train_step(self, state: TrainState, batch: Batch | DeviceBatch
                 ) -> tuple[TrainState, dict[str, Any]]:
    """One optimizer step on a host batch {'target': {...}[, 'source': {...}]} or one already
    put on the devices (`put`); returns device metrics (see host_metrics). Switches the
    freezing stage when the next step starts one."""
    if not isinstance(batch, DeviceBatch):
      batch = self.put(batch)
    fn = self.train_fn(self.stage)
    self._note_shape(batch.shapes)
    state, metrics = fn(state, batch.arrays, self._pretrained)
    if 'real_tokens' in metrics:
      self._real_tokens.append(metrics['real_tokens'])
      if len(self._real_tokens) > 256:  # read rarely (log_every=0): keep one running sum
        self._real_tokens = [sum(self._real_tokens)]
    self.step += 1
    next_stage = self.stage_at(self.step)
    if next_stage != self.stage:
      state = self._switch_stage(state, next_stage)
    return state, metrics

  def put(self, batch: Batch, data_state: Any = None) -> DeviceBatch:
    """A host batch {'target': {...}[, 'source': {...}]} laid out on the devices (the copy runs
    while earlier steps do: see tl_jax/train/prefetch.py)."""
    if 'target' not in batch or set(batch) - set(objectives.DOMAINS):
      raise StepConfigError('a train batch is {"target": {...}[, "source": {...}]}, got keys '
                            f'{sorted(batch)}')
    shapes = {role: {k: tuple(np.shape(x)) for k, x in rows.items()}
              for role, rows in batch.items()}
    return DeviceBatch(self.launcher.put_batch(batch, self.micro_steps), shapes, data_state)

  def _note_shape(self, shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> None:
    """Logs each new batch shape of the stage's step (a new shape compiles once)."""
    shape = tuple((role, key, shapes[role][key]) for role in sorted(shapes)
                  for key in sorted(shapes[role]))
    if shape not in self.train_shapes:
      self.train_shapes.add(shape)
      lengths = {role: rows['input_ids'][1] for role, rows in sorted(shapes.items())
                 if 'input_ids' in rows}
      logging.info('train step, freezing stage %d: batch shape %d of this stage%s (compiles '
                   'once)', self.stage, len(self.train_shapes),
                   f', lengths {lengths}' if lengths else '')

  def _switch_stage(self, state: TrainState, stage: int) -> TrainState:
    logging.info('step %d: freezing stage %d -> %d', self.step, self.stage, stage)
    host = self.to_host(state)
    opt_state = optim.migrate_opt_state(host.opt_state, self.tx(stage), host.params)
    return self.to_devices(host.replace(opt_state=opt_state,
                                        stage=jnp.asarray(stage, jnp.int32)))

  def eval_step(self, params: Any, batch: Batch, domain: str = 'target') -> dict[str, Any]:
    """Sums {'loss_sum', 'correct', 'count'} over one eval batch of `domain` (a flat dict with
    `mask`); feed the list of them to summarize_eval. `params` is state.params as laid out."""
    if domain not in self._evals:
      fn = make_eval_step(self.module, head=self.config.data[domain].head, domain=domain)
      self._evals[domain] = self.launcher.compile(fn, sharded_args=(1,), num_args=2)
    return self._evals[domain](params, self.launcher.put_batch(batch))

  def host_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
    """Device metrics (of train_step or eval_step) -> python floats (blocks). A train step's
    `real_tokens` becomes the sum over every step since the last call, so that tokens/sec over
    a logging interval counts all its steps (read here, never once per step)."""
    host = metrics_lib.to_host_floats(metrics)
    if 'real_tokens' in host and self._real_tokens:
      steps = metrics_lib.to_host_floats(dict(enumerate(self._real_tokens)))
      host['real_tokens'] = float(sum(steps.values()))
      self._real_tokens = []
    return host
