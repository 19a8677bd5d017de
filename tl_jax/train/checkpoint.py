"""Orbax checkpoints of the train state, resumable across freezing stages.

Each step directory holds three orbax items:
  state      the pytree (params, opt_state, step, rng): StandardSave/StandardRestore
  meta       a small JSON dict written by the loop (stage, data-iterator state, ...); it is read
             FIRST, because the state's tree structure depends on it (a freezing stage changes
             the optimizer-state tree), so the caller builds the restore template from it
  integrity  per-leaf checksums: orbax does not checksum array data, so a flipped byte would
             otherwise restore silently as wrong weights

Keeps the `keep` latest steps plus the best one by `best_metric` (orbax LatestN + BestN).
A step interrupted mid-write is never listed: orbax writes `<step>.orbax-checkpoint-tmp-*`
and renames it when complete (leftovers are cleaned up); a step directory without orbax's
commit marker is moved aside to `<dir>_rejected/`. A latest step that fails to restore is
reported, moved aside, and the previous one is used.

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
import logging as std_logging
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_managers

STATE, META, INTEGRITY = "state", "meta", "integrity"
COMMIT_MARKER = "commit_success.txt"  # orbax writes it into a step before the final rename
REJECTED_SUFFIX = "_rejected"


class CheckpointError(ValueError):
  """A checkpoint that cannot be written or read as asked; the message names the fix."""


class CorruptCheckpointError(CheckpointError):
  """One step's files are truncated, corrupted or incomplete."""


class NoUsableCheckpointError(CheckpointError):
  """Checkpoints exist but none of them restores."""


class CheckpointTemplateError(CheckpointError):
  """The restore template does not have the saved tree structure or shapes (a caller bug)."""


