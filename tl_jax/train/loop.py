"""The training loop behind `tl-jax train` and `tl-jax eval`; it reads top to bottom.

Everything that can reject the config (model, data, freezing rules, optimizer, objectives) is
built before the workdir is touched, so bad input never leaves a half-written run behind.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import signal
import threading
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from tl_jax import errors
from tl_jax import data as data_lib
from tl_jax import config as config_lib
from tl_jax import pieces as pieces_lib
from tl_jax import models
from tl_jax.train import checkpoint as checkpoint_lib
from tl_jax.train import compile_cache
from tl_jax.train import faults
from tl_jax.train import health as health_lib
from tl_jax.train import memory
from tl_jax.train import metrics as metrics_lib
from tl_jax.train import parallel
from tl_jax.train import prefetch
from tl_jax.train import prefix_cache
from tl_jax.train import step as step_lib
from tl_jax.train import workdir as workdir_lib
from tl_jax.methods import objectives


class NonFiniteLossError(errors.TlJaxError, RuntimeError):
  """The loss, the gradients or the update became NaN/inf; the last good checkpoint is kept."""


# Exit status of a run stopped by SIGTERM or a pre-emption notice after saving its checkpoint:
# EX_TEMPFAIL ("try again"), distinct from success (0), errors (1, 2) and kills (128+n), so a
# job script or scheduler can requeue on it. Rerunning the same command resumes.
PREEMPTED_EXIT_CODE = 75


class Preempted(SystemExit):
  """Training stopped at a step boundary after SIGTERM / a pre-emption notice, its checkpoint
  saved. A SystemExit (code PREEMPTED_EXIT_CODE): the process should end, sweeps included."""

  def __init__(self, message: str):
    super().__init__(PREEMPTED_EXIT_CODE)
    self.message = message

  def __str__(self) -> str:
    return self.message


def check_config(config: mlc.ConfigDict) -> None:
  """Every value in its range (config.validate), before anything is built or written."""
  config_lib.validate(config)


def check_fits(config: mlc.ConfigDict, pieces: pieces_lib.Pieces, core: step_lib.TrainCore,
               evals: dict) -> None:
  """What only the built model, data and devices can tell; checked before the workdir is
  touched, so these mistakes never leave a half-started run behind."""
  # Every label must index its head (else the loss is NaN from the first step).
  cfg = pieces.module.config
  named = dict(cfg.heads)
  for domain, info in (('target', pieces.target_info), ('source', pieces.source_info)):
    if info is None or not info.num_classes:
      continue
    head = config.data[domain].head or ('shared' if named else '')
    size = named.get(head, 0) if head else cfg.num_classes
    if 0 < size < info.num_classes:
      raise pieces_lib.ConfigError(
          f'labels out of range: {domain} dataset {info.name!r} has {info.num_classes} classes '
          f'but its head has {size} outputs; set --config.model.num_classes=0 (sized from the '
          f'data) or >= {info.num_classes}')
  # The metric that picks the best checkpoint (and drives early stopping) must exist.
  t = config.train
  names = sorted(f'{name}/{m}' for name in evals for m in ('accuracy', 'loss'))
  if t.best_metric and t.best_metric not in names:
    raise pieces_lib.ConfigError(
        f'train.best_metric={t.best_metric!r} is not an eval metric of this run (it has: '
        f'{", ".join(names) or "none, no eval splits"}); set --config.train.best_metric to one '
        "of them, or to '' to keep only the latest checkpoints")
  if t.early_stopping_patience and not t.best_metric:
    raise pieces_lib.ConfigError('train.early_stopping_patience needs train.best_metric (the '
                                 'eval metric to watch); set both, or the patience to 0')
  # Per-device rows must split into the gradient-accumulation micro-batches.
  host_rows = config.data.batch_size // jax.process_count()
  core.launcher.check_batch({'rows': np.zeros((host_rows, 1))}, core.micro_steps)
  # A batch larger than the data would repeat examples inside one batch.
  for domain, info in (('target', pieces.target_info), ('source', pieces.source_info)):
    if info is not None:
      examples = train_examples(config.data, domain, info)
      if config.data.batch_size > examples:
        raise pieces_lib.ConfigError(
            f'data.batch_size={config.data.batch_size} is larger than the {examples} training '
            f'examples of the {domain} dataset {info.name!r}: set --config.data.batch_size<='
            f'{examples}')
  # The step must fit into device memory (checked before compiling it).
  devices = core.launcher.num_devices
  on_cpu = jax.local_devices()[0].platform == 'cpu'
  domains = 2 if config.data.source.name else 1
  num_params = sum(x.size for x in jax.tree.leaves(pieces.params))
  memory.check_fits(
      pieces.module.config, kind=pieces.module.kind, params=num_params,
      trainable=num_params,  # the widest stage: every parameter may train
      max_length=config.data.max_length, image_size=_image_size(config, pieces.module),
      train_rows=domains * max(1, config.data.batch_size // devices // core.micro_steps),
      eval_rows=max(1, config.data.eval_batch_size // devices),
      devices_sharing=jax.local_device_count() if on_cpu else 1)


def train_examples(data_cfg: mlc.ConfigDict, domain: str, info) -> int:
  """How many examples one epoch of a domain's training stream holds (few-shot included)."""
  cfg = data_cfg[domain]
  examples = len(data_lib.data_source(info.name, cfg.train_split, data_cfg.data_dir))
  if cfg.few_shot and info.num_classes:
    examples = min(examples, cfg.few_shot * info.num_classes)
  return examples


