"""The base of our builders: offline GeneratorBasedBuilders stored as array_record."""

from __future__ import annotations

import sys

from etils import epath
import tensorflow_datasets as tfds


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Generates from local data; nothing to download, no checksums file."""

  # TFDS looks for a checksums file next to the builder's code and, for an editable install,
  # needs the optional `importlib_resources` to find that code; give it the file directly.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:  # pytype: disable=signature-mismatch
    return epath.Path(sys.modules[cls.__module__].__file__)
