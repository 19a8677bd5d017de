"""Running a sweep: this host's runs one after another, finished ones skipped.

Runs execute in child processes by default: peak RSS is a per-process figure, so only a fresh
process measures one run's memory; a crash or OOM ends that run, not the sweep; nothing (device
buffers, compiled programs) accumulates over a long sweep. The children share a persistent
compilation cache (SWEEPDIR/.jax_cache), so runs that differ only in seed or data compile
nothing. The in-process runner calls loop.train directly (faster start, for tests and tiny
sweeps; its peak RSS is the sweep process's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tl_jax.sweep import grid
from tl_jax.sweep import measure
from tl_jax.sweep import results as results_lib
from tl_jax.sweep import tables

RUNNERS = ('subprocess', 'inprocess')


@dataclasses.dataclass
class SweepSpec:
  """Where a sweep comes from, so a child process can rebuild the same runs."""
  config: str  # path[:arg] of the sweep file
  overrides: grid.Overrides = dataclasses.field(default_factory=dict)  # on top of get_config()

  def runs(self) -> list[grid.Run]:
    base, sweep = grid.load_sweep_file(self.config)
    return grid.expand(grid.apply_overrides(base, self.overrides), sweep)

  def table_settings(self) -> dict[str, Any]:
    return grid.table_settings(self.config)


def _child_command(spec: SweepSpec, sweepdir: pathlib.Path, run: grid.Run) -> list[str]:
  return [sys.executable, '-m', 'tl_jax.sweep', f'--config={spec.config}',
          f'--sweepdir={sweepdir}', f'--run={run.name}',
          f'--overrides_json={json.dumps(results_lib.jsonable(spec.overrides))}']


def _child_env(sweepdir: pathlib.Path) -> dict[str, str]:
  env = dict(os.environ)
  repo = str(pathlib.Path(__file__).resolve().parents[2])  # the directory holding tl_jax/
  env['PYTHONPATH'] = os.pathsep.join(p for p in (repo, env.get('PYTHONPATH')) if p)
  env.setdefault('JAX_COMPILATION_CACHE_DIR', str(sweepdir / '.jax_cache'))
  env.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '1')
  env.setdefault('USE_TORCH', '0')
  env.setdefault('PYTHONUNBUFFERED', '1')
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  env.setdefault('TOKENIZERS_PARALLELISM', 'false')
  return env


def _echo(line: str, verbose: bool) -> bool:
  """Child output shown on the console: everything with verbose, else evals, results and every
  10th step (the rest is in SWEEPDIR/logs/<run>.log)."""
  if verbose:
    return True
  match = re.match(r'step (\d+)/(\d+) ', line)
  if match:
    return int(match.group(1)) % 10 == 0 or match.group(1) == match.group(2)
  if not line.strip() or '\x1b[' in line or '%|' in line:  # blank and tqdm bars
    return False
  return not re.match(r'[IW]\d{4} ', line)  # absl info/warning lines stay in the log


def _run_child(spec: SweepSpec, sweepdir: pathlib.Path, run: grid.Run, verbose: bool,
               printer: Callable[[str], None]) -> int:
  log = sweepdir / 'logs' / f'{run.name}.log'
  log.parent.mkdir(parents=True, exist_ok=True)
  with open(log, 'a', encoding='utf-8') as f, subprocess.Popen(
      _child_command(spec, sweepdir, run), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env=_child_env(sweepdir), bufsize=1) as child:
    tail: list[str] = []
    for line in child.stdout:
      f.write(line)
      f.flush()  # the log is where a running run is watched (tail -f)
      tail = (tail + [line.rstrip()])[-15:]
      if _echo(line, verbose):
        printer('    ' + line.rstrip())
    code = child.wait()
  if code:
    printer(f'    ... last lines of {log}:')
    for line in tail:
      printer('    | ' + line)
  return code


def run_sweep(spec: SweepSpec, sweepdir: str | os.PathLike, *, only: str | None = None,
              runner: str = 'subprocess', prune_checkpoints: bool = False,
              verbose: bool = False, printer: Callable[[str], None] = print) -> list[dict]:
  """Runs this host's share of the sweep (skipping finished runs); returns the results of the
  whole sweep found in `sweepdir` (also written as runs.json/.csv and table.md)."""
  if runner not in RUNNERS:
    raise grid.SweepError(f'--runner={runner!r}; valid: {", ".join(RUNNERS)}')
  sweepdir = pathlib.Path(sweepdir).absolute()
  runs = spec.runs()
  mine = grid.shard(runs, only)
  changed = results_lib.changed_runs(mine, sweepdir)
  if changed:
    raise grid.SweepError(
        f'{len(changed)} finished run(s) in {sweepdir} were trained with another config than '
        'the sweep gives them now, so their results would be reused as if current:\n  '
        + '\n  '.join(changed) + '\nMove those run directories away (or use another '
        '--sweepdir) to rerun them; nothing was run.')
  sweepdir.mkdir(parents=True, exist_ok=True)
  todo = [r for r in mine if not results_lib.is_finished(sweepdir / r.name)]
  printer(f'sweep {spec.config}: {len(runs)} runs, {len(mine)} on this host'
          f'{f" ({only})" if only else ""}, {len(mine) - len(todo)} already finished, '
          f'{len(todo)} to run in {sweepdir}')
  failed = []
  sweep_start = time.monotonic()
  for i, run in enumerate(todo):
    workdir = sweepdir / run.name
    state = 'resuming' if (workdir / 'checkpoints').is_dir() else 'starting'
    elapsed = time.monotonic() - sweep_start
    eta = f', ETA {elapsed / i * (len(todo) - i) / 60:.1f} min' if i else ''
    printer(f'[{i + 1}/{len(todo)}] {state} {run.name} ({elapsed / 60:.1f} min elapsed{eta})')
    if runner == 'inprocess':
      try:
        measure.execute(run, workdir)
        code = 0
      except Exception as e:  # one failed run does not end the sweep
        printer(f'    failed: {type(e).__name__}: {e}')
        code = 1
    else:
      code = _run_child(spec, sweepdir, run, verbose, printer)
    result = results_lib.read_result(workdir)
    if code or result is None:
      failed.append(run.name)
      printer(f'    FAILED {run.name} (exit {code}); rerun the sweep to retry it')
      continue
    if prune_checkpoints:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(workdir / 'checkpoints', ignore_errors=True)
    accs = {k: v for k, v in result['final'].items() if k.endswith('accuracy')}
    median = result['median_step_s']  # None when no step was timed (a one-step run)
    timing = f', median step {median * 1e3:.0f} ms' if median else ''
    printer(f'    done {run.name}: ' + '  '.join(f'{k} {v:.4f}' for k, v in sorted(accs.items()))
            + f'  ({result["wall_s"]:.0f} s{timing})')
  results = _write_report(spec, runs, sweepdir)
  if failed:
    raise grid.SweepError(f'{len(failed)} run(s) failed: {", ".join(failed)}; see '
                          f'{sweepdir / "logs"}; rerun the same command to retry them')
  return results


def report_only(spec: SweepSpec, sweepdir: str | os.PathLike, *,
                printer: Callable[[str], None] = print) -> list[dict]:
  """--report_only: the tables of the finished runs, nothing trained. A run trained with
  another config than the sweep gives it now is named (its row is what it was trained as)."""
  runs = spec.runs()
  for line in results_lib.changed_runs(runs, sweepdir):
    printer(f'WARNING: trained with another config than the sweep gives now: {line}')
  return _write_report(spec, runs, sweepdir)


def _write_report(spec: SweepSpec, runs: list[grid.Run],
                  sweepdir: str | os.PathLike) -> list[dict]:
  """Every run's result (sweep order) into runs.json/.csv and table.md, laid out as the sweep
  file says (BASELINE, COLUMNS)."""
  results = results_lib.collect(runs, sweepdir)
  tables.write_outputs(results, sweepdir, **spec.table_settings())
  return results
