"""What an experiment script leaves in its output folder: table.md, results.json and a figure."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from tl_jax import extras


def write(out: str | pathlib.Path, table: str, results: Any, *,
          plot: Callable[[Any, pathlib.Path], None] | None = None, figure: str = '') -> str:
  """Writes OUT/table.md, OUT/results.json and (with `plot(results, path)`) OUT/<figure>;
  returns the table."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'table.md').write_text(table.rstrip('\n') + '\n')
  (out / 'results.json').write_text(json.dumps(results, indent=1))
  if plot is not None:
    plot(results, out / figure)
  return table


def pyplot():
  """matplotlib.pyplot drawing to files (no display needed), or one error naming the extra."""
  matplotlib = extras.require('plots')
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
