"""Freezing-schedule benchmark: which layers to train, what it costs, what it buys.

For each schedule (full fine-tune, head only, top-1, top-half, gradual unfreezing, chain-thaw,
layer-wise LR decay) × seeds, on each transfer pair, reports target test accuracy (mean ± std
over seeds), wall time, median step time, examples/sec, peak RSS, trainable parameters and
optimizer-state bytes. Every run is a run of a sweep (tl_jax.sweep through tl_jax.harness,
configs/sweeps/freezing.py), so an interrupted benchmark resumes where it stopped and finished
runs are skipped.

Pairs (offline):
  minilm  MiniLM-L6 (packaged weights) -> BBC News, 8 articles per class, 64 tokens, 30 steps
  vit     a small ViT pre-trained here on digits/original (400 steps, saved with
          save_pretrained under OUT/pretrain) -> digits/rotated, 10 images per class, 60 steps

Run:    python experiments/freezing_benchmark.py                  (both pairs, ~20 min quiet)
        python experiments/freezing_benchmark.py --quick          (a smoke run, ~5 min)
        python experiments/freezing_benchmark.py --pairs=minilm --seeds=1   (one pair, 1 seed)
        python experiments/freezing_benchmark.py --sweep=my_sweep.py:arg    (a sweep file instead)
Measured (2 seeds; target test accuracy %):
  MiniLM -> BBC News (2026-12-01, --pairs=minilm, quiet machine, 5.7 min): full 91.8±2.3,
  head_only 34.8±12.2 (lr 2e-4 is too small for a new head in 30 steps), top1 89.3±4.6, top3
  93.7±1.7, gradual 93.9±0.7, chain-thaw 65.7±5.0 (every block gets 3 steps), layer decay 0.7
  92.5±2.0; optimizer state 173 MiB (full) vs 41.8 (top3), 14.7 (top1), 0.015 (head); median
  step 388 ms full, 222 top3, 121 top1, 81 head_only.
  (2026-11, 2 shared CPU cores:)
  ViT (digits/original 90.7% after pre-training) -> digits/rotated: full 43.5±4.5, head_only
  24.6±0.8, top1 35.4±6.5, top2 34.3±4.5, gradual 37.4±5.2, chain-thaw 37.8±1.0, decay 36.7±1.0.
  Wall time: ~20 min quiet with a cold compile cache; staged schedules recompile per stage
  (MiniLM gradual: 8 compiles), so their first seed is the slow one.
Output: OUT/<pair>/table.md, results.json, accuracy_vs_cost.png, learning_curves.png and
        runs.{csv,json}; OUT/<pair>/<run>/ holds each run's workdir, OUT/<pair>/logs/ its log.
"""

from __future__ import annotations

import pathlib
import re
import statistics
import time

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

from tl_jax import report  # noqa: E402
from tl_jax import sweep  # noqa: E402

if __name__ == '__main__':  # tradaboost.py imports pretrain_vit: flags only when run
  _SWEEP = harness.define_sweep('')
  _OUT = harness.define_out('freezing_benchmark')
  _PAIRS = flags.DEFINE_list('pairs', ['minilm', 'vit'], 'default pairs to run: minilm, vit')
  _QUICK = flags.DEFINE_bool('quick', False,
                             'few steps, one seed: checks the pipeline, not the schedules')
  _SEEDS = flags.DEFINE_integer('seeds', 0, "seeds per schedule for the default pairs (0: the "
                                "sweep file's, 2)")

COLUMNS = ('target/test/accuracy', 'wall_s', 'median_step_s', 'examples_per_sec', 'peak_rss_mb',
           'trainable_params', 'opt_state_bytes')


def pretrain_vit(outdir: pathlib.Path, *, quick: bool) -> pathlib.Path:
  """The upstream ViT of the digits pair: pre-trained once, reused by later invocations."""
  spec = harness.config_path('sweeps/vit_digits_pretrain.py')
  print(f'== pre-training a ViT on digits/original ({"quick" if quick else "400 steps"})')
  result, = harness.run_sweep(spec, outdir / 'pretrain', prune_checkpoints=True,
                              overrides={'train.num_steps': 100} if quick else None)
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


def plot(results: list[dict], outdir: pathlib.Path, title: str) -> None:
  """OUTDIR/accuracy_vs_cost.png and OUTDIR/learning_curves.png."""
  rows = [r for r in sweep.aggregate(results, COLUMNS) if 'target/test/accuracy' in r]
  groups = {g: [r for r in results if r['group'] == g and not r.get('pending')]
            for g in (row['group'] for row in rows)}
  costs = (('median_step_s', 'median step time (ms)', 1e3),
           ('wall_s', 'wall time per run (s, incl. compile + eval)', 1.0),
           ('opt_state_bytes', 'optimizer state (MiB)', 2.0**-20))
  with report.figure(outdir / 'accuracy_vs_cost.png', 1, 3, figsize=(15, 4.2)) as (fig, axes):
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

  with report.figure(outdir / 'learning_curves.png', 1, 2, figsize=(12, 4.2)) as (fig, axes):
    ax_loss, ax_acc = axes
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


def jobs(out: pathlib.Path) -> list[tuple[str, str, str]]:
  """(pair, sweep file path:arg, title) for --sweep or each of --pairs."""
  if _SWEEP.sweep.value:
    spec = _SWEEP.sweep.value
    return [(re.sub(r'[^\w.=,+-]+', '_', pathlib.Path(spec).name), spec, spec)]
  freezing = harness.config_path('sweeps/freezing.py')
  seeds = f',seeds={_SEEDS.value}' if _SEEDS.value else ''
  found = []
  for pair in _PAIRS.value:
    if pair == 'minilm':
      opts = ',steps=6,seeds=1' if _QUICK.value else seeds
      found.append((pair, f'{freezing}:minilm{opts}', 'MiniLM-L6 → BBC News'))
    elif pair == 'vit':
      model = pretrain_vit(out, quick=_QUICK.value)
      opts = ',steps=10,seeds=1' if _QUICK.value else seeds
      found.append((pair, f'{freezing}:vit={model}{opts}',
                    'ViT (pre-trained on digits) → digits/rotated'))
    else:
      raise SystemExit(f'--pairs: unknown pair {pair!r}; valid: minilm, vit')
  return found


def main(argv) -> None:
  del argv
  out = pathlib.Path(_OUT.value).absolute()
  start = time.monotonic()
  for pair, spec, title in jobs(out):
    print(f'== {title}: {spec}')
    results = _SWEEP.run(out / pair, sweep_file=spec, prune_checkpoints=True)
    table = f'### {title}\n\n' + harness.table(results, COLUMNS, group_title='schedule')
    harness.write(out / pair, table, harness.summary(results, COLUMNS),
                  plot=lambda _, path, r=results, t=title: plot(r, path.parent, t),
                  figure='accuracy_vs_cost.png')
  print(f'\nFreezing-schedule benchmark ({(time.monotonic() - start) / 60:.1f} min); '
        f'outputs in {out}')


if __name__ == '__main__':
  harness.run(main, timed=True)  # its step times are figures: say whether the machine was quiet
