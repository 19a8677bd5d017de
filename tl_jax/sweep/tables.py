"""A sweep's results as files: runs.json and runs.csv (every run), table.md (mean ± std over
seeds per group, with a Student-t 95% confidence interval of the mean for eval metrics, and with
a baseline group, each row's paired difference from it)."""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from tl_jax.sweep import results as results_lib

DEFAULT_COLUMNS = ('target/test/accuracy', 'wall_s', 'median_step_s', 'examples_per_sec',
                   'peak_rss_mb', 'trainable_params', 'opt_state_bytes')

COLUMN_TITLES = {'target/test/accuracy': 'target test acc %',
                 'source/test/accuracy': 'source test acc %',
                 'target/validation/accuracy': 'target val acc %',
                 'source/validation/accuracy': 'source val acc %', 'wall_s': 'wall s',
                 'median_step_s': 'median step ms', 'examples_per_sec': 'examples/s',
                 'peak_rss_mb': 'peak RSS MB', 'trainable_params': 'trainable params M',
                 'opt_state_bytes': 'opt state MiB', 'total_params': 'params M'}

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; beyond, the normal's 1.96.
# (A table, not scipy: scipy is not a dependency.)
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
  """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
  if df < 1:
    raise ValueError(f'Student t needs df >= 1, got {df}')
  return T95[df - 1] if df <= len(T95) else 1.96


def ci95(std: float, n: int) -> float | None:
  """Half-width of the 95% confidence interval of a mean of `n` seeds with sample std `std`:
  t(0.975, n-1)·std/√n. None for one seed (no spread to estimate from)."""
  return t95(n - 1) * std / math.sqrt(n) if n > 1 else None


def value(result: Mapping[str, Any], column: str) -> float | None:
  """A column of a run: an eval metric ('target/test/accuracy') or a result field."""
  v = result.get('final', {}).get(column, result.get(column))
  return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def aggregate(results: Sequence[Mapping[str, Any]],
              columns: Sequence[str] = DEFAULT_COLUMNS) -> list[dict]:
  """One row per group (runs that differ only in seed), in first-seen order:
  {'group', 'runs', 'pending', column: (mean, std, n)}; std is the sample std (0 for n=1).
  ci95(std, n) gives a column's confidence interval."""
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


def paired_deltas(results: Sequence[Mapping[str, Any]], column: str,
                  baseline: str) -> dict[str, tuple[float, float, int]]:
  """Per group: (mean, sample std, n) of its run minus the `baseline` group's run of the same
  seed, over the seeds both finished. Seeds share the data order, draws and head init across
  rows, so the paired difference's CI is the fair test of "this row beats the baseline"."""
  base = {r.get('seed'): v for r in results if r['group'] == baseline and not r.get('pending')
          and (v := value(r, column)) is not None}
  diffs: dict[str, list[float]] = {}
  for r in results:
    if r['group'] != baseline and not r.get('pending') and r.get('seed') in base:
      if (v := value(r, column)) is not None:
        diffs.setdefault(r['group'], []).append(v - base[r['seed']])
  return {group: (statistics.fmean(d), statistics.stdev(d) if len(d) > 1 else 0.0, len(d))
          for group, d in diffs.items()}


def format_delta(column: str, stats: tuple[float, float, int] | None) -> str:
  """'+5.9 (95% CI ± 7.1): better' when the interval excludes 0, '... : no difference' when it
  holds 0; one seed, or the same difference in every seed, has no interval and says so."""
  if stats is None:
    return '—'
  mean, std, n = stats
  scale = 100.0 if column.endswith('accuracy') else 1.0
  text = f'{mean * scale:+.1f}' if column.endswith('accuracy') else f'{mean:+.3g}'
  if n < 2:
    return text + ' (1 seed: no CI)'
  if std == 0:  # the same difference in every seed (accuracies are discrete): no spread to test
    return text + f' (the same in all {n} seeds: no CI)'
  half = ci95(std, n)
  text += f' (95% CI ± {half * scale:.1f})' if column.endswith('accuracy') else f' (± {half:.3g})'
  if abs(mean) <= half:
    return text + ': no difference'
  if column.endswith('accuracy'):
    return text + (': better' if mean > 0 else ': worse')
  return text + (': higher' if mean > 0 else ': lower')


def _is_metric(column: str) -> bool:
  """Eval metrics ('target/test/accuracy') are the outcomes a reader compares across rows, so
  they get a confidence interval; costs (time, memory) are shown as mean ± std only."""
  return '/' in column


def _format(column: str, stats: tuple[float, float, int] | None, runs: int | None = None) -> str:
  """mean ± std in the column's unit; for an eval metric over several seeds also the 95% CI of
  the mean, and n when it is not every run of the row (a run without that metric)."""
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
    if _is_metric(column):
      shown_n = f', n={n}' if runs is not None and n != runs else ''
      text += f' (95% CI ± {fmt.format(ci95(std, n) * scale)}{shown_n})'
  return text


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS,
                   *, group_title: str = 'run', baseline: str | None = None,
                   deltas: Mapping[str, tuple[float, float, int]] | None = None) -> str:
  """mean ± std over seeds per group, and for eval metrics the 95% CI of the mean (Student t);
  accuracy in %, step in ms, bytes in MiB, params in M. With `baseline` and its `deltas`
  (paired_deltas of the first column), a 'Δ vs baseline' column follows the first."""
  titles = [COLUMN_TITLES.get(c, c) for c in columns]
  if baseline:
    titles.insert(1, f'Δ vs {baseline}')
  lines = [f'| {group_title} | seeds | ' + ' | '.join(titles) + ' |',
           '|---|---:|' + '---:|' * len(titles)]
  for row in rows:
    seeds = f'{row["runs"]}' + (f' (+{row["pending"]} pending)' if row['pending'] else '')
    cells = [_format(c, row.get(c), row['runs']) for c in columns]
    if baseline:
      cells.insert(1, format_delta(columns[0], (deltas or {}).get(row['group'])))
    lines.append(f'| {row["group"]} | {seeds} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def results_table(results: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                  group_title: str = 'run', baseline: str | None = None,
                  labels: Mapping[str, str] | None = None) -> str:
  """The markdown table of a sweep's results: one row per group (mean ± std over its seeds),
  with `baseline`, each row's paired difference from it in the first column; groups renamed by
  `labels`."""
  label = lambda group: (labels or {}).get(group, group)
  rows = [{**row, 'group': label(row['group'])} for row in aggregate(results, columns)]
  deltas = None
  if baseline:
    deltas = {label(g): d for g, d in paired_deltas(results, columns[0], baseline).items()}
  return markdown_table(rows, columns, group_title=group_title,
                        baseline=label(baseline) if baseline else None, deltas=deltas)


def write_outputs(results: Sequence[Mapping[str, Any]], outdir: str | os.PathLike,
                  columns: Sequence[str] = DEFAULT_COLUMNS, *, group_title: str = 'run',
                  prefix: str = '', baseline: str | None = None) -> str:
  """OUTDIR/{prefix}runs.json (everything), runs.csv (one row per run), table.md (aggregated,
  with each row's paired difference from the `baseline` group in the first column, if given);
  returns the markdown table."""
  outdir = pathlib.Path(outdir)
  outdir.mkdir(parents=True, exist_ok=True)
  (outdir / f'{prefix}runs.json').write_text(
      json.dumps(results_lib.jsonable(list(results)), indent=1))
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
  table = results_table(results, columns, group_title=group_title, baseline=baseline)
  (outdir / f'{prefix}table.md').write_text(table + '\n')
  return table
