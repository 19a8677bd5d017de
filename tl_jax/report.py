"""What an experiment script leaves in its output folder: table.md, results.json and a figure."""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def figure(path: str | pathlib.Path, nrows: int = 1, ncols: int = 1, *,
           figsize: tuple[float, float] = (6, 4), dpi: int = 110) -> Iterator[tuple[Any, Any]]:
  """`with figure(path) as (fig, ax):` draw; on exit the figure is laid out, saved to `path`
  and closed (so a script's plots are only what it draws)."""
  plt = pyplot()
  fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
  try:
    yield fig, axes
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
  finally:
    plt.close(fig)
