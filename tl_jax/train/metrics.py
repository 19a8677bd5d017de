"""Reporting: console progress, WORKDIR/metrics.jsonl, TensorBoard; device scalars to floats;
early stopping.

metrics.jsonl holds one JSON object per logged train step (`step`, `loss`, `examples_per_sec`,
for text `tokens_per_sec` (real, non-pad tokens), the step's other metrics) and per eval
(`step`, `<domain>/<split>/<metric>`). On resume, lines past the restored step are dropped
first: those steps run again and would appear twice.
Only process 0 writes anything.

Every device scalar the train package reads goes through `scalar` / `to_host_floats`, so a
replicated or multi-host value is read one way everywhere.

Usage (the loop; eval results come from loop.evaluate_params, over step.summarize_eval):
  writer = MetricsWriter(workdir.path, total_steps=n, examples_per_step=global_batch,
                         resume_step=restored.step if restored else None)
  writer.log_train(step, to_host_floats(device_metrics))  # {"loss": ..., "lr": ...}
  with writer.paused():   # eval/checkpoint time is not training throughput
    writer.log_eval(step, evaluate_params(core, state.params, evals))  # 'target/test/accuracy'
  writer.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Iterator, Mapping, TextIO

from absl import logging
import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def scalar(value: Any, name: str = "value", *, replicated: bool = False) -> float:
  """A Python float from a jax/numpy scalar or a one-element array (waits for the device).

  replicated: `value` holds one copy per device (pmap's outputs) and the first is read;
  otherwise more than one element is an error (a per-device value logged by mistake).
  """
  array = np.asarray(_local(value))
  if replicated and array.size > 1:
    array = array.reshape(-1)[:1]
  if array.size != 1:
    raise ValueError(f"metric {name!r} has shape {array.shape}; log a scalar (reduce it, or "
                     "take one replica of a pmapped value)")
  return float(array.reshape(()))


def to_host_floats(metrics: Mapping[str, Any], *, replicated: bool = True) -> dict[str, float]:
  """{name: float} of a dict of device scalars (a step's metrics or eval sums), fetched in one
  transfer rather than one blocking read per value."""
  import jax  # pylint: disable=g-import-not-at-top
  host = jax.device_get({k: _local(v) for k, v in metrics.items()})
  return {k: scalar(v, k, replicated=replicated) for k, v in host.items()}


def _local(value: Any) -> Any:
  """This process's copy of a replicated global array of a multi-host run; others as given."""
  if hasattr(value, "addressable_data") and not getattr(value, "is_fully_addressable", True):
    return value.addressable_data(0)
  return value


def _json_value(value: float) -> float | None:
  return value if math.isfinite(value) else None  # JSON has no NaN/inf


class MetricsWriter:
  """Console + metrics.jsonl + TensorBoard for one run; every write is flushed at once."""

  def __init__(self, workdir: str | os.PathLike, *, total_steps: int,
               examples_per_step: int = 0, resume_step: int | None = None,
               enabled: bool | None = None, tensorboard: bool = True,
               stream: TextIO | None = None, progress_bar: bool | None = None):
    """resume_step: the restored checkpoint step, None for a fresh start (older lines go).
    enabled: write at all (default: jax.process_index() == 0).
    progress_bar: one '\\r' line (default: when `stream` is a TTY) instead of a line per log.
    """
    if enabled is None:
      import jax
      enabled = jax.process_index() == 0
    self.enabled = enabled
    self.total_steps = int(total_steps)
    self.examples_per_step = int(examples_per_step)
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self._stream = stream if stream is not None else sys.stdout
    self._bar = self._stream.isatty() if progress_bar is None else progress_bar
    self._bar_open = False
    self._last_step = resume_step or 0
    self._last_time = time.monotonic()
    self._paused_time = 0.0
    self._file = self._tb = None
    if not enabled:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    truncate_after(self.path, resume_step)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      tensorboardX = _import_tensorboardx()
      # purge_step: TensorBoard hides older events at steps the resumed run writes again.
      self._tb = tensorboardX.SummaryWriter(
          str(pathlib.Path(workdir) / TENSORBOARD_DIR), purge_step=(resume_step or 0) + 1,
          flush_secs=5)

  # ------------------------------------------------------------------------------------------

  def log_train(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Logs the train metrics of `step` (must include `loss`), adds `examples_per_sec`, and
    `tokens_per_sec` when they hold `real_tokens` (the real tokens of every step since the last
    log, as TrainCore.host_metrics gives them)."""
    step = int(step)
    now = time.monotonic()
    seconds = max(now - self._last_time - self._paused_time, 1e-9)
    steps_done = max(step - self._last_step, 0)
    self._last_step, self._last_time, self._paused_time = step, now, 0.0
    record = {"step": step}
    record.update({k: scalar(v, k) for k, v in metrics.items()})
    record["examples_per_sec"] = steps_done * self.examples_per_step / seconds
    if "real_tokens" in record:
      record["tokens_per_sec"] = record["real_tokens"] / seconds
    eta = (self.total_steps - step) * seconds / steps_done if steps_done else None
    self._write(record)
    self._console_train(record, eta)
    return record

  def log_eval(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Logs eval metrics, keys like 'target/test/accuracy' (see loop.evaluate_params)."""
    record = {"step": int(step)}
    record.update({k: scalar(v, k) for k, v in metrics.items()})
    self._write(record)
    shown = "  ".join(f"{k} {_format(v)}" for k, v in sorted(record.items()) if k != "step")
    self._print_line(f"eval @ step {record['step']}: {shown}")
    return record

  def log_text(self, message: str) -> None:
    """A console line (process 0 only) that does not break the progress bar."""
    self._print_line(message)

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Time spent inside does not count towards examples/sec and ETA."""
    start = time.monotonic()
    try:
      yield
    finally:
      self._paused_time += time.monotonic() - start

  def close(self) -> None:
    if self._bar_open and self.enabled:
      self._stream.write("\n")
      self._stream.flush()
      self._bar_open = False
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> "MetricsWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # ------------------------------------------------------------------------------------------

  def _write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    line = json.dumps({k: (_json_value(v) if isinstance(v, float) else v)
                       for k, v in record.items()}, allow_nan=False)
    self._file.write(line + "\n")
    self._file.flush()  # a killed run keeps every line logged so far
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and math.isfinite(value):
          self._tb.add_scalar(key, value, record["step"])
      self._tb.flush()

  def _console_train(self, record: dict[str, Any], eta: float | None) -> None:
    if not self.enabled:
      return
    step, total = record["step"], self.total_steps
    eta_text = str(datetime.timedelta(seconds=round(eta))) if eta is not None else "?"
    stats = (f"loss {_format(record['loss']) if 'loss' in record else '?'}  "
             f"{record['examples_per_sec']:.1f} examples/sec  ETA {eta_text}")
    if self._bar:
      filled = int(20 * min(step / total, 1.0)) if total else 20
      self._stream.write(f"\r{step}/{total} [{'#' * filled}{'.' * (20 - filled)}] {stats}\033[K")
      self._stream.flush()
      self._bar_open = True
    else:
      self._stream.write(f"step {step}/{total}  {stats}\n")
      self._stream.flush()

  def _print_line(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar_open:
      self._stream.write("\n")
      self._bar_open = False
    self._stream.write(text + "\n")
    self._stream.flush()


def _import_tensorboardx():
  """tensorboardX (no TensorFlow needed) without the `import torch` it tries at import time,
  only to accept torch tensors (we log floats): 2-5 s of every run's start-up otherwise."""
  if 'torch' in sys.modules:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    return tensorboardX
  sys.modules['torch'] = None  # `import torch` raises ImportError, which tensorboardX expects
  try:
    import tensorboardX  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules['torch']
  return tensorboardX


def _format(value: float) -> str:
  return f"{value:.4f}" if isinstance(value, float) else str(value)


def truncate_after(path: str | os.PathLike, step: int | None) -> int:
  """Drops lines of a metrics.jsonl with `step` > `step` (all of them for None) and any
  unparsable (half-written) line; rewrites atomically. Returns how many lines were dropped."""
  path = pathlib.Path(path)
  if not path.exists():
    return 0
  kept, dropped = [], 0
  for line in path.read_text(encoding="utf-8").splitlines():
    try:
      record_step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
      dropped += 1
      continue
    if step is not None and record_step <= step:
      kept.append(line)
    else:
      dropped += 1
  if dropped:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    logging.info("Dropped %d lines past step %s from %s (they are recomputed).", dropped,
                 step, path)
  return dropped


# ---------------------------------------------------------------------------------------------
# Early stopping

@dataclasses.dataclass
class EarlyStopping:
  """Stops after `patience` evals without improving `metric` by more than `min_delta`.

  patience 0 = off. The state is plain JSON (`state_dict()` / `load_state_dict()`): store it
  in the checkpoint meta so a resumed run keeps counting where it stopped.
  """
  metric: str
  patience: int
  mode: str = "max"
  min_delta: float = 0.0
  best: float | None = None
  best_step: int | None = None
  evals_without_improvement: int = 0

  def __post_init__(self):
    if self.mode not in ("max", "min"):
      raise ValueError(f"early stopping mode must be 'max' or 'min', got {self.mode!r}")
    if self.patience < 0:
      raise ValueError(f"early stopping patience must be >= 0 (0 = off), got {self.patience}")

  def update(self, step: int, metrics: Mapping[str, Any]) -> bool:
    """Records one eval; returns True when training should stop."""
    if self.metric not in metrics:
      raise ValueError(f"early stopping metric {self.metric!r} is not among the eval metrics "
                       f"({', '.join(sorted(metrics))}); set it to one of them")
    value = scalar(metrics[self.metric], self.metric)
    sign = 1.0 if self.mode == "max" else -1.0
    improved = math.isfinite(value) and (
        self.best is None or sign * (value - self.best) > self.min_delta)
    if improved:
      self.best, self.best_step, self.evals_without_improvement = value, int(step), 0
    else:
      self.evals_without_improvement += 1
    return self.should_stop

  @property
  def should_stop(self) -> bool:
    return self.patience > 0 and self.evals_without_improvement >= self.patience

  def state_dict(self) -> dict[str, Any]:
    return {"best": self.best, "best_step": self.best_step,
            "evals_without_improvement": self.evals_without_improvement}

  def load_state_dict(self, state: Mapping[str, Any]) -> None:
    self.best = state.get("best")
    self.best_step = state.get("best_step")
    self.evals_without_improvement = int(state.get("evals_without_improvement", 0))
