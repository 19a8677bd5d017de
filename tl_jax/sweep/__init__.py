"""Sweeps: one base config, a list of overrides, one run (and workdir) per override.

A sweep file is a config file with a second function:

  def get_config(arg=None):   # the base config, as for `tl-jax train`
    ...
  def get_sweep(arg=None):    # one dict of dotted-key overrides per run
    return sweep.product(
        [{'name': 'full', 'transfer.freeze_preset': 'all'},
         {'name': 'head', 'transfer.freeze_preset': 'head_only'}],
        sweep.axis('seed', [0, 1, 2]))

Run it:
  tl-jax sweep --config=configs/sweeps/x.py[:arg] --sweepdir=runs/x \\
      [--config.train.num_steps=50 ...] [--only=K/N] [--runner=subprocess|inprocess]

Each run trains in SWEEPDIR/<run name> through the normal loop (so a half-finished run resumes
from its checkpoint) and, once done, gets SWEEPDIR/<run name>/sweep_result.json: final metrics,
wall time, median step time, examples/sec, peak RSS, trainable parameters, optimizer-state
bytes, the learning curve. A run with that file is skipped, so rerunning an interrupted sweep
finishes it. After the runs, SWEEPDIR/runs.{json,csv} list every run and SWEEPDIR/table.md
gives mean ± std over seeds (runs whose overrides differ only in `seed` form one row), with the
95% confidence interval of the mean for eval metrics.

Several hosts: every host runs the same command with its own --only=K/N (runs i ≡ K mod N) on a
shared SWEEPDIR; any host (or a laptop) then writes the table with --report_only.

One job per module:
  grid.py      declaring (axis, product, chain) and expanding into named runs (expand, shard)
  runner.py    running this host's runs, in child processes or in process (run_sweep)
  measure.py   one run: train, measure, write its result marker (execute, state_costs)
  results.py   reading a sweep's files back (read_result, read_history, collect)
  tables.py    mean ± std ± CI over seeds, paired Δ vs a baseline, runs.json/.csv, table.md
  cli.py       `tl-jax sweep` / `python -m tl_jax.sweep`
Every public name is re-exported here: `from tl_jax import sweep; sweep.product(...)`.
"""

from tl_jax.sweep.cli import main
from tl_jax.sweep.grid import (NAME_KEY, SEED_KEY, Overrides, Run, SweepError, _slug,
                               apply_overrides, axis, chain, expand, load_sweep_file, product,
                               run_name, shard, slug)
from tl_jax.sweep.measure import execute, state_costs, step_times
from tl_jax.sweep.results import (RESULT_FILE, _jsonable, collect, is_finished, jsonable,
                                  read_history, read_result, run_result, write_result)
from tl_jax.sweep.runner import RUNNERS, SweepSpec, report_only, run_sweep
from tl_jax.sweep.tables import (COLUMN_TITLES, DEFAULT_COLUMNS, T95, aggregate, ci95,
                                 format_delta, markdown_table, paired_deltas, results_table,
                                 t95, value, write_outputs)

__all__ = [
    'COLUMN_TITLES', 'DEFAULT_COLUMNS', 'NAME_KEY', 'Overrides', 'RESULT_FILE', 'RUNNERS', 'Run',
    'SEED_KEY', 'SweepError', 'SweepSpec', 'T95', 'aggregate', 'apply_overrides', 'axis', 'chain',
    'ci95', 'collect', 'execute', 'expand', 'format_delta', 'is_finished', 'jsonable',
    'load_sweep_file', 'main', 'markdown_table', 'paired_deltas', 'product', 'read_history',
    'read_result', 'report_only', 'results_table', 'run_result', 'run_name', 'run_sweep',
    'shard', 'slug', 'state_costs',
    'step_times', 't95', 'value', 'write_outputs', 'write_result',
]
