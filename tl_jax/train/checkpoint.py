"""Orbax checkpoints of the train state, resumable across freezing stages.

Each step directory holds three orbax items:
  state      the pytree (params, opt_state, step, rng): StandardSave/StandardRestore
  meta       a small JSON dict written by the loop (stage, data-iterator state, ...); it is read
             FIRST, because the state's tree structure depends on it (a freezing stage changes
             the optimizer-state tree), so the caller builds the restore template from it
  integrity  per-leaf CRC32 of the leaf's bytes: orbax does not checksum array data, so a
             flipped bit would otherwise restore silently as wrong weights

Keeps the `keep` latest steps plus the best one by `best_metric` (orbax LatestN + BestN).
A step interrupted mid-write is never listed: orbax writes `<step>.orbax-checkpoint-tmp-*`
and renames it when complete (leftovers are cleaned up); a step directory without orbax's
commit marker is moved aside to `<dir>_rejected/`. A latest step that fails to restore is
reported, moved aside, and the previous one is used.

Readers (`tl-jax eval`, restore_run, reports) open the directory with `read_only=True`: orbax
then neither creates, deletes nor cleans up anything, and a broken or vanished step is skipped
without being moved, so a reader is safe beside a live trainer (only the lock holder, the
trainer, moves or deletes steps).

The integrity checks live in integrity.py, the quieting of orbax's after-failure noise in
orbax_quiet.py, the error classes in checkpoint_errors.py (all re-exported here).

Usage (the loop):
  ckpt = Checkpointer.from_config(workdir.checkpoints, config.train)
  restored = ckpt.restore_latest(lambda meta: template_for_stage(meta["stage"]))
  ...
  ckpt.save(step, state, meta, metrics=eval_metrics_or_None, force=step == num_steps)
  ...
  ckpt.close()  # waits for async writes; call it on every exit path (try/finally)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import time
from typing import Any, Callable, Mapping

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

from tl_jax.train import integrity
from tl_jax.train import orbax_quiet
from tl_jax.train.orbax_quiet import one_line
# Re-exported: callers name the errors and the tree helpers through this module.
from tl_jax.train.checkpoint_errors import (  # noqa: F401
    CheckpointError, CheckpointTemplateError, CheckpointWriteError, CorruptCheckpointError,
    NoUsableCheckpointError, NonFiniteStateError)
from tl_jax.train.integrity import (  # noqa: F401
    CHECKSUM, LEGACY, leaves_by_path, mismatched_paths, path_name)

STATE, META, INTEGRITY = "state", "meta", "integrity"
COMMIT_MARKER = "commit_success.txt"  # orbax writes it into a step before the final rename
_FINALIZED = "_CHECKPOINT_METADATA"  # in every finalized step; gone once a delete starts
REJECTED_SUFFIX = "_rejected"
_READER_RETRIES = 5  # a reader that keeps losing its step to the trainer's keep-K deletes


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  state: Any
  meta: dict[str, Any]
  skipped: tuple[int, ...] = ()  # newer steps that failed to restore (moved aside)


class Checkpointer:
  """A thin layer over `ocp.CheckpointManager` for one run's checkpoint directory."""

  def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int = 2,
               best_metric: str = "", best_mode: str = "max", async_save: bool = True,
               verify: bool = True, read_only: bool = False):
    if save_every < 0:
      raise CheckpointError(f"train.checkpoint_every must be >= 0 (0 = only at the end and at "
                            f"a new best), got {save_every}")
    if keep < 1:
      raise CheckpointError(f"train.keep_checkpoints must be >= 1 (resume needs one), got {keep}")
    if best_mode not in ("max", "min"):
      raise CheckpointError(f"train.best_mode must be 'max' or 'min', got {best_mode!r}")
    self.directory = pathlib.Path(directory).absolute()
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.verify = verify
    self.read_only = read_only
    # Orbax's leftovers after a handled failure are logged, not printed as tracebacks.
    orbax_quiet.quiet_stray_read_errors()
    if read_only:  # never create, clean up or move anything: the trainer may be writing
      with orbax_quiet.quiet_absl("read only"):
        self._mgr = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(
                read_only=True, create=False, cleanup_tmp_directories=False,
                save_interval_steps=0, enable_async_checkpointing=False,
                best_fn=self._metric_value if best_metric else None, best_mode="max"),
            item_handlers=_item_handlers())
      self._best = -math.inf
      return
    self._reject_uncommitted()

    preserve = [ocp_managers.LatestN(keep)]
    if best_metric:
      preserve.append(ocp_managers.BestN(
          get_metric_fn=self._metric_value, reverse=False, n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=ocp_managers.AnySavePolicy(
            [ocp_managers.FixedIntervalPolicy(save_every)] * bool(save_every)
            + [ocp_managers.PreemptionCheckpointingPolicy()]),
        preservation_policy=ocp_managers.AnyPreservationPolicy(preserve),
        # best_fn makes orbax persist the metrics per step, so "best" survives a restart.
        best_fn=self._metric_value if best_metric else None,
        best_mode="max",  # _metric_value already flips the sign for 'min'
        cleanup_tmp_directories=True,
        enable_async_checkpointing=async_save,
        create=True)
    self._mgr = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers=_item_handlers())
    self._best = self._best_so_far()

  @classmethod
  def from_config(cls, directory: str | os.PathLike, train: Any, *,
                  read_only: bool = False) -> "Checkpointer":
    """From the `train` config section (checkpoint_every, keep_checkpoints, best_metric, ...).
    read_only: for every reader of a run (eval, reports); only the trainer writes."""
    return cls(directory, save_every=train.checkpoint_every, keep=train.keep_checkpoints,
               best_metric=train.get("best_metric", ""), best_mode=train.get("best_mode", "max"),
               async_save=train.get("async_checkpoint", True), read_only=read_only)

  # ------------------------------------------------------------------------------------------
  # Listing

  def steps(self) -> list[int]:
    steps = sorted(self._mgr.all_steps())
    if self.read_only:  # the trainer moves these aside; a reader just looks past them
      steps = [s for s in steps if (self.directory / str(s) / COMMIT_MARKER).exists()]
    return steps

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def reached_preemption(self, step: int) -> bool:
    """Whether every process of a multi-process job has reached the step at which to save
    for a pre-emption notice (jax's preemption sync service; False when it is not running)."""
    return bool(self._mgr.reached_preemption(step))

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric` (None without a metric or an eval)."""
    if not self.best_metric:
      return None
    self.wait()  # the newest step's metrics are on disk only once its async save finished
    scored = [(self._metric_value(m), s) for s in self.steps()
              if (m := self._mgr.metrics(s)) is not None]
    return max(scored)[1] if scored else None

  def metrics(self, step: int) -> dict[str, float] | None:
    """The eval metrics saved with `step` (kept when there is a best_metric), else None."""
    return self._mgr.metrics(step) if self.best_metric else None

  # ------------------------------------------------------------------------------------------
  # Saving

  def save(self, step: int, state: Any, meta: Mapping[str, Any], *,
           metrics: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Saves when `step` is on the interval, when `force` (the last step), or when `metrics`
    hold a new best `best_metric`. Returns whether it saved. Async: the arrays are copied to
    host before this returns, so they may be donated or changed right after.

    Raises NonFiniteStateError (nothing written) if a float leaf holds NaN/inf.
    """
    if self.read_only:
      raise CheckpointError(f"{self.directory} is open read-only; only the trainer saves")
    step = int(step)
    if step in self._mgr.all_steps():
      return False  # e.g. the final save on a step the interval already saved
    metrics = self._clean_metrics(metrics)
    new_best = metrics is not None and self._is_better(metrics)
    if not (force or new_best or self._mgr.should_save(step)):
      return False
    meta = _as_json(meta, f"checkpoint meta of step {step}")
    checksums, bad_leaf = integrity.digest(state)
    if bad_leaf is not None:
      raise NonFiniteStateError(
          f"refusing to save step {step}: {bad_leaf} holds NaN/inf values; the last good "
          f"checkpoint (step {self.latest_step()}) is kept")
    args = ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        META: ocp.args.JsonSave(meta),
        INTEGRITY: ocp.args.JsonSave({"algorithm": CHECKSUM, "checksums": checksums})})
    try:
      # The save also waits for (and raises) the previous one.
      with orbax_quiet.quiet_orbax_metrics_warning():
        saved = self._mgr.save(step, args=args, metrics=metrics if self.best_metric else None,
                               force=True)
    except Exception as e:
      raise self._write_error(step, e) from e
    if saved and new_best:
      self._best = self._metric_value(metrics)
    return saved

  def wait(self) -> None:
    """Blocks until async writes are on disk (CheckpointWriteError if one failed)."""
    try:
      self._mgr.wait_until_finished()
    except Exception as e:
      raise self._write_error(None, e) from e

  def close(self) -> None:
    try:
      self.wait()
    finally:
      try:
        self._mgr.close()
      except Exception as e:  # the same failure again, already raised by wait()
        logging.debug("closing the checkpoint manager: %s", one_line(e))

  def _write_error(self, step: int | None, error: BaseException) -> CheckpointWriteError:
    """One line: which step, the OS reason, the fix, and what is still usable."""
    text = str(error)
    match = re.search(rf"{re.escape(self.directory.name)}/(\d+)\.orbax-checkpoint-tmp", text)
    step = int(match.group(1)) if match else step
    code = re.search(r"os_error_code='(\d+)'", text)
    reason = (f"{os.strerror(int(code.group(1)))} (errno {code.group(1)})" if code
              else one_line(error))
    complete = ([int(p.name) for p in self.directory.iterdir()
                 if p.name.isdigit() and (p / COMMIT_MARKER).exists()]
                if self.directory.is_dir() else [])
    kept = (f"the last complete checkpoint (step {max(complete)}) is kept and a rerun resumes "
            "from it" if complete else "no complete checkpoint exists yet")
    which = f"step {step}" if step is not None else "a checkpoint"
    return CheckpointWriteError(f"cannot write {which} in {self.directory}: {reason}; free space "
                                f"there or choose another --workdir; {kept}")

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ------------------------------------------------------------------------------------------
  # Restoring

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON meta of `step` (raises CorruptCheckpointError if unreadable)."""
    self.wait()
    try:
      args = ocp.args.Composite(**{META: ocp.args.JsonRestore()})
      return self._mgr.restore(step, args=args)[META]
    except Exception as e:  # orbax/tensorstore raise many types; all mean "unreadable" here
      raise CorruptCheckpointError(f"step {step}: meta unreadable ({one_line(e)})") from e

  def latest_meta(self) -> tuple[int, dict[str, Any]] | None:
    """(step, meta) of the newest step, or None without checkpoints. No fallback: prefer
    `restore_latest`, which also falls back past a corrupted newest step."""
    step = self.latest_step()
    return None if step is None else (step, self.read_meta(step))

  def restore(self, step: int, template: Any) -> Any:
    """The state of `step`, restored onto `template` (arrays or ShapeDtypeStructs with the
    shardings wanted). Raises CheckpointTemplateError or CorruptCheckpointError."""
    self.wait()
    try:
      saved = self._mgr.item_metadata(step)[STATE]
      saved = getattr(saved, "tree", saved)
    except Exception as e:
      raise CorruptCheckpointError(
          f"step {step}: state metadata unreadable ({one_line(e)})") from e
    integrity.check_template(step, saved, template)
    orbax_quiet.quiet_stray_read_errors()
    try:
      restored = self._mgr.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(template),
          INTEGRITY: ocp.args.JsonRestore()}))
    except Exception as e:
      raise CorruptCheckpointError(f"step {step}: state unreadable ({one_line(e)})") from e
    state = restored[STATE]
    if self.verify:
      record = restored[INTEGRITY]
      integrity.verify(step, state, template, record["checksums"],
                       record.get("algorithm", LEGACY))
    return state

  def saved_structure(self, step: int) -> dict[str, Any]:
    """{path: ShapeDtypeStruct} of the state saved at `step` (paths as in the integrity
    record), read from orbax's metadata without reading any array."""
    try:
      saved = self._mgr.item_metadata(step)[STATE]
      saved = getattr(saved, "tree", saved)
    except Exception as e:
      raise CorruptCheckpointError(
          f"step {step}: state metadata unreadable ({one_line(e)})") from e
    return {p: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)
            for p, m in integrity.leaves_by_path(saved).items() if hasattr(m, "shape")}

  def saved_tree(self, step: int, sharding: Any = None) -> Any:
    """The saved state's tree (dicts and lists, as orbax stores it) of ShapeDtypeStructs: a
    restore target for a state whose structure today's config no longer builds."""
    saved = self._mgr.item_metadata(step)[STATE]
    saved = getattr(saved, "tree", saved)
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding),
                        saved, is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))

  def restore_latest(self, template_fn: Callable[[dict[str, Any]], Any]) -> Restored | None:
    """Restores the newest usable step: reads its meta, builds `template_fn(meta)`, restores.

    A step that fails (truncated, corrupted) is logged with a warning naming it and the
    previous one is tried; failed steps are then moved to `<dir>_rejected/` so the rerun can
    write those steps again. None when there is no checkpoint (a fresh run);
    NoUsableCheckpointError (nothing moved) when none restores.
    """
    if self.read_only:
      return self._read_latest(template_fn)
    failures = []
    for step in reversed(self.steps()):
      try:
        meta = self.read_meta(step)
        state = self.restore(step, template_fn(meta))
      except CorruptCheckpointError as e:
        logging.warning("Checkpoint step %d in %s is unusable (%s); trying the previous one.",
                        step, self.directory, e)
        failures.append((step, str(e)))
        continue
      for bad_step, _ in failures:
        self._move_aside(bad_step, "corrupt")
      if failures:
        logging.warning("Resuming from step %d; unusable newer steps %s moved to %s.", step,
                        [s for s, _ in failures], self._rejected_dir())
      return Restored(step, state, meta, tuple(s for s, _ in failures))
    if failures:
      reasons = "; ".join(msg for _, msg in failures[:3])
      raise NoUsableCheckpointError(
          f"no usable checkpoint in {self.directory} ({reasons}); to start over use a new "
          "--workdir or pass --overwrite (moves the old run aside)")
    return None

  def _read_latest(self, template_fn: Callable[[dict[str, Any]], Any]) -> Restored | None:
    """restore_latest for a reader beside a possibly live trainer: a step that vanishes while
    it is read (the trainer's keep-K deleted it) sends the reader back to the newest step; a
    broken one is skipped and left where it is."""
    failures: dict[int, str] = {}
    for _ in range(_READER_RETRIES):
      self._mgr.reload()
      restarted = False
      for step in reversed(self.steps()):
        if step in failures:
          continue
        try:
          meta = self.read_meta(step)
          state = self.restore(step, template_fn(meta))
        except (CorruptCheckpointError, CheckpointTemplateError) as e:
          # Deleted under us by the trainer's keep-K (a half-deleted step reads as a partial
          # tree): newer steps exist now, read them.
          if not (self.directory / str(step) / _FINALIZED).exists():
            self._mgr.reload()
            if max((s for s in self.steps() if s not in failures), default=step) > step:
              restarted = True
              break
          elif isinstance(e, CheckpointTemplateError):
            raise  # a complete step that does not fit the template: the caller's error
          logging.warning("Checkpoint step %d in %s is unusable (%s); trying the previous one "
                          "(left in place: read-only).", step, self.directory, e)
          failures[step] = str(e)
          continue
        return Restored(step, state, meta, tuple(s for s in failures if s > step))
      if not restarted:
        break
    if failures:
      reasons = "; ".join(list(failures.values())[:3])
      raise NoUsableCheckpointError(f"no usable checkpoint in {self.directory} ({reasons})")
    return None

  # ------------------------------------------------------------------------------------------
  # Internals

  def _metric_value(self, metrics: Mapping[str, Any] | None) -> float:
    """Higher is better; missing or NaN ranks worst (orbax sorts with this)."""
    value = (metrics or {}).get(self.best_metric)
    if value is None or not math.isfinite(float(value)):
      return -math.inf
    return float(value) if self.best_mode == "max" else -float(value)

  def _best_so_far(self) -> float:
    if not self.best_metric:
      return -math.inf
    values = [self._metric_value(self._mgr.metrics(s)) for s in self.steps()]
    return max(values, default=-math.inf)

  def _is_better(self, metrics: Mapping[str, float]) -> bool:
    return bool(self.best_metric) and self._metric_value(metrics) > self._best

  def _clean_metrics(self, metrics: Mapping[str, Any] | None) -> dict[str, float] | None:
    if metrics is None:
      return None
    clean = {str(k): float(np.asarray(v)) for k, v in metrics.items()}
    if self.best_metric and self.best_metric not in clean:
      raise CheckpointError(
          f"best_metric {self.best_metric!r} is not among the eval metrics "
          f"({', '.join(sorted(clean)) or 'none'}); set --config.train.best_metric to one of "
          "them, or to '' to keep only the latest checkpoints")
    # JSON has no NaN: orbax would write invalid JSON.
    return {k: (v if math.isfinite(v) else None) for k, v in clean.items()}

  def _rejected_dir(self) -> pathlib.Path:
    return self.directory.with_name(self.directory.name + REJECTED_SUFFIX)

  def _move_aside(self, step_or_name: int | str, reason: str) -> None:
    """Moves a step directory out of orbax's sight; never deletes it (lock holder only)."""
    if self.read_only:
      raise CheckpointError(f"a reader may not move {step_or_name} in {self.directory}")
    if jax.process_index() == 0:
      source = self.directory / str(step_or_name)
      if source.exists():
        target = self._rejected_dir() / f"{step_or_name}-{reason}-{time.time_ns()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"tl_jax_checkpoint_move_{step_or_name}")
    if hasattr(self, "_mgr"):
      self._mgr.reload()

  def _reject_uncommitted(self) -> None:
    """A step directory without orbax's commit marker was not written by a completed save
    (orbax puts the marker in before its atomic rename): never treat it as a checkpoint."""
    if not self.directory.is_dir():
      return
    for entry in sorted(self.directory.iterdir()):
      if entry.is_dir() and entry.name.isdigit() and not (entry / COMMIT_MARKER).exists():
        logging.warning("Checkpoint step %s in %s is incomplete (no %s); moving it aside.",
                        entry.name, self.directory, COMMIT_MARKER)
        self._move_aside(entry.name, "incomplete")


def _as_json(value: Mapping[str, Any], what: str) -> dict[str, Any]:
  try:
    return json.loads(json.dumps(dict(value), allow_nan=False))
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{what} is not JSON-serialisable ({e}); store plain "
                          "dicts/lists/str/numbers (decode bytes, convert arrays)") from None


def _item_handlers() -> dict[str, Any]:
  return {STATE: ocp.StandardCheckpointHandler(), META: ocp.JsonCheckpointHandler(),
          INTEGRITY: ocp.JsonCheckpointHandler()}
