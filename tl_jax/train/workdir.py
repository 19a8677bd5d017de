"""The run directory: one run at a time (a lock), one model per directory (a fingerprint).

  WORKDIR/
    .lock            filelock (flock) held by the trainer (a killed process releases it);
                     holds its pid. Readers (eval, reports) take no lock and write nothing.
    run.json         fingerprint of what the checkpoints hold (model, datasets, classes)
    config.json      the resolved config of the first run (config.resumed-*.json if changed)
    checkpoints/     orbax steps (see checkpoint.py)   metrics.jsonl, tensorboard/ (metrics.py)
    export/          final params in HF layout

Usage: `wd = open_workdir(path, fingerprint=config_fingerprint(config, ...), config=config)`
after the model and data are known to load (bad input must fail before any file is written).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Mapping

from absl import logging
import filelock

from tl_jax import errors
import tl_jax

LOCK_FILE = ".lock"
RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
OVERWRITE_FLAG = "--overwrite"
# Entries tl_jax itself writes; a non-empty directory with anything else is not a workdir.
_OWN_ENTRIES = {LOCK_FILE, RUN_FILE, CONFIG_FILE, "checkpoints", "checkpoints_rejected",
                "metrics.jsonl", "tensorboard", "export"}


class WorkdirError(errors.TlJaxError, ValueError):
  """A workdir that cannot be used as asked; the message names the fix."""


class WorkdirNotWritableError(WorkdirError):
  """The workdir cannot be created or written."""


class WorkdirLockedError(WorkdirError):
  """Another live run holds the workdir."""


class WorkdirMismatchError(WorkdirError):
  """The workdir holds checkpoints of a different model or data set."""


@dataclasses.dataclass
class Workdir:
  """Paths of one run directory; holds the lock until `close()` or process exit."""
  path: pathlib.Path
  _lock: filelock.BaseFileLock | None = dataclasses.field(default=None, repr=False)

  @property
  def checkpoints(self) -> pathlib.Path:
    return self.path / "checkpoints"

  @property
  def export(self) -> pathlib.Path:
    return self.path / "export"

  @property
  def metrics_file(self) -> pathlib.Path:
    return self.path / "metrics.jsonl"

  @property
  def tensorboard(self) -> pathlib.Path:
    return self.path / "tensorboard"

  @property
  def run_file(self) -> pathlib.Path:
    return self.path / RUN_FILE

  @property
  def config_file(self) -> pathlib.Path:
    return self.path / CONFIG_FILE

  def close(self) -> None:
    """Releases the lock (process exit does it too)."""
    if self._lock is not None:
      self._lock.release()
      self._lock = None

  def record_config(self, config: Any) -> None:
    """config.json on the first run; a changed config on a resume goes to
    config.resumed-<time>.json. Call it once the checkpoint restored: a refused resume must
    leave no record of a run that never happened."""
    if self._lock is not None and config is not None:
      _record_config(self, config)

  def __enter__(self) -> "Workdir":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def config_fingerprint(config: Any, **extra: Any) -> dict[str, Any]:
  """What must match for a checkpoint to be resumable: model, init, datasets, heads, classes.

  `extra` adds what only the loaded model knows (its description dict, the resolved
  num_classes). Hyper-parameters such as the learning rate or num_steps are left out on
  purpose: changing them on resume is legitimate (the change is recorded in config.*.json).
  """
  model, data = config.model, config.data
  fingerprint = {
      "model": {k: model[k] for k in ("name", "init", "num_classes", "image_size",
                                      "param_dtype", "pooling") if k in model},
      "data": {domain: {"name": data[domain].name, "head": data[domain].head}
               for domain in ("target", "source") if domain in data},
  }
  fingerprint.update(extra)
  return _jsonable(fingerprint)


def open_workdir(path: str | os.PathLike, *, fingerprint: Mapping[str, Any],
                 config: Any = None, overwrite: bool = False,
                 primary: bool | None = None) -> Workdir:
  """Creates/locks `path`, checks it holds no other model's run, records run.json/config.json.

  overwrite: start anew; a previous run in `path` is moved to a sibling `<name>.old-<time>`.
  config: recorded now in config.json (config.resumed-<time>.json if changed); the trainer
  passes None and calls `record_config` once its checkpoint restored.
  primary: whether this process writes (default: jax.process_index() == 0). Other processes
  of a multi-host job only check compatibility; they neither lock nor write.
  Raises WorkdirNotWritableError, WorkdirLockedError, WorkdirMismatchError (all ValueError).
  """
  if primary is None:
    import jax
    primary = jax.process_index() == 0
  path = pathlib.Path(path).expanduser().absolute()
  fingerprint = _jsonable(dict(fingerprint))
  if not primary:
    if not overwrite:
      _check_compatible(path, fingerprint)
    return Workdir(path)

  if path.is_dir():  # refuse another run's or the user's directory before writing into it
    _check_foreign_files(path)
    if not overwrite:
      _check_compatible(path, fingerprint)
  _ensure_writable(path)
  workdir = Workdir(path, _acquire_lock(path))
  try:  # again under the lock: another process may have written in between
    _check_foreign_files(path)
    if overwrite:
      if any(p.name != LOCK_FILE for p in path.iterdir()):
        _move_aside(path)
    else:
      _check_compatible(path, fingerprint)
    _record(workdir, fingerprint)
    if config is not None:
      _record_config(workdir, config)
  except BaseException:
    workdir.close()
    raise
  return workdir


# ---------------------------------------------------------------------------------------------
# Writable

def _ensure_writable(path: pathlib.Path) -> None:
  fix = "choose a writable --workdir"
  try:
    path.mkdir(parents=True, exist_ok=True)
  except FileExistsError:
    raise WorkdirNotWritableError(f"workdir {path} exists and is not a directory; {fix}") from None
  except OSError as e:
    raise WorkdirNotWritableError(
        f"cannot create workdir {path}: {e.strerror or e}; {fix}") from None
  # Permission bits do not stop root, a read-only mount does: try a real write.
  probe = path / f".write-probe-{os.getpid()}"
  try:
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise WorkdirNotWritableError(
        f"cannot write to workdir {path}: {e.strerror or e}; {fix}") from None


# ---------------------------------------------------------------------------------------------
# Lock: filelock's FileLock is flock on Unix, released by the kernel when the holder dies, so a
# SIGKILLed run never blocks the rerun. One lock object per path per process (is_singleton), so
# opening the same workdir twice in a process nests instead of deadlocking.

def _write_pid(fd: int) -> None:
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _acquire_lock(path: pathlib.Path) -> filelock.BaseFileLock:
  # on_acquired also turns off filelock's soft (marker-file) fallback: a marker outlives a
  # killed run, which would lock the workdir until someone deletes it.
  lock = filelock.FileLock(path / LOCK_FILE, timeout=0, thread_local=False, is_singleton=True,
                           on_acquired=_write_pid)
  try:
    lock.acquire(blocking=False)
  except filelock.Timeout:
    try:
      holder = (path / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
      holder = "unknown"
    raise WorkdirLockedError(
        f"workdir {path} is in use by another run (pid {holder}); wait for it to finish "
        "or choose another --workdir") from None
  except OSError as e:
    raise WorkdirNotWritableError(f"cannot lock workdir {path}: {e.strerror or e}") from None
  return lock


# ---------------------------------------------------------------------------------------------
# Compatibility

def _holds_checkpoints(path: pathlib.Path) -> bool:
  ckpt = path / "checkpoints"
  return ckpt.is_dir() and any(p.name[:1].isdigit() for p in ckpt.iterdir())


def _check_foreign_files(path: pathlib.Path) -> None:
  if (path / RUN_FILE).exists():
    return
  foreign = sorted(p.name for p in path.iterdir()
                   if p.name not in _OWN_ENTRIES and not p.name.startswith("."))
  if foreign:
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise WorkdirMismatchError(
        f"workdir {path} is not empty and is not a tl_jax run directory (found {shown}); "
        "choose a new or empty --workdir")


def _check_compatible(path: pathlib.Path, fingerprint: dict[str, Any]) -> None:
  """A recorded fingerprint that differs is an error only where checkpoints would be resumed."""
  run_file = path / RUN_FILE
  if not run_file.exists() or not _holds_checkpoints(path):
    return
  try:
    recorded = json.loads(run_file.read_text())["fingerprint"]
  except (ValueError, KeyError, TypeError):
    raise WorkdirMismatchError(
        f"workdir {path} holds checkpoints but its {RUN_FILE} is unreadable; choose a new "
        f"--workdir, or pass {OVERWRITE_FLAG} to move the old run aside") from None
  diffs = config_diff(recorded, fingerprint)
  if diffs:
    shown = "; ".join(diffs[:3]) + ("; ..." if len(diffs) > 3 else "")
    raise WorkdirMismatchError(
        f"workdir {path} holds a checkpoint of a different model or data ({shown}); use a new "
        f"--workdir, or pass {OVERWRITE_FLAG} to move the old run aside (nothing is deleted)")


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
  """'key.path: old -> new' for every leaf that differs between two JSON-like trees."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new), key=str):
      name = f"{prefix}.{key}" if prefix else str(key)
      if key not in old:
        out.append(f"{name}: not recorded -> {new[key]!r}")
      elif key not in new:
        out.append(f"{name}: {old[key]!r} -> missing")
      else:
        out.extend(config_diff(old[key], new[key], name))
    return out
  return [] if old == new else [f"{prefix or 'fingerprint'}: {old!r} -> {new!r}"]