def restore_template(core: step_lib.TrainCore, step: int) -> Any:
  """The state at `step` as a restore target on this process's first device. Not the saved
  sharding: a run saved by N processes (or D devices) resumes on any other topology, and
  `core.to_devices` lays the one copy out afterwards."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                      core.abstract_state(step))


def restore_state(ckpt: checkpoint_lib.Checkpointer, core: step_lib.TrainCore
                  ) -> checkpoint_lib.Restored | None:
  """The newest usable checkpoint as a state for today's config, laid out on the devices.

  When today's optimizer or freezing setup builds another optimizer-state tree than the
  checkpoint holds (train the head, then unfreeze everything and resume), the params, step,
  rng, data position and early stopping are restored and the optimizer state is rebuilt for
  today's trainable set: every array found at the same path with the same shape carries over,
  the rest starts fresh (logged). Params that differ are a different model: refused before
  anything is written."""
  rebuilt = set()

  def template_fn(meta):
    step = int(meta['step'])
    template = restore_template(core, step)
    saved = ckpt.saved_structure(step)
    differ = checkpoint_lib.mismatched_paths(saved, template)
    if not differ:
      return template
    model = sorted(p for p in differ if not p.startswith('opt_state/'))
    if model:
      raise checkpoint_lib.CheckpointTemplateError(
          f'the checkpoint at step {step} in {ckpt.directory} holds other parameters than this '
          f'config builds ({", ".join(model[:3])}{", ..." if len(model) > 3 else ""}); '
          'that is another model: use a new --workdir (initialise it from this run with '
          '--config.model.name=<this workdir>/export), or pass --overwrite')
    rebuilt.add(step)
    sharding = jax.tree.leaves(template)[0].sharding
    return template.replace(opt_state=ckpt.saved_tree(step, sharding)['opt_state'])

  restored = ckpt.restore_latest(template_fn)
  if restored is None:
    return None
  state = restored.state
  stage = core.stage_at(restored.step)
  if int(state.stage) != stage:
    logging.info('Resuming step %d in freezing stage %d (the checkpoint says %d: the freezing '
                 'schedule changed).', restored.step, stage, int(state.stage))
  if restored.step in rebuilt:
    opt_state, kept, total = _carry_over(core.tx(stage).init(state.params), state.opt_state)
    logging.warning('Resuming step %d with a changed optimizer or freezing setup: rebuilt the '
                    'optimizer state (%d of %d arrays carried over by path and shape, %d fresh).',
                    restored.step, kept, total, total - kept)
    state = state.replace(opt_state=opt_state)
  state = state.replace(stage=jnp.asarray(stage, jnp.int32))
  return checkpoint_lib.Restored(restored.step, core.to_devices(state), restored.meta,
                                 restored.skipped)


def _carry_over(fresh: Any, saved: Any) -> tuple[Any, int, int]:
  """`fresh` with every leaf that `saved` holds at the same path, shape and dtype."""
  old = checkpoint_lib.leaves_by_path(saved)
  flat, treedef = jax.tree_util.tree_flatten_with_path(fresh)
  leaves, kept = [], 0
  for path, new in flat:
    value = old.get(checkpoint_lib.path_name(path))
    if value is not None and np.shape(value) == np.shape(new) and value.dtype == new.dtype:
      new, kept = value, kept + 1
    leaves.append(new)
  return jax.tree_util.tree_unflatten(treedef, leaves), kept, len(leaves)


class _PreemptionWatch:
  """Asks for a save at the next step boundary on SIGTERM (one process) or when jax's
  pre-emption sync service says so (multi-process: it hears SIGTERM and TPU/GCE pre-emption
  notices on any host and picks one step for all of them)."""

  def __init__(self, ckpt: checkpoint_lib.Checkpointer):
    self._ckpt = ckpt
    self.reason: str | None = None
    self._previous = None
    # Multi-process: jax's service owns SIGTERM (a local flag would stop the hosts at
    # different steps and hang the collective save).
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    self.reason = self.reason or 'SIGTERM'

  def reached(self, step: int) -> bool:
    if self.reason is None and self._ckpt.reached_preemption(step):
      self.reason = 'pre-emption notice'
    return self.reason is not None

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def _due(step: int, every: int, last: int) -> bool:
  return step == last or (every > 0 and step % every == 0)


def _image_size(config: mlc.ConfigDict, module) -> int | None:
  if module.kind != 'image':
    return None
  return config.data.image_size or module.config.image_size


def evaluate_params(core: step_lib.TrainCore, params, evals: dict, *,
                    step: int | None = None) -> dict[str, float]:
  """'{domain}/{split}/{accuracy,loss}' over every example of every eval split."""
  results = {}
  for name, batches in evals.items():
    domain = name.split('/')[0]
    sums = []
    for batch in batches:
      sums.append(core.eval_step(params, batch, domain))
      faults.at('eval', step)
    summary = step_lib.summarize_eval(sums)
    results[f'{name}/accuracy'] = summary['accuracy']
    results[f'{name}/loss'] = summary['loss']
  return results


def _report(writer: metrics_lib.MetricsWriter, config, final: dict[str, float], step: int,
            seconds: float, workdir, export_note: str = '',
            health: health_lib.Monitor | None = None, best_step: int | None = None) -> None:
  target = {k: v for k, v in final.items() if k.startswith('target/') and 'accuracy' in k}
  collapsed = health.collapsed() if health is not None else {}
  lines = [f'Done: {step} steps in {seconds:.0f} s ({config.model.name}, init='
           f'{config.model.init}, target {config.data.target.name})'
           + (f', but the transfer term of {", ".join(sorted(collapsed))} collapsed.'
              if collapsed else '.')]
  if best_step is not None:
    lines.append(f'  the best checkpoint by {config.train.best_metric} (step {best_step}; '
                 'what is reported here and exported):')
  lines += [f'  {k}: {v:.4f}' for k, v in sorted(target.items())]
  lines += health.report_lines() if health is not None else []
  exported = f'   export: {workdir.export}' if config.train.export_hf else ''
  lines.append(f'  metrics: {workdir.metrics_file}{exported}')
  if export_note:  # which class loads the export (README.md there says how)
    lines.append(f'  export loads as {export_note.replace("DIR", str(workdir.export))}')
  if config.model.init == 'pretrained':
    lines.append('  Baseline from a random init, same schedule: '
                 '--config.model.init=random (make demo runs both and compares).')
  for line in lines:
    writer.log_text(line)


def train(config: mlc.ConfigDict, workdir: str, *, overwrite: bool = False) -> dict[str, float]:
  """Trains per config in `workdir` (resuming what is there); returns the final eval metrics."""
  start_time = time.monotonic()
  # -----------------------------------------------------------------------------------------
  # Devices, model, data, optimizer: every config error surfaces here.
  # -----------------------------------------------------------------------------------------
  parallel.maybe_initialize_distributed(config.parallel.distributed)
  check_config(config)
  compile_cache.enable(config.train.compilation_cache_dir)
  pieces = pieces_lib.build(config)
  module = pieces.module
  core = step_lib.TrainCore(config, module, pieces.params, pretrained_params=pieces.params)
  caches = {}  # role -> frozen-prefix activations of every training example
  if config.transfer.cache_frozen_prefix:
    top, caches = prefix_cache.for_run(config, module, pieces.params, core.schedule,
                                       core.objective.needs, tokenizer=pieces.tokenizer)
    core = step_lib.TrainCore(config, top, pieces.params, pretrained_params=pieces.params)
  num_devices = core.launcher.num_devices
  data_kwargs = dict(tokenizer=pieces.tokenizer, image_size=_image_size(config, module),
                     num_devices=num_devices)
  train_iter = data_lib.build_train_iterator(config.data, seed=config.seed,
                                             with_index=bool(caches), **data_kwargs)
  draws = data_lib.few_shot_draws(config.data, config.seed)  # printed, and kept in config.json
  evals = data_lib.build_eval_batches(config.data, **data_kwargs)
  check_fits(config, pieces, core, evals)
  num_steps = config.train.num_steps

  # -----------------------------------------------------------------------------------------
  # Workdir: lock, compatibility, resume.
  # -----------------------------------------------------------------------------------------
  fingerprint = workdir_lib.config_fingerprint(
      config, architecture=module.architecture(),
      num_classes=int(pieces.target_info.num_classes))
  wd = workdir_lib.open_workdir(workdir, fingerprint=fingerprint, overwrite=overwrite)
  ckpt = checkpoint_lib.Checkpointer.from_config(wd.checkpoints, config.train)
  early = metrics_lib.EarlyStopping(config.train.best_metric,
                                    config.train.early_stopping_patience,
                                    mode=config.train.best_mode)
  try:
    restored = restore_state(ckpt, core)
  except BaseException:
    ckpt.close()
    wd.close()
    raise
  # Only now: a refused resume leaves no config.resumed-*.json.
  wd.record_config(data_lib.with_draws(config, draws))
  if restored is None:
    state = core.init_state(pieces.params, config.seed)
    start = 0
  else:
    state = restored.state
    train_iter.set_state(restored.meta['data'])
    early.load_state_dict(restored.meta['early_stopping'])
    start = restored.step
    logging.info('Resumed from step %d in %s', start, wd.checkpoints)
  del pieces  # the host copy of the initial params is on the devices now
  writer = metrics_lib.MetricsWriter(
      wd.path, total_steps=num_steps, resume_step=start if restored else None,
      examples_per_step=config.data.batch_size * (2 if config.data.source.name else 1))
  if restored is not None:
    writer.log_text(f'Resuming {wd.path} at step {start}/{num_steps}.')
  for line in data_lib.start_lines(config.data, draws):  # what the seeds drew; target labels
    writer.log_text(line)

  # -----------------------------------------------------------------------------------------
  # Loop. The finiteness of step s is read after step s+1 is dispatched, so the host never
  # waits on the device just to check it.
  # -----------------------------------------------------------------------------------------
  final: dict[str, float] = {}
  pending = None  # (step, device metrics) not yet checked
  step = start
  preemption = _PreemptionWatch(ckpt)
  preempted = False
  health = health_lib.Monitor(config.transfer, num_steps)  # adversaries' domain acc / loss
  try:
    # The rows' cached prefix activations (when caching) replace their token inputs.
    attach = (lambda batch: prefix_cache.attach(batch, caches)) if caches else None
    batches = prefetch.device_batches(core, train_iter, depth=config.data.device_prefetch,
                                      prepare=attach)
    for step in range(start + 1, num_steps + 1):
      batch = next(batches)
      if step == start + 1:  # multi-host: each host reads only its rows of the global batch
        logging.info('Process %d of %d reads %d of the %d rows of each global batch.',
                     jax.process_index(), jax.process_count(),
                     batch.rows, config.data.batch_size)
      state = faults.at('before_step', step, state=state)  # no-op unless a test armed it
      state, metrics = core.train_step(state, batch)
      faults.at('step', step)
      if pending is not None:
        _check_finite(ckpt, *pending)
      pending = (step, metrics)
      # Step boundary: a pre-emption saves this step (after its eval, if one is due) and stops.
      preempted = preemption.reached(step)
      eval_now = _due(step, config.train.eval_every, num_steps)
      save_now = eval_now or _due(step, config.train.checkpoint_every, num_steps) or preempted
      if _due(step, config.train.log_every, num_steps) or save_now:
        _check_finite(ckpt, *pending)
        pending = None
        if _due(step, config.train.log_every, num_steps):
          host = core.host_metrics(metrics)
          writer.log_train(step, host)
          for line in health.update(step, host):  # once per method: a collapsed adversary
            writer.log_text(line)
      if not save_now:
        continue
      with writer.paused():
        results = evaluate_params(core, state.params, evals, step=step) if eval_now else None
        stop = False
        if results:
          final = results
          writer.log_eval(step, results)
          stop = early.update(step, results) if config.train.early_stopping_patience else False
        meta = {'step': step, 'stage': core.stage, 'data': batch.data_state,
                'early_stopping': early.state_dict()}
        ckpt.save(step, core.to_host(state), meta, metrics=results,
                  force=(step == num_steps or stop or preempted))
        faults.at('save', step, checkpoints=ckpt.directory)
      if preempted:
        break
      if stop:
        writer.log_text(f'Early stopping at step {step}: no gain in {early.metric} for '
                        f'{early.patience} evals (best at step {early.best_step}).')
        break
    # With a best_metric, the run's result is its best checkpoint, not its last step: that is
    # what is reported, returned and exported (the selection used validation, never test).
    best = None if preempted else ckpt.best_step()
    if best is not None and best != step and ckpt.metrics(best):
      params = ckpt.restore(best, restore_template(core, best)).params
      final = {k: (math.nan if v is None else v) for k, v in ckpt.metrics(best).items()}
    else:
      best, params = None, None
  finally:
    preemption.close()
    ckpt.close()  # waits for the last save to be on disk
  if preempted:
    message = (f'Pre-empted ({preemption.reason}) at step {step}/{num_steps}: checkpoint '
               f'{step} saved in {wd.checkpoints}; rerun the same command to resume (exit code '
               f'{PREEMPTED_EXIT_CODE}).')
    writer.log_text(message)
    writer.close()
    wd.close()
    raise Preempted(message)

  # -----------------------------------------------------------------------------------------
  # Export and report.
  # -----------------------------------------------------------------------------------------
  if not final:  # resumed a finished run: evaluate what is there
    final = evaluate_params(core, state.params, evals)
  export_note = ''
  if jax.process_index() == 0 and config.train.export_hf:
    # The model's own params: method-owned ones (discriminators, ...) are not part of it.
    if params is None:
      params = core.to_host(state).params
    params = objectives.module_params(jax.device_get(params))
    infos = {role: data_lib.dataset_info(config.data[role], config.data)
             for role in ('target', 'source') if config.data[role].name}
    export_note = models.export_run(module, params, wd.export, config=config, metrics=final,
                                    step=best or step, infos=infos).note
  _report(writer, config, final, step, time.monotonic() - start_time, wd, export_note,
          health, best_step=best)
  writer.close()
  wd.close()
  return final


def _check_finite(ckpt: checkpoint_lib.Checkpointer, step: int, metrics) -> None:
  if metrics_lib.scalar(metrics['is_finite'], 'is_finite', replicated=True) >= 1:
    return  # every step: one value read, the rest only when it failed
  host = metrics_lib.to_host_floats(metrics)
  loss, grad_norm = host['loss'], host['grad_norm']
  if math.isfinite(loss) and math.isfinite(grad_norm) and host['update_finite'] < 1:
    what = (f'the update is not finite at step {step} although the loss ({loss:.4g}) and the '
            f'gradients (norm {grad_norm:.4g}) are: the optimizer overflowed')
  else:
    what = f'loss or gradients not finite at step {step} (loss={loss}, grad norm={grad_norm})'
  good = ckpt.latest_step()
  kept = (f'the last good checkpoint (step {good}) is kept and a rerun resumes from it'
          if good is not None else 'no checkpoint was saved before it (a rerun starts afresh)')
  raise NonFiniteLossError(f'{what}; the update was skipped and training stopped; {kept}. '
                           'Lower the learning rate or check the data.')


def saved_config(workdir: str | os.PathLike) -> mlc.ConfigDict:
  """The config a run was last trained with (the newest config.resumed-*.json, else
  config.json), read over today's defaults, so a run saved before a config key existed still
  loads (with that key at its default)."""
  first = pathlib.Path(workdir) / workdir_lib.CONFIG_FILE
  if not first.exists():
    raise FileNotFoundError(f'{workdir} holds no tl_jax run ({first.name} missing): train first')
  saved = max(pathlib.Path(workdir).glob('config.resumed-*.json'), default=first)
  config = config_lib.base_config()
  config.update(json.loads(saved.read_text()))
  return config


def restore_run(workdir: str | os.PathLike):
  """(config, pieces, core, restored) of a run's latest complete checkpoint, rebuilt with the
  config it was trained with; restored.state (on the devices) holds its params (method-owned
  ones included). Read-only: safe to call on a run that is training."""
  config = saved_config(workdir)
  pieces = pieces_lib.build(config)
  core = step_lib.TrainCore(config, pieces.module, pieces.params,
                            pretrained_params=pieces.params)
  # Read-only: safe beside a live trainer (creates, cleans up and moves nothing).
  ckpt = checkpoint_lib.Checkpointer.from_config(pathlib.Path(workdir) / 'checkpoints',
                                                 config.train, read_only=True)
  try:
    restored = restore_state(ckpt, core)
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f'{workdir} has no complete checkpoint to evaluate')
  return config, pieces, core, restored


def evaluate(config: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates the latest checkpoint of a run with the config it was trained with."""
  del config  # the run's own config decides
  config, pieces, core, restored = restore_run(workdir)
  evals = data_lib.build_eval_batches(
      config.data, tokenizer=pieces.tokenizer, image_size=_image_size(config, pieces.module),
      num_devices=core.launcher.num_devices)
  results = evaluate_params(core, restored.state.params, evals)
  print(f'eval @ step {restored.step}:')
  for k, v in sorted(results.items()):
    print(f'  {k}: {v:.4f}' if math.isfinite(v) else f'  {k}: {v}')
  return results
