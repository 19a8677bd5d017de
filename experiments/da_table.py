"""Domain-adaptation table: digits (labelled source) -> digits/rotated (unlabelled target).

Runs a DA sweep file (default configs/sweeps/da_digits.py: a small random-init ViT, 16x16 input,
patch 4, width 64, 2 layers; each method's config configs/<method>_digits.py; 3 seeds) through the
sweep runner, then writes OUT/table.md (target and source test accuracy, mean ± std over seeds;
the target labels are used for this report only, never for training or model selection),
OUT/results.json and OUT/da_table.png, and prints the table. Finished runs are skipped, so an
interrupted table continues where it stopped. Any sweep file in the same convention (one run
group per method, `seed` over seeds) works: --sweep=configs/sweeps/da_text.py.

Run:   python experiments/da_table.py                       (all methods x 3 seeds)
       python experiments/da_table.py --methods=dann,mmd --sweep=configs/sweeps/da_digits.py:seeds=1
       or N processes, then the table over all of them:
       for k in 0 1 2; do python experiments/da_table.py --only=$k/3 & done; wait
       python experiments/da_table.py --report_only
       smoke run: --sweep=configs/sweeps/da_digits.py:steps=2,seeds=1 --methods=source_only,dann
Measured: see the README (400 steps, batch 64 per domain; DANN/MMD/MDD at weight 0.1).
"""

from __future__ import annotations

from tl_jax import harness

harness.setup()  # before jax is imported

import pathlib  # noqa: E402

from absl import flags  # noqa: E402

from tl_jax import report  # noqa: E402

_SWEEP = harness.define_sweep('configs/sweeps/da_digits.py')
_OUT = harness.define_out('da_table')
_METHODS = flags.DEFINE_list('methods', [], 'run groups (methods) to run; empty = all')

COLUMNS = ('target/test/accuracy', 'source/test/accuracy')
LABELS = {'source_only': 'Source only', 'dann': 'DANN', 'mmd': 'MMD (DAN, multi-kernel)',
          'coral': 'Deep CORAL', 'cdan': 'CDAN+E', 'mdd': 'MDD',
          'importance': 'Importance weighting (domain classifier)',
          'importance_kmm': 'Importance weighting (KMM)',
          'importance_kliep': 'Importance weighting (KLIEP)'}
SHORT = {'importance': 'IW (classifier)', 'importance_kmm': 'IW (KMM)',
         'importance_kliep': 'IW (KLIEP)'}  # plot ticks where the labels' heads coincide


def plot(results: dict, path: pathlib.Path) -> None:
  """Target and source test accuracy per method, mean ± std over seeds."""
  rows = [r for r in results['groups'] if COLUMNS[0] in r]
  x = list(range(len(rows)))
  with report.figure(path, figsize=(1.3 * len(rows) + 2, 3.5), dpi=120) as (_, ax):
    for shift, column, label in ((-0.2, COLUMNS[0], 'target'), (0.2, COLUMNS[1], 'source')):
      stats = [r.get(column, {'mean': 0, 'std': 0}) for r in rows]
      ax.bar([i + shift for i in x], [s['mean'] for s in stats], 0.4,
             yerr=[s['std'] for s in stats], label=label)
    ax.set_xticks(x, [SHORT.get(r['group'], LABELS.get(r['group'], r['group']).split(' (')[0])
                      for r in rows], rotation=20)
    ax.set_ylabel('test accuracy')
    ax.set_ylim(0, 1)
    ax.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f'{_SWEEP.sweep.value}: mean ± std over seeds', fontsize=9)


def main(argv) -> None:
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  results = _SWEEP.run(out / 'runs', groups=_METHODS.value)
  table = (f'{_SWEEP.sweep.value}: test accuracy %, mean ± std over seeds (target labels '
           'for this report only).\n\n'
           + harness.table(results, COLUMNS, labels=LABELS, group_title='method'))
  harness.write(out, table, harness.summary(results, COLUMNS), plot=plot, figure='da_table.png')


if __name__ == '__main__':
  harness.run(main)
