"""What every experiments/*.py script shares, so each says only what it measures.

A script is, in this order:

  from tl_jax import harness
  harness.setup()                      # environment, before anything imports jax
  ...imports, flags (harness.define_out / define_config / define_sweep)...
  def main(argv): ...                  # results -> harness.write(out, table, results, ...)
  if __name__ == '__main__':
    harness.run(main)

Seeds are runs of a sweep (tl_jax.sweep): a table script runs its sweep file, which resumes and
skips finished runs, and aggregates mean ± std over the runs that differ only in seed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app, flags

from tl_jax import errors
from tl_jax import machine_load
from tl_jax import report
from tl_jax import sweep

# What a script's process needs before jax, tokenizers or transformers are first imported.
ENV_DEFAULTS = {'USE_TORCH': '0', 'TOKENIZERS_PARALLELISM': 'false', 'TF_CPP_MIN_LOG_LEVEL': '3'}
THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
RUNS_DIR = 'runs'
_LOAD_AT_SETUP: list[tuple[float, float, float]] = []  # before the script's heavy imports


class HarnessError(errors.TlJaxError, RuntimeError):
  """A script set up in the wrong order (the environment after jax was imported)."""


def setup(*, devices: int = 0, threads: int = 0, torch: bool = False) -> None:
  """Environment defaults (a variable already set wins); `devices`: N fake CPU devices, `threads`:
  BLAS/OpenMP threads, `torch`: transformers' PyTorch classes on (a script that compares with
  PyTorch). They only act before jax first imports, hence the error after it."""
  if not _LOAD_AT_SETUP:
    _LOAD_AT_SETUP.append(os.getloadavg())
  if torch:
    os.environ.setdefault('USE_TORCH', '1')
  if (devices or threads) and 'jax' in sys.modules:
    raise HarnessError('harness.setup(devices=, threads=) must run before jax is imported: call '
                       'it at the top of the script, before its other imports')
  for key, value in ENV_DEFAULTS.items():
    os.environ.setdefault(key, value)
  if devices:
    flag = f'--xla_force_host_platform_device_count={devices}'
    os.environ['XLA_FLAGS'] = ' '.join(f for f in (os.environ.get('XLA_FLAGS'), flag) if f)
  if threads:
    for key in THREAD_VARS:
      os.environ.setdefault(key, str(threads))


def load_watch() -> machine_load.LoadWatch:
  """A LoadWatch whose start load average is the one setup() saw, before the imports."""
  return machine_load.LoadWatch(start_loadavg=_LOAD_AT_SETUP[0] if _LOAD_AT_SETUP else None)


def run(main: Callable[[list[str]], Any], *, timed: bool = False) -> None:
  """absl's app.run (flags, --help) after setup(). `timed`: a benchmark; the machine's load is
  recorded around `main` and the verdict printed after it: timings taken under load say so."""
  setup()
  if not timed:
    app.run(main)
    return

  def timed_main(argv):
    watch = load_watch()
    print(f'load average at the start {watch.start.loadavg}; other busy processes: '
          f'{", ".join(watch.start.busy) or "none"}', flush=True)
    result = main(argv)
    print()
    for line in watch.finish().lines():
      print(line)
    return result
  app.run(timed_main)


# -------------------------------------------------------------------------------------------
# Flags: one style (absl), the same names in every script.
# -------------------------------------------------------------------------------------------

def config_path(name: str) -> str:
  """A shipped config file[:arg] by its name under configs/ (found wherever the script runs)."""
  from tl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  path, sep, arg = name.partition(':')
  return str(config_lib.resolve_path(path)) + sep + arg


def _key_flags_of_caller(*names: str) -> None:
  """Lists the flags under the calling script in its --help (absl shows a module's own)."""
  module = sys._getframe(2).f_globals.get('__name__', '')  # pylint: disable=protected-access
  module = sys.argv[0] if module == '__main__' else module  # how absl names the main module
  for name in names:
    flags.FLAGS.register_key_flag_for_module(module, flags.FLAGS[name])


def define_config(default: str, help_text: str = 'config file path[:arg]'):
  """--config (ml_collections config_flags, with --config.KEY=VALUE overrides)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  holder = config_flags.DEFINE_config_file('config', config_path(default), help_text)
  _key_flags_of_caller('config')
  return holder


def define_out(name: str):
  """--out, the output folder; by default runs/<name>."""
  holder = flags.DEFINE_string('out', f'{RUNS_DIR}/{name}', 'output folder')
  _key_flags_of_caller('out')
  return holder


@dataclasses.dataclass(frozen=True)
class SweepFlags:
  """The flags of a script that runs a sweep file; `run()` runs it as they say."""
  sweep: Any
  only: Any
  runner: Any
  report_only: Any

  def run(self, sweepdir: str | os.PathLike, *, sweep_file: str = '', groups: Sequence[str] = (),
          prune_checkpoints: bool = False) -> list[dict]:
    """Runs `sweep_file` (default: --sweep) in `sweepdir` as the flags say."""
    return run_sweep(sweep_file or self.sweep.value, sweepdir, groups=groups,
                     only=self.only.value, runner=self.runner.value,
                     report_only=self.report_only.value, prune_checkpoints=prune_checkpoints)

  def baseline(self, sweep_file: str = '') -> str | None:
    """The sweep file's BASELINE group (tables compare every row with it), or None."""
    return sweep.SweepSpec(sweep_file or self.sweep.value).table_settings()['baseline']


def define_sweep(default: str) -> SweepFlags:
  """--sweep=path[:arg] and how to run it: --only=K/N, --runner, --report_only. (Shorter runs
  and fewer seeds are the sweep file's business: path:steps=N,seeds=K, as configs/sweeps/.)"""
  holders = SweepFlags(
      sweep=flags.DEFINE_string('sweep', default, 'sweep file path[:arg] (configs/sweeps/)'),
      only=flags.DEFINE_string('only', '', 'K/N: this process runs the runs i ≡ K (mod N); '
                               'then --report_only collects all'),
      runner=flags.DEFINE_enum('runner', 'subprocess', sweep.RUNNERS,
                               'subprocess: one process per run; inprocess: faster, for tests'),
      report_only=flags.DEFINE_bool('report_only', False,
                                    'only collect finished runs into the table and plot'))
  _key_flags_of_caller('sweep', 'only', 'runner', 'report_only')
  return holders


# -------------------------------------------------------------------------------------------
# Seeds: runs of a sweep; tables: mean ± std over them.
# -------------------------------------------------------------------------------------------

def run_sweep(sweep_file: str, sweepdir: str | os.PathLike, *, groups: Sequence[str] = (),
              overrides: Mapping[str, Any] | None = None, only: str = '',
              runner: str = 'subprocess', report_only: bool = False,
              prune_checkpoints: bool = False) -> list[dict]:
  """Every run's result (sweep order; unfinished ones marked pending). `groups`: run only the
  runs of these groups (run names without the seed); empty = all."""
  spec = sweep.SweepSpec(sweep_file, dict(overrides or {}))
  if groups:
    spec = _GroupSubset(spec.config, spec.overrides, tuple(groups))
  if report_only:
    return sweep.report_only(spec, sweepdir)
  return sweep.run_sweep(spec, sweepdir, only=only or None, runner=runner,
                         prune_checkpoints=prune_checkpoints)


@dataclasses.dataclass
class _GroupSubset(sweep.SweepSpec):
  """A sweep's runs of some groups only (a child process finds its run in the whole sweep)."""
  groups: tuple[str, ...] = ()

  def runs(self) -> list:
    runs = super().runs()
    if unknown := sorted(set(self.groups) - {r.group for r in runs}):
      raise sweep.SweepError(f'{self.config}: no runs named {unknown}; valid: '
                             f'{", ".join(dict.fromkeys(r.group for r in runs))}')
    return [r for r in runs if r.group in self.groups]


def table(results: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
          labels: Mapping[str, str] | None = None, group_title: str = 'run',
          baseline: str | None = None) -> str:
  """Markdown, one row per group (mean ± std over its seeds), groups renamed by `labels`; with
  a `baseline` group, each row's paired difference from it (sweep.results_table)."""
  return sweep.results_table(results, columns, group_title=group_title, baseline=baseline,
                             labels=labels)


def summary(results: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
  """What results.json keeps of a sweep: per group mean/std/n of `columns`, each run's finals."""
  rows = [{k: (dict(zip(('mean', 'std', 'n'), v)) if isinstance(v, tuple) else v)
           for k, v in row.items()} for row in sweep.aggregate(results, columns)]
  runs = [{'name': r['name'], 'group': r['group'], 'seed': r.get('seed'),
           'final': r.get('final'), 'pending': bool(r.get('pending'))} for r in results]
  return {'groups': rows, 'runs': runs}


def write(out: str | os.PathLike, table_md: str, results: Any, *,
          plot: Callable[[Any, pathlib.Path], None] | None = None, figure: str = '') -> str:
  """OUT/table.md, OUT/results.json and the figure (report.write); prints where they are."""
  report.write(out, table_md, results, plot=plot, figure=figure)
  print(table_md)
  print(f'\nwrote {out}/table.md, results.json' + (f', {figure}' if plot else ''))
  return table_md
