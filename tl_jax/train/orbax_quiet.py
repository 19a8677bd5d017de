"""Orbax's noise after a failure it already reported: logged at debug level, not printed.

A handled checkpoint failure (a corrupt step skipped, a full disk turned into one
CheckpointWriteError line) otherwise leaves tracebacks on stderr from orbax's threads, asyncio
and tensorstore callbacks, which read like a crash. These patches are process-wide and
installed once; every other log line and exception passes through unchanged.
"""

from __future__ import annotations

import logging as std_logging
import sys

from absl import logging


def one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  line = line.split(" See full TensorStore details")[0]  # followed by an unreadable repr
  return line[:200] + ("..." if len(line) > 200 else "")


def is_stray_read_error(error: BaseException | None) -> bool:
  text = str(error)
  return (text == "Event loop is closed" or text.startswith("Encountered error while reading")
          or "Error writing" in text)  # a failed async save: raised again as one line


class _StrayReadErrorFilter(std_logging.Filter):
  def filter(self, record: std_logging.LogRecord) -> bool:
    return not (record.exc_info and is_stray_read_error(record.exc_info[1]))


class _FailedSaveLogFilter(std_logging.Filter):
  """Orbax logs a failed async save from each of its threads, with tracebacks; the failure is
  raised again by the next save/wait, where it becomes one CheckpointWriteError line."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno < std_logging.ERROR or "/orbax/" not in record.pathname:
      return True
    message = record.getMessage().lower()
    return not (record.exc_info or "exception" in message or "fail" in message)


def quiet_stray_read_errors() -> None:
  """After a failed restore, tensorstore still completes the other pending reads: they call
  back into orbax's (by then closed) event loop, or end as asyncio tasks whose error nobody
  retrieves. Python prints each as a traceback on stderr, which reads like a crash although the
  failure was handled (CorruptCheckpointError). Log them at debug level instead. Installed
  before a restore: the callbacks may come before the error reaches us."""
  previous = sys.unraisablehook
  if getattr(previous, "_tl_jax_quiet", False):
    return

  def hook(unraisable):
    if is_stray_read_error(unraisable.exc_value):
      logging.debug("after a failed checkpoint read: %s", one_line(unraisable.exc_value))
    else:
      previous(unraisable)
  hook._tl_jax_quiet = True
  sys.unraisablehook = hook
  std_logging.getLogger("asyncio").addFilter(_StrayReadErrorFilter())
  std_logging.getLogger("absl").addFilter(_FailedSaveLogFilter())
  # Tensorstore prints the exceptions of its callbacks into a closed loop with PyErr_Print,
  # which goes through sys.excepthook.
  previous_excepthook = sys.excepthook

  def excepthook(kind, value, tb):
    if is_stray_read_error(value):
      logging.debug("after a failed checkpoint read/write: %s", one_line(value))
    else:
      previous_excepthook(kind, value, tb)
  sys.excepthook = excepthook


class quiet_absl:
  """Drops orbax's absl log lines containing `text` for the duration (expected, not news)."""

  def __init__(self, text: str):
    self._text = text

  def __enter__(self):
    text = self._text
    self._filter = type("_Filter", (std_logging.Filter,), {
        "filter": lambda _, record: text not in record.getMessage()})()
    std_logging.getLogger("absl").addFilter(self._filter)

  def __exit__(self, *exc):
    std_logging.getLogger("absl").removeFilter(self._filter)


class quiet_orbax_metrics_warning:
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
