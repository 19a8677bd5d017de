"""Errors of the data package: each names what is wrong and the fix (the CLI prints one line)."""

from tl_jax import errors
from tl_jax.errors import BatchSizeError  # one class for the data and the devices


class DataError(errors.TlJaxError, ValueError):
  """A data configuration or a dataset that cannot be used as asked."""


class DatasetNotFoundError(DataError):
  """An unknown dataset name, config or split."""


class DatasetNotPreparedError(DataError, FileNotFoundError):
  """A TFDS dataset that is not on disk and cannot be prepared here (offline, or needs TF)."""


class EmptyDatasetError(DataError):
  """A split or a folder with no examples."""


class BadExampleError(DataError):
  """An example that the pipeline cannot use (label out of range, image of the wrong rank)."""
