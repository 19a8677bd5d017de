"""Freezing-schedule benchmark: which layers to train, what it costs, what it buys.

For each schedule (full fine-tune, head only, top-1, top-half, gradual unfreezing, chain-thaw,
layer-wise LR decay) × seeds, on each transfer pair, reports target test accuracy (mean ± std
over seeds), wall time, median step time, examples/sec, peak RSS, trainable parameters and
optimizer-state bytes. Every run is a run of a sweep (tl_jax/sweep.py, configs/sweeps/
freezing.py), so an interrupted benchmark resumes where it stopped and finished runs are skipped.

Pairs (offline):
  minilm  MiniLM-L6 (packaged weights) -> BBC News, 8 articles per class, 64 tokens, 30 steps
  vit     a small ViT pre-trained here on digits/original (400 steps, saved with
          save_pretrained under OUTDIR/pretrain) -> digits/rotated, 10 images per class, 60 steps

Run:    python experiments/freezing_benchmark.py                  (both pairs, ~20 min quiet)
        python experiments/freezing_benchmark.py --quick          (a smoke run, ~5 min)
        python experiments/freezing_benchmark.py --pairs=minilm --seeds=1   (one pair, 1 seed)
        python experiments/freezing_benchmark.py --config=configs/sweeps/freezing.py:minilm \\
            --config=my_sweep.py:arg                              (any sweep files instead)
Measured (2026-11, 2 shared CPU cores, defaults, 2 seeds; target test accuracy %):
  MiniLM -> BBC News: full 93.4±0.3, head_only 40.7±7.0 (lr 2e-4 is too small for a new head
  in 30 steps), top1 89.4±1.0, top3 94.8±1.0, gradual 94.6±0.0, chain-thaw 66.5±6.4 (every
  block gets 3 steps), layer decay 0.7 93.9±0.3; optimizer state 173 MiB (full) vs 41.8 (top3),
  14.7 (top1), 0.015 (head); median step 0.42 s full / 0.15 s head_only on a quiet machine.
  ViT (digits/original 90.7% after pre-training) -> digits/rotated: full 43.5±4.5, head_only
  24.6±0.8, top1 35.4±6.5, top2 34.3±4.5, gradual 37.4±5.2, chain-thaw 37.8±1.0, decay 36.7±1.0.
  Wall time: ~20 min quiet with a cold compile cache; staged schedules recompile per stage
  (MiniLM gradual: 8 compiles), so their first seed is the slow one.
Output: OUTDIR/<pair>_table.md, <pair>_runs.{csv,json}, <pair>_accuracy_vs_cost.png,
        <pair>_learning_curves.png; OUTDIR/<pair>/<run>/ holds each run's workdir and log.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault('USE_TORCH', '0')
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tl_jax import report, sweep  # noqa: E402  pylint: disable=g-import-not-at-top

COLUMNS = ('target/test/accuracy', 'wall_s', 'median_step_s', 'examples_per_sec', 'peak_rss_mb',
           'trainable_params', 'opt_state_bytes')
SWEEPS = REPO / 'configs' / 'sweeps'


def pretrain_vit(outdir: pathlib.Path, *, quick: bool) -> pathlib.Path:
  """The upstream ViT of the digits pair: pre-trained once, reused by later invocations."""
  sys.path.insert(0, str(SWEEPS))
  import vit_digits_pretrain  # pylint: disable=g-import-not-at-top
  init = vit_digits_pretrain.write_init(outdir / 'vit_init')
  spec = sweep.SweepSpec(f'{SWEEPS / "vit_digits_pretrain.py"}:{init}',
                         {'train.num_steps': 100} if quick else {})
  print(f'== pre-training a ViT on digits/original ({"quick" if quick else "400 steps"})')
  result, = sweep.run_sweep(spec, outdir / 'pretrain', prune_checkpoints=True)
  print(f'   pre-trained ViT: digits/original test accuracy '
        f'{result["final"]["target/test/accuracy"]:.4f}')
  return outdir / 'pretrain' / result['name'] / 'export'


def mean_curve(results: list[dict], key: str) -> tuple[list[int], list[float]]:
  """Seed-mean of a learning curve: train loss (key 'loss') or an eval metric."""
  per_step: dict[int, list[float]] = {}
  for r in results:
    if key == 'loss':
      points = [(s, v) for s, v in r.get('train_curve', []) if v is not None]
    else:
      points = [(e['step'], e[key]) for e in r.get('eval_curve', []) if e.get(key) is not None]
    for s, v in points:
      per_step.setdefault(s, []).append(v)
  steps = sorted(per_step)
  return steps, [statistics.fmean(per_step[s]) for s in steps]


def plot(results: list[dict], outdir: pathlib.Path, pair: str, title: str) -> list[pathlib.Path]:
  plt = report.pyplot()
  rows = [r for r in sweep.aggregate(results, COLUMNS) if 'target/test/accuracy' in r]
  groups = {g: [r for r in results if r['group'] == g and not r.get('pending')]
            for g in (row['group'] for row in rows)}
  paths = []

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  costs = (('median_step_s', 'median step time (ms)', 1e3),
           ('wall_s', 'wall time per run (s, incl. compile + eval)', 1.0),
           ('opt_state_bytes', 'optimizer state (MiB)', 2.0**-20))
  for ax, (column, label, scale) in zip(axes, costs):
    for row in rows:
      if column not in row:
        continue
      acc, acc_std, _ = row['target/test/accuracy']
      x, x_std, _ = row[column]
      ax.errorbar(x * scale, acc * 100, xerr=x_std * scale, yerr=acc_std * 100, fmt='o',
                  capsize=3)
      ax.annotate(row['group'], (x * scale, acc * 100), textcoords='offset points',
                  xytext=(4, 4), fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel('target test accuracy (%)')
    ax.grid(alpha=0.3)
  fig.suptitle(f'{title}: accuracy vs cost (mean ± std over seeds)')
  fig.tight_layout()
  paths.append(outdir / f'{pair}_accuracy_vs_cost.png')
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
  for group, members in groups.items():
    steps, loss = mean_curve(members, 'loss')
    line, = ax_loss.plot(steps, loss, label=group)
    steps, acc = mean_curve(members, 'target/test/accuracy')
    ax_acc.plot(steps, [a * 100 for a in acc], 'o-', color=line.get_color(), label=group)
  ax_loss.set(xlabel='step', ylabel='train loss (seed mean)', yscale='log')
  ax_acc.set(xlabel='step', ylabel='target test accuracy (%, seed mean)')
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
  ax_acc.legend(fontsize=8)
  fig.suptitle(f'{title}: learning curves')
  fig.tight_layout()
  paths.append(outdir / f'{pair}_learning_curves.png')
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)
  return paths


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--outdir', default='runs/freezing_benchmark')
  ap.add_argument('--pairs', default='minilm,vit', help='comma-separated: minilm, vit')
  ap.add_argument('--config', action='append', default=[],
                  help='sweep file path[:arg] to run instead of the default pairs (repeatable)')
  ap.add_argument('--quick', action='store_true',
                  help='few steps, one seed: checks the pipeline, not the schedules')
  ap.add_argument('--seeds', type=int, default=0,
                  help='seeds per schedule for the default pairs (0: the sweep file\'s, 2)')
  ap.add_argument('--only', default='', help='K/N: this host runs runs i ≡ K (mod N)')
  ap.add_argument('--runner', default='subprocess', choices=sweep.RUNNERS)
  args = ap.parse_args()
  outdir = pathlib.Path(args.outdir).absolute()
  outdir.mkdir(parents=True, exist_ok=True)
  start = time.monotonic()

  jobs = []  # (pair, sweep file path:arg, title)
  for spec in args.config:
    jobs.append((pathlib.Path(spec.split(':')[0]).stem + (
        '_' + sweep._slug(spec.partition(':')[2]) if ':' in spec else ''), spec, spec))
  if not args.config:
    seeds = f',seeds={args.seeds}' if args.seeds else ''
    opts = ',steps=6,seeds=1' if args.quick else seeds
    for pair in filter(None, args.pairs.split(',')):
      if pair == 'minilm':
        jobs.append((pair, f'{SWEEPS / "freezing.py"}:minilm{opts}', 'MiniLM-L6 → BBC News'))
      elif pair == 'vit':
        model = pretrain_vit(outdir, quick=args.quick)
        vit_opts = ',steps=10,seeds=1' if args.quick else seeds
        jobs.append((pair, f'{SWEEPS / "freezing.py"}:vit={model}{vit_opts}',
                     'ViT (pre-trained on digits) → digits/rotated'))
      else:
        raise SystemExit(f'--pairs: unknown pair {pair!r}; valid: minilm, vit')

  tables = []
  for pair, spec, title in jobs:
    print(f'== {title}: {spec}')
    results = sweep.run_sweep(sweep.SweepSpec(spec), outdir / pair, only=args.only,
                              runner=args.runner, prune_checkpoints=True)
    table = sweep.write_outputs(results, outdir, COLUMNS, group_title='schedule',
                                prefix=f'{pair}_')
    pngs = plot(results, outdir, pair, title)
    tables.append((title, table, pngs))

  print(f'\nFreezing-schedule benchmark ({(time.monotonic() - start) / 60:.1f} min); '
        f'outputs in {outdir}')
  for title, table, pngs in tables:
    print(f'\n### {title}\n\n{table}\n')
    for png in pngs:
      print(f'plot: {png}')


if __name__ == '__main__':
  main()