class NonFiniteStateError(CheckpointError):
  """A state with NaN/inf values: refused, so it never displaces a good checkpoint."""


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
               verify: bool = True):
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
        item_handlers={STATE: ocp.StandardCheckpointHandler(),
                       META: ocp.JsonCheckpointHandler(),
                       INTEGRITY: ocp.JsonCheckpointHandler()})
    self._best = self._best_so_far()

  @classmethod
  def from_config(cls, directory: str | os.PathLike, train: Any) -> "Checkpointer":
    """From the `train` config section (checkpoint_every, keep_checkpoints, best_metric, ...)."""
    return cls(directory, save_every=train.checkpoint_every, keep=train.keep_checkpoints,
               best_metric=train.get("best_metric", ""), best_mode=train.get("best_mode", "max"),
               async_save=train.get("async_checkpoint", True))

  # ------------------------------------------------------------------------------------------
  # Listing

  def steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric` (None without a metric or an eval)."""
    if not self.best_metric:
      return None
    scored = [(self._metric_value(m), s) for s in self.steps()
              if (m := self._mgr.metrics(s)) is not None]
    return max(scored)[1] if scored else None

  # ------------------------------------------------------------------------------------------
  # Saving

  def save(self, step: int, state: Any, meta: Mapping[str, Any], *,
           metrics: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Saves when `step` is on the interval, when `force` (the last step), or when `metrics`
    hold a new best `best_metric`. Returns whether it saved. Async: the arrays are copied to
    host before this returns, so they may be donated or changed right after.

    Raises NonFiniteStateError (nothing written) if a float leaf holds NaN/inf.
    """
    step = int(step)
    if step in self._mgr.all_steps():
      return False  # e.g. the final save on a step the interval already saved
    metrics = self._clean_metrics(metrics)
    new_best = metrics is not None and self._is_better(metrics)
    if not (force or new_best or self._mgr.should_save(step)):
      return False
    meta = _as_json(meta, f"checkpoint meta of step {step}")
    checksums, bad_leaf = _digest(state)
    if bad_leaf is not None:
      raise NonFiniteStateError(
          f"refusing to save step {step}: {bad_leaf} holds NaN/inf values; the last good "
          f"checkpoint (step {self.latest_step()}) is kept")
    args = ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state),
        META: ocp.args.JsonSave(meta),
        INTEGRITY: ocp.args.JsonSave({"checksums": checksums})})
    with _quiet_orbax_metrics_warning():
      saved = self._mgr.save(step, args=args, metrics=metrics if self.best_metric else None,
                             force=True)
    if saved and new_best:
      self._best = self._metric_value(metrics)
    return saved

  def wait(self) -> None:
    """Blocks until async writes are on disk."""
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.wait_until_finished()
    self._mgr.close()

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
      return self._mgr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
    except Exception as e:  # orbax/tensorstore raise many types; all mean "unreadable" here
      raise CorruptCheckpointError(f"step {step}: meta unreadable ({_one_line(e)})") from e

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
      raise CorruptCheckpointError(f"step {step}: state metadata unreadable ({_one_line(e)})") from e
    _check_template(step, saved, template)
    _quiet_stray_read_errors()
    try:
      restored = self._mgr.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(template),
          INTEGRITY: ocp.args.JsonRestore()}))
    except Exception as e:
      raise CorruptCheckpointError(f"step {step}: state unreadable ({_one_line(e)})") from e
    state = restored[STATE]
    if self.verify:
      _verify(step, state, template, restored[INTEGRITY]["checksums"])
    return state

  def restore_latest(self, template_fn: Callable[[dict[str, Any]], Any]) -> Restored | None:
    """Restores the newest usable step: reads its meta, builds `template_fn(meta)`, restores.

    A step that fails (truncated, corrupted) is logged with a warning naming it and the
    previous one is tried; failed steps are then moved to `<dir>_rejected/` so the rerun can
    write those steps again. None when there is no checkpoint (a fresh run);
    NoUsableCheckpointError (nothing moved) when none restores.
    """
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
    """Moves a step directory out of orbax's sight; never deletes it."""
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


# ---------------------------------------------------------------------------------------------
# Tree structure, checksums, finiteness

def _key_name(entry: Any) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _leaves_by_path(tree: Any) -> dict[str, Any]:
  """'/'-joined paths; dict keys, sequence indices and namedtuple fields alike (orbax saves
  namedtuples and tuples as dicts and lists)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def _check_template(step: int, saved: Any, template: Any) -> None:
  saved_leaves, wanted = _leaves_by_path(saved), _leaves_by_path(template)
  missing = sorted(set(saved_leaves) - set(wanted))
  extra = sorted(set(wanted) - set(saved_leaves))
  if missing or extra:
    detail = []
    if missing:
      detail.append(f"saved but not in the template: {', '.join(missing[:3])}")
    if extra:
      detail.append(f"in the template but not saved: {', '.join(extra[:3])}")
    raise CheckpointTemplateError(
        f"step {step}: the restore template does not match the saved state "
        f"({'; '.join(detail)}); build the template for the stage recorded in its meta")
  for path, leaf in wanted.items():
    saved_shape = getattr(saved_leaves[path], "shape", None)
    if saved_shape is not None and tuple(saved_shape) != _stored_shape(leaf):
      raise CheckpointTemplateError(
          f"step {step}: {path} was saved with shape {tuple(saved_shape)} but the template has "
          f"{_stored_shape(leaf)}; the workdir holds a different model")


def _stored_shape(leaf: Any) -> tuple[int, ...]:
  """The shape orbax stores: typed PRNG keys are stored as their key data."""
  dtype = getattr(leaf, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    return tuple(jax.eval_shape(jax.random.key_data, leaf).shape)
  return tuple(np.shape(leaf))


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _bits(x: jax.Array) -> jax.Array | None:
  """The raw bits of `x` as a flat uint32 vector (None for dtypes without a fixed width)."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(x.dtype.itemsize)
  if unsigned is None or jnp.issubdtype(x.dtype, jnp.complexfloating):
    return None
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


@jax.jit
def _digest_leaf(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A position-weighted sum of the bits of `x` (mod 2**32: exact and order-independent, so
  the same on any sharding) and whether all its values are finite. Jitted per leaf, not per
  tree: a few shapes compile once and serve every stage's tree."""
  bits = _bits(x)
  if bits is None:
    checksum = jnp.uint32(0)
  else:
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
    checksum = jnp.sum(bits * weights, dtype=jnp.uint32)
  is_float = jnp.issubdtype(x.dtype, jnp.inexact)
  return checksum, (jnp.all(jnp.isfinite(x)) if is_float else jnp.bool_(True))


def _host_scalar(x: jax.Array) -> Any:
  return np.asarray(x.addressable_data(0)).item()  # replicated; fine with non-local shards


def _digest(tree: Any) -> tuple[dict[str, int], str | None]:
  """({path: checksum}, the first path holding NaN/inf or None)."""
  leaves = {p: x for p, x in _leaves_by_path(tree).items() if _is_array(x)}
  if not leaves:
    return {}, None
  digests = [_digest_leaf(x) for x in leaves.values()]  # dispatched async, then gathered
  checksums = {p: int(_host_scalar(s)) for p, (s, _) in zip(leaves, digests)}
  bad = next((p for p, (_, ok) in zip(leaves, digests) if not _host_scalar(ok)), None)
  return checksums, bad


def _verify(step: int, state: Any, template: Any, saved: Mapping[str, int]) -> None:
  checksums, _ = _digest(state)
  wanted_dtypes = {p: getattr(x, "dtype", None) for p, x in _leaves_by_path(template).items()}
  restored = _leaves_by_path(state)
  for path, value in checksums.items():
    # A template of another dtype (e.g. bf16 onto fp32) casts: the bits legitimately differ.
    same_dtype = wanted_dtypes.get(path) == getattr(restored[path], "dtype", None)
    if path in saved and same_dtype and saved[path] != value:
      raise CorruptCheckpointError(f"step {step}: {path} fails its checksum (corrupted data)")


# ---------------------------------------------------------------------------------------------
# Small helpers

def _as_json(value: Mapping[str, Any], what: str) -> dict[str, Any]:
  try:
    return json.loads(json.dumps(dict(value), allow_nan=False))
  except (TypeError, ValueError) as e:
    raise CheckpointError(f"{what} is not JSON-serialisable ({e}); store plain "
                          "dicts/lists/str/numbers (decode bytes, convert arrays)") from None


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  line = line.split(" See full TensorStore details")[0]  # followed by an unreadable repr
  return line[:200] + ("..." if len(line) > 200 else "")


def _is_stray_read_error(error: BaseException | None) -> bool:
  text = str(error)
  return text == "Event loop is closed" or text.startswith("Encountered error while reading")


class _StrayReadErrorFilter(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.exc_info and _is_stray_read_error(record.exc_info[1]))


def _quiet_stray_read_errors() -> None:
  """After a failed restore, tensorstore still completes the other pending reads: they call
  back into orbax's (by then closed) event loop, or end as asyncio tasks whose error nobody
  retrieves. Python prints each as a traceback on stderr, which reads like a crash although the
  failure was handled (CorruptCheckpointError). Log them at debug level instead. Installed
  before a restore: the callbacks may come before the error reaches us."""
  previous = sys.unraisablehook
  if getattr(previous, "_tl_jax_quiet", False):
    return

  def hook(unraisable):
    if _is_stray_read_error(unraisable.exc_value):
      logging.debug("after a failed checkpoint read: %s", _one_line(unraisable.exc_value))
    else:
      previous(unraisable)
  hook._tl_jax_quiet = True
  sys.unraisablehook = hook
  std_logging.getLogger("asyncio").addFilter(_StrayReadErrorFilter())


class _quiet_orbax_metrics_warning:
  """Orbax warns on every save without metrics when best tracking is on; saves between evals
  are expected here."""

  class _Filter(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
      return "did not provide metrics" not in record.getMessage()

  def __enter__(self):
    self._filter = self._Filter()
    std_logging.getLogger("absl").addFilter(self._filter)

  def __exit__(self, *exc):
    std_logging.getLogger("absl").removeFilter(self._filter)
