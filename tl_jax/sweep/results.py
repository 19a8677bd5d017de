"""A sweep's files: each run's result marker and metrics history, read back in sweep order.

The marker (SWEEPDIR/<run>/sweep_result.json) is what makes a run finished: written whole or not
at all, so a rerun of an interrupted sweep skips exactly the runs that completed.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from tl_jax.sweep import grid

RESULT_FILE = 'sweep_result.json'


def is_finished(workdir: str | os.PathLike) -> bool:
  return (pathlib.Path(workdir) / RESULT_FILE).exists()


def read_result(workdir: str | os.PathLike) -> dict[str, Any] | None:
  path = pathlib.Path(workdir) / RESULT_FILE
  return json.loads(path.read_text()) if path.exists() else None


def write_result(workdir: str | os.PathLike, result: Mapping[str, Any]) -> None:
  """The marker, atomically. Every process of a multi-host run writes it (hosts may not share
  a disk, and each host decides from its own SWEEPDIR which runs to skip)."""
  workdir = pathlib.Path(workdir)
  tmp = workdir / f'.{RESULT_FILE}.tmp-{socket.gethostname()}-{os.getpid()}'
  tmp.write_text(json.dumps(jsonable(result), indent=1))
  os.replace(tmp, workdir / RESULT_FILE)


def read_history(workdir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
  """(train records, eval records) of a run's metrics.jsonl."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  train, evals = [], []
  if path.exists():
    for line in path.read_text().splitlines():
      record = json.loads(line)
      (evals if any(k.count('/') == 2 for k in record) else train).append(record)
  return train, evals


def run_result(workdir: str | os.PathLike) -> dict[str, Any]:
  """The eval record a run reports as its result (what its `Done:` printed): with a
  train.best_metric in its config.json, the record of the best step (on a tie the later one,
  as the checkpointer keeps it); otherwise the last. {} before any eval."""
  _, evals = read_history(workdir)
  config = pathlib.Path(workdir) / 'config.json'
  train = json.loads(config.read_text()).get('train', {}) if config.exists() else {}
  metric, sign = train.get('best_metric'), (-1 if train.get('best_mode') == 'min' else 1)
  scored = [r for r in evals if isinstance(r.get(metric), (int, float))] if metric else []
  if scored:
    return max(scored, key=lambda r: (sign * r[metric], r['step']))
  return evals[-1] if evals else {}


def changed_runs(runs: Sequence[grid.Run], sweepdir: str | os.PathLike) -> list[str]:
  """'name: what changed' for every finished run whose recorded config is not the one the sweep
  gives it now (an edited config file or sweep row): its result would be reused silently.
  Results written before configs were recorded are compared by their overrides."""
  from tl_jax.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  changed = []
  for run in runs:
    result = read_result(pathlib.Path(sweepdir) / run.name)
    if result is None:
      continue
    if 'config' in result:
      diff = workdir_lib.config_diff(result['config'], jsonable(run.config.to_dict()))
    else:
      diff = workdir_lib.config_diff(result.get('overrides'), jsonable(run.overrides))
    if diff:
      changed.append(f'{run.name}: ' + '; '.join(diff[:3]) + ('; ...' if len(diff) > 3 else ''))
  return changed


def collect(runs: Sequence[grid.Run], sweepdir: str | os.PathLike) -> list[dict]:
  """The result of every run in sweep order; unfinished runs as {'name', 'group', 'pending'}."""
  sweepdir = pathlib.Path(sweepdir)
  out = []
  for run in runs:
    result = read_result(sweepdir / run.name)
    out.append(result if result is not None else
               {'name': run.name, 'group': run.group, 'index': run.index, 'pending': True,
                'overrides': jsonable(run.overrides)})
  return out


def jsonable(value: Any) -> Any:
  """`value` as strict JSON data: NaN/inf become null, other objects their repr."""
  def clean(x):
    if isinstance(x, float) and not math.isfinite(x):
      return None
    if isinstance(x, dict):
      return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    return x
  return clean(json.loads(json.dumps(value, default=repr)))


_jsonable = jsonable
