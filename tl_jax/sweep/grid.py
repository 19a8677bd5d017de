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
gives mean ± std over seeds (runs whose overrides differ only in `seed` form one row).

Runs execute one after another in child processes by default: peak RSS is a per-process
figure, so only a fresh process measures one run's memory; a crash or OOM ends that run, not
the sweep; nothing (device buffers, compiled programs) accumulates over a long sweep. The
children share a persistent compilation cache (SWEEPDIR/.jax_cache), so runs that differ only
in seed or data compile nothing. `--runner=inprocess` calls loop.train directly (faster start,
for tests and tiny sweeps; its peak RSS is the sweep process's).

Several hosts: every host runs the same command with its own --only=K/N (runs i ≡ K mod N) on a
shared SWEEPDIR; any host (or a laptop) then writes the table with --report_only.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import difflib
import itertools
import json
import math
import os
import pathlib
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections as mlc

from tl_jax import errors
from tl_jax import config as config_lib

RESULT_FILE = 'sweep_result.json'
NAME_KEY = 'name'  # an override dict's label for its run (not a config key)
SEED_KEY = 'seed'
RUNNERS = ('subprocess', 'inprocess')
Overrides = dict[str, Any]


class SweepError(errors.TlJaxError, ValueError):
  """A sweep that cannot run as declared; the message names the fix."""


# -------------------------------------------------------------------------------------------
# Declaring sweeps.
# -------------------------------------------------------------------------------------------

def axis(key: str, values: Iterable[Any]) -> list[Overrides]:
  """One override dict per value of one dotted key: axis('seed', [0, 1])."""
  return [{key: v} for v in values]


def product(*axes: Sequence[Overrides]) -> list[Overrides]:
  """The grid: every combination of one dict from each axis, merged (later axes vary fastest).
  Names ('name' keys) of the combined dicts are joined with '-'."""
  out = []
  for combo in itertools.product(*axes):
    merged: Overrides = {}
    names = []
    for part in combo:
      names += [str(part[NAME_KEY])] if NAME_KEY in part else []
      merged.update({k: v for k, v in part.items() if k != NAME_KEY})
    if names:
      merged = {NAME_KEY: '-'.join(names), **merged}
    out.append(merged)
  return out


def chain(*lists: Sequence[Overrides]) -> list[Overrides]:
  """Runs of several sweeps one after another."""
  return [dict(d) for lst in lists for d in lst]


# -------------------------------------------------------------------------------------------
# Runs: names and resolved configs.
# -------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
  index: int  # position in the expanded sweep (what --only=K/N shards on)
  name: str  # directory name under SWEEPDIR
  group: str  # the name without the seed: runs of one group are aggregated
  overrides: Overrides
  config: mlc.ConfigDict


def _slug(value: Any) -> str:
  if isinstance(value, float):
    text = f'{value:g}'
  elif isinstance(value, (tuple, list)):
    text = '_'.join(_slug(v) for v in value) or 'none'
  else:
    text = str(value)
  return re.sub(r'[^A-Za-z0-9._+-]+', '-', text).strip('-') or 'none'


def run_name(overrides: Mapping[str, Any], *, with_seed: bool = True) -> str:
  """'name' (if given) else 'key=value' of each override by the key's last part, ',' joined;
  e.g. {'transfer.freeze_preset': 'top:2', 'seed': 1} -> 'freeze_preset=top-2,seed=1'."""
  parts = []
  if NAME_KEY in overrides:
    parts.append(_slug(overrides[NAME_KEY]))
  else:
    parts += [f'{k.split(".")[-1]}={_slug(v)}' for k, v in overrides.items()
              if k not in (NAME_KEY, SEED_KEY)]
  if with_seed and SEED_KEY in overrides:
    parts.append(f'seed={overrides[SEED_KEY]}')
  return ','.join(parts) or 'base'


def _coerce(old: Any, new: Any) -> Any:
  """A value as the config field's type: lists become tuples where the field is a tuple."""
  if isinstance(old, tuple) and isinstance(new, list):
    return tuple(tuple(v) if isinstance(v, list) else v for v in new)
  if isinstance(old, str) and not isinstance(new, str):
    return str(new)
  return new


def apply_overrides(config: mlc.ConfigDict, overrides: Mapping[str, Any]) -> mlc.ConfigDict:
  """A copy of `config` with dotted keys set; an unknown key names the closest valid one."""
  config = mlc.ConfigDict(config.to_dict())  # unlocked copy, tuples kept
  valid = _flat_keys(config)
  for key, value in overrides.items():
    if key == NAME_KEY:
      continue
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
      hint = f'; did you mean {close[0]!r}?' if close else ''
      raise SweepError(f'sweep override {key!r} is not a config key{hint}')
    *parents, leaf = key.split('.')
    node = config
    for part in parents:
      node = node[part]
    old = node[leaf]
    if isinstance(old, mlc.ConfigDict) and isinstance(value, Mapping):
      node[leaf] = mlc.ConfigDict({**old.to_dict(), **value})
      continue
    try:
      node[leaf] = _coerce(old, value)
    except TypeError as e:
      raise SweepError(f'sweep override {key}={value!r}: {e}') from None
  return config


def _flat_keys(config: Any, prefix: str = '') -> list[str]:
  keys = []
  for key, value in config.items():
    keys.append(prefix + key)
    if isinstance(value, mlc.ConfigDict):
      keys += _flat_keys(value, prefix + key + '.')
  return keys


def expand(base: mlc.ConfigDict, sweep: Sequence[Mapping[str, Any]]) -> list[Run]:
  """Resolved runs of a sweep; every override is checked before anything runs."""
  if not sweep:
    raise SweepError('the sweep is empty: get_sweep() returned no override dicts')
  runs, seen = [], {}
  for i, overrides in enumerate(sweep):
    overrides = dict(overrides)
    name = run_name(overrides)
    if name in seen:
      raise SweepError(f'runs {seen[name]} and {i} of the sweep are both named {name!r}; give '
                       "them distinct 'name' entries")
    seen[name] = i
    runs.append(Run(i, name, run_name(overrides, with_seed=False), overrides,
                    apply_overrides(base, overrides)))
  return runs


def shard(runs: Sequence[Run], only: str | None) -> list[Run]:
  """--only=K/N: the runs with index ≡ K (mod N); None or '' = all."""
  if not only:
    return list(runs)
  match = re.fullmatch(r'(\d+)/(\d+)', only)
  if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
    raise SweepError(f'--only={only!r}: expected K/N with 0 <= K < N (this host takes the runs '
                     'i ≡ K mod N), e.g. --only=0/4')
  k, n = int(match.group(1)), int(match.group(2))
  return [r for r in runs if r.index % n == k]


def load_sweep_file(path_with_arg: str) -> tuple[mlc.ConfigDict, list[Overrides]]:
  """(base config, override dicts) from a sweep file with get_config() and get_sweep()."""
  path, _, arg = path_with_arg.partition(':')
  if not os.path.exists(path):
    raise FileNotFoundError(f'sweep config {path!r} not found (sweeps live in configs/sweeps/)')
  module = config_lib.load_module(path, '_tl_jax_sweep_config')
  for fn in ('get_config', 'get_sweep'):
    if not hasattr(module, fn):
      raise SweepError(f'sweep config {path!r} has no {fn}(arg=None) function')
  return (config_lib.call_get_config(module, arg),
          list(module.get_sweep(arg) if arg else module.get_sweep()))


# -------------------------------------------------------------------------------------------
# One run: train, measure, write the result marker.
# -------------------------------------------------------------------------------------------

def is_finished(workdir: str | os.PathLike) -> bool:
  return (pathlib.Path(workdir) / RESULT_FILE).exists()


def read_result(workdir: str | os.PathLike) -> dict[str, Any] | None:
  path = pathlib.Path(workdir) / RESULT_FILE
  return json.loads(path.read_text()) if path.exists() else None


def read_history(workdir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
  """(train records, eval records) of a run's metrics.jsonl."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  train, evals = [], []
  if path.exists():
    for line in path.read_text().splitlines():
      record = json.loads(line)
      (evals if any(k.count('/') == 2 for k in record) else train).append(record)
  return train, evals


def step_times(train_records: Sequence[Mapping[str, Any]], examples_per_step: int) -> list[float]:
  """Mean seconds per step of each logged interval (examples/sec is over the interval since the
  previous record); the first record (it holds the compile) and records without a throughput
  are left out."""
  return [examples_per_step / r['examples_per_sec'] for r in train_records[1:]
          if r.get('examples_per_sec')]


def state_costs(config: mlc.ConfigDict) -> dict[str, int]:
  """Parameters and optimizer-state bytes of a config, from shapes (nothing is trained): the
  largest over the stages of a freezing schedule."""
  import jax  # pylint: disable=g-import-not-at-top
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.train import freezing  # pylint: disable=g-import-not-at-top
  pieces = pieces_lib.build(config)
  core = step_lib.TrainCore(config, pieces.module, pieces.params)
  sizes = {n: int(math.prod(x.shape)) for n, x in freezing.flatten(pieces.params).items()}
  trainable, opt_bytes = 0, 0
  for stage in range(core.schedule.num_stages):
    trainable = max(trainable, sum(sizes[n] for n in core.schedule.trainable(stage)))
    state = jax.eval_shape(core.tx(stage).init, pieces.params)
    opt_bytes = max(opt_bytes, sum(int(math.prod(x.shape)) * x.dtype.itemsize
                                   for x in jax.tree.leaves(state)))
  return {'total_params': sum(sizes.values()), 'trainable_params': trainable,
          'opt_state_bytes': opt_bytes, 'freezing_stages': core.schedule.num_stages}


def execute(run: Run, workdir: str | os.PathLike) -> dict[str, Any]:
  """Trains one run in `workdir` (resuming what is there) and writes its result marker."""
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  resumed = (workdir / 'checkpoints').is_dir()
  start = time.monotonic()
  final = loop.train(run.config, str(workdir))
  wall = time.monotonic() - start
  peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
  data = run.config.data
  per_step = data.batch_size * (2 if data.source.name else 1)
  train_records, eval_records = read_history(workdir)
  times = step_times(train_records, per_step)
  median = statistics.median(times) if times else float('nan')
  result = {
      'name': run.name, 'group': run.group, 'index': run.index,
      'overrides': _jsonable(run.overrides), 'seed': run.config.seed,
      'final': final, 'num_steps': run.config.train.num_steps,
      'wall_s': wall, 'resumed': resumed,
      'median_step_s': median, 'examples_per_sec': per_step / median if times else float('nan'),
      'peak_rss_mb': peak_rss / 2**20,
      **state_costs(run.config),
      'train_curve': [[r['step'], r.get('loss')] for r in train_records],
      'eval_curve': [{k: v for k, v in r.items() if k == 'step' or k.endswith('accuracy')}
                     for r in eval_records],
      'finished': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
  }
  # Every process of a multi-host run writes it (hosts may not share a disk, and each host
  # decides from its own SWEEPDIR which runs to skip); whole or not at all.
  tmp = workdir / f'.{RESULT_FILE}.tmp-{socket.gethostname()}-{os.getpid()}'
  tmp.write_text(json.dumps(_jsonable(result), indent=1))
  os.replace(tmp, workdir / RESULT_FILE)
  return result


def _jsonable(value: Any) -> Any:
  def clean(x):
    if isinstance(x, float) and not math.isfinite(x):
      return None
    if isinstance(x, dict):
      return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    return x
  return clean(json.loads(json.dumps(value, default=repr)))


# -------------------------------------------------------------------------------------------
# The sweep: runs one after another, skipping finished ones.
# -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepSpec:
  """Where a sweep comes from, so a child process can rebuild the same runs."""
  config: str  # path[:arg] of the sweep file
  overrides: Overrides = dataclasses.field(default_factory=dict)  # on top of get_config()

  def runs(self) -> list[Run]:
    base, sweep = load_sweep_file(self.config)
    return expand(apply_overrides(base, self.overrides), sweep)


def _child_command(spec: SweepSpec, sweepdir: pathlib.Path, run: Run) -> list[str]:
  return [sys.executable, '-m', 'tl_jax.sweep', f'--config={spec.config}',
          f'--sweepdir={sweepdir}', f'--run={run.name}',
          f'--overrides_json={json.dumps(_jsonable(spec.overrides))}']


def _child_env(sweepdir: pathlib.Path) -> dict[str, str]:
  env = dict(os.environ)
  repo = str(pathlib.Path(__file__).resolve().parent.parent)
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


def _run_child(spec: SweepSpec, sweepdir: pathlib.Path, run: Run, verbose: bool,
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
    raise SweepError(f'--runner={runner!r}; valid: {", ".join(RUNNERS)}')
  sweepdir = pathlib.Path(sweepdir).absolute()
  runs = spec.runs()
  mine = shard(runs, only)
  sweepdir.mkdir(parents=True, exist_ok=True)
  todo = [r for r in mine if not is_finished(sweepdir / r.name)]
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
        execute(run, workdir)
        code = 0
      except Exception as e:  # one failed run does not end the sweep
        printer(f'    failed: {type(e).__name__}: {e}')
        code = 1
    else:
      code = _run_child(spec, sweepdir, run, verbose, printer)
    result = read_result(workdir)
    if code or result is None:
      failed.append(run.name)
      printer(f'    FAILED {run.name} (exit {code}); rerun the sweep to retry it')
      continue
    if prune_checkpoints:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(workdir / 'checkpoints', ignore_errors=True)
    accs = {k: v for k, v in result['final'].items() if k.endswith('accuracy')}
    printer(f'    done {run.name}: ' + '  '.join(f'{k} {v:.4f}' for k, v in sorted(accs.items()))
            + f'  ({result["wall_s"]:.0f} s, median step {result["median_step_s"] * 1e3:.0f} ms)')
  results = collect(runs, sweepdir)
  write_outputs(results, sweepdir)
  if failed:
    raise SweepError(f'{len(failed)} run(s) failed: {", ".join(failed)}; see '
                     f'{sweepdir / "logs"}; rerun the same command to retry them')
  return results


# -------------------------------------------------------------------------------------------
# Results: every run, and mean ± std over seeds.
# -------------------------------------------------------------------------------------------

DEFAULT_COLUMNS = ('target/test/accuracy', 'wall_s', 'median_step_s', 'examples_per_sec',
                   'peak_rss_mb', 'trainable_params', 'opt_state_bytes')


def collect(runs: Sequence[Run], sweepdir: str | os.PathLike) -> list[dict]:
  """The result of every run in sweep order; unfinished runs as {'name', 'group', 'pending'}."""
  sweepdir = pathlib.Path(sweepdir)
  out = []
  for run in runs:
    result = read_result(sweepdir / run.name)
    out.append(result if result is not None else
               {'name': run.name, 'group': run.group, 'index': run.index, 'pending': True,
                'overrides': _jsonable(run.overrides)})
  return out


def value(result: Mapping[str, Any], column: str) -> float | None:
  """A column of a run: an eval metric ('target/test/accuracy') or a result field."""
  v = result.get('final', {}).get(column, result.get(column))
  return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def aggregate(results: Sequence[Mapping[str, Any]],
              columns: Sequence[str] = DEFAULT_COLUMNS) -> list[dict]:
  """One row per group (runs that differ only in seed), in first-seen order:
  {'group', 'runs', 'pending', column: (mean, std, n)}; std is the sample std (0 for n=1)."""
  groups: dict[str, list] = {}
  for r in results:
    groups.setdefault(r['group'], []).append(r)
  rows = []
  for group, members in groups.items():
    done = [r for r in members if not r.get('pending')]
    row = {'group': group, 'runs': len(done), 'pending': len(members) - len(done)}
    for column in columns:
      vals = [v for r in done if (v := value(r, column)) is not None]
      if vals:
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        row[column] = (statistics.fmean(vals), std, len(vals))
    rows.append(row)
  return rows


def _format(column: str, stats: tuple[float, float, int] | None) -> str:
  if stats is None:
    return '—'
  mean, std, n = stats
  if column.endswith('accuracy'):
    scale, fmt = 100.0, '{:.1f}'
  elif column.endswith('_bytes'):
    scale, fmt = 2.0**-20, '{:.3g}'  # MiB
  elif column.endswith('_params'):
    scale, fmt = 1e-6, '{:.3g}'  # M
  elif column.endswith('step_s'):
    scale, fmt = 1e3, '{:.0f}'  # ms
  else:
    scale, fmt = 1.0, '{:.3g}' if abs(mean) < 100 else '{:.0f}'
  text = fmt.format(mean * scale)
  if n > 1 and not column.endswith(('_params', '_bytes')):  # static costs have no spread
    text += ' ± ' + fmt.format(std * scale)
  return text


COLUMN_TITLES = {'target/test/accuracy': 'target test acc %',
                 'source/test/accuracy': 'source test acc %', 'wall_s': 'wall s',
                 'median_step_s': 'median step ms', 'examples_per_sec': 'examples/s',
                 'peak_rss_mb': 'peak RSS MB', 'trainable_params': 'trainable params M',
                 'opt_state_bytes': 'opt state MiB', 'total_params': 'params M'}


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS,
                   *, group_title: str = 'run') -> str:
  """mean ± std over seeds per group; accuracy in %, step in ms, bytes in MiB, params in M."""
  titles = [COLUMN_TITLES.get(c, c) for c in columns]
  lines = [f'| {group_title} | seeds | ' + ' | '.join(titles) + ' |',
           '|---|---:|' + '---:|' * len(columns)]
  for row in rows:
    seeds = f'{row["runs"]}' + (f' (+{row["pending"]} pending)' if row['pending'] else '')
    cells = [_format(c, row.get(c)) for c in columns]
    lines.append(f'| {row["group"]} | {seeds} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def write_outputs(results: Sequence[Mapping[str, Any]], outdir: str | os.PathLike,
                  columns: Sequence[str] = DEFAULT_COLUMNS, *, group_title: str = 'run',
                  prefix: str = '') -> str:
  """OUTDIR/{prefix}runs.json (everything), runs.csv (one row per run), table.md (aggregated);
  returns the markdown table."""
  outdir = pathlib.Path(outdir)
  outdir.mkdir(parents=True, exist_ok=True)
  (outdir / f'{prefix}runs.json').write_text(json.dumps(_jsonable(list(results)), indent=1))
  scalar_keys = ['name', 'group', 'seed', 'pending', 'num_steps', 'wall_s', 'median_step_s',
                 'examples_per_sec', 'peak_rss_mb', 'total_params', 'trainable_params',
                 'opt_state_bytes', 'freezing_stages', 'resumed']
  metric_keys = sorted({k for r in results for k in r.get('final', {})})
  with open(outdir / f'{prefix}runs.csv', 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(scalar_keys + metric_keys + ['overrides'])
    for r in results:
      writer.writerow([r.get(k, '') for k in scalar_keys] +
                      [r.get('final', {}).get(k, '') for k in metric_keys] +
                      [json.dumps(r.get('overrides', {}))])
  table = markdown_table(aggregate(results, columns), columns, group_title=group_title)
  (outdir / f'{prefix}table.md').write_text(table + '\n')
  return table


# -------------------------------------------------------------------------------------------
# Command line.
# -------------------------------------------------------------------------------------------

def _parse_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string: --config.model.name=minilm


def main(argv: Sequence[str] | None = None, prog: str = 'python -m tl_jax.sweep') -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  argv = list(sys.argv[1:] if argv is None else argv)
  # --config.KEY=VALUE, as for `tl-jax train`: applied to get_config() before the sweep's own.
  overrides = {}
  rest = []
  for arg in argv:
    if arg.startswith('--config.') and '=' in arg:
      key, text = arg[len('--config.'):].split('=', 1)
      overrides[key] = _parse_value(text)
    else:
      rest.append(arg)
  parser = argparse.ArgumentParser(prog=prog,
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True, help='sweep file path[:arg]')
  parser.add_argument('--sweepdir', required=True, help='one workdir per run goes under it')
  parser.add_argument('--only', default='', help='K/N: this host runs runs i ≡ K (mod N)')
  parser.add_argument('--runner', default='subprocess', choices=RUNNERS)
  parser.add_argument('--report_only', action='store_true', help='only write the table')
  parser.add_argument('--prune_checkpoints', action='store_true',
                      help='delete the checkpoints of a run once it is finished')
  parser.add_argument('--verbose', action='store_true', help='echo every line of every run')
  parser.add_argument('--run', default='', help=argparse.SUPPRESS)  # a child: this run only
  parser.add_argument('--overrides_json', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(rest)
  if args.overrides_json:
    overrides = {**json.loads(args.overrides_json), **overrides}
  spec = SweepSpec(args.config, overrides)
  try:
    if args.run:  # the child process of one run
      runs = {r.name: r for r in spec.runs()}
      if args.run not in runs:
        raise SweepError(f'no run named {args.run!r} in {args.config}')
      execute(runs[args.run], pathlib.Path(args.sweepdir) / args.run)
      return 0
    if args.report_only:
      results = collect(spec.runs(), args.sweepdir)
      print(write_outputs(results, args.sweepdir))
      return 0
    results = run_sweep(spec, args.sweepdir, only=args.only, runner=args.runner,
                        prune_checkpoints=args.prune_checkpoints, verbose=args.verbose)
    print(f'\n{pathlib.Path(args.sweepdir) / "table.md"}:\n')
    print(markdown_table(aggregate(results)))
    return 0
  except (ValueError, FileNotFoundError) as e:
    print(f'tl_jax.sweep: error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
