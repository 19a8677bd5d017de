"""What can go wrong with a checkpoint, as one family of user-facing errors."""

from __future__ import annotations

from tl_jax import errors


class CheckpointError(errors.TlJaxError, ValueError):
  """A checkpoint that cannot be written or read as asked; the message names the fix."""


class CorruptCheckpointError(CheckpointError):
  """One step's files are truncated, corrupted or incomplete."""


class NoUsableCheckpointError(CheckpointError):
  """Checkpoints exist but none of them restores."""


class CheckpointTemplateError(CheckpointError):
  """The restore template does not have the saved tree structure or shapes (a caller bug)."""


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written (disk full, quota, file size limit, permissions)."""


class NonFiniteStateError(CheckpointError):
  """A state with NaN/inf values: refused, so it never displaces a good checkpoint."""
