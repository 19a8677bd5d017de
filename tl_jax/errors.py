"""The one base class of tl_jax's user-facing errors.

An error a user can fix (a config value, a file, a size) subclasses TlJaxError and says the fix
in one line; the CLI prints that line without a traceback (--debug shows it). Each subclass also
keeps the builtin type it refines (ValueError, FileNotFoundError, ...), so `except ValueError`
in user code goes on working.
"""


class TlJaxError(Exception):
  """A problem with the user's input, in one line that names the fix."""


class BatchSizeError(TlJaxError, ValueError):
  """A batch size that the data or the devices cannot use."""