def _move_aside(path: pathlib.Path) -> None:
  """Moves every entry but the held lock into a sibling WORKDIR.old-<time>; deletes nothing."""
  aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
  n = 0
  while aside.exists():
    n += 1
    aside = aside.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
  try:
    aside.mkdir()
    for entry in path.iterdir():
      if entry.name != LOCK_FILE:
        entry.rename(aside / entry.name)
  except OSError as e:
    raise WorkdirNotWritableError(
        f"cannot move the old run in {path} aside to {aside}: {e.strerror or e}; "
        "move it yourself or choose a new --workdir") from None
  logging.warning("Moved the previous run in %s to %s (%s).", path, aside, OVERWRITE_FLAG)


# ---------------------------------------------------------------------------------------------
# Records

def _record(workdir: Workdir, fingerprint: dict[str, Any]) -> None:
  if not _holds_checkpoints(workdir.path) or not workdir.run_file.exists():
    _write_json(workdir.run_file, {"fingerprint": fingerprint,
                                   "tl_jax_version": tl_jax.__version__,
                                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  else:
    recorded = json.loads(workdir.run_file.read_text()).get("tl_jax_version")
    if recorded != tl_jax.__version__:
      logging.warning("Workdir %s was written by tl_jax %s; this is %s.", workdir.path, recorded,
                      tl_jax.__version__)


def _record_config(workdir: Workdir, config: Any) -> None:
  resolved = _config_dict(config)
  if not workdir.config_file.exists():
    _write_json(workdir.config_file, resolved)
    return
  try:
    first = json.loads(workdir.config_file.read_text())
  except ValueError:
    first = None
  if first != resolved:
    changed = (config_diff(first, resolved) if isinstance(first, dict)
               else ["config.json unreadable"])
    name = f"config.resumed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    _write_json(workdir.path / name, resolved)
    logging.warning("Config differs from the first run's config.json (%s); recorded in %s.",
                    "; ".join(changed[:5]) + ("; ..." if len(changed) > 5 else ""), name)


def _config_dict(config: Any) -> dict[str, Any]:
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return _jsonable(config)


def _jsonable(value: Any) -> Any:
  """Tuples become lists, non-JSON leaves their repr: what a JSON round trip gives back."""
  return json.loads(json.dumps(value, default=repr))


def _write_json(path: pathlib.Path, value: Any) -> None:
  """Write-then-rename: a crash never leaves a half-written file behind."""
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)
