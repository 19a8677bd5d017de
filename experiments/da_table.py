"""Domain-adaptation table: digits (labelled source) -> digits/rotated (unlabelled target).

Runs a DA sweep file (default configs/sweeps/da_digits.py: a small random-init ViT, 16x16 input,
patch 4, width 64, 2 layers; each method's config configs/<method>_digits.py; 3 seeds) through the
sweep runner, then writes OUT/table.md (target and source test accuracy, mean ± std over seeds;
the target labels are used for this report only, never for training or model selection),
OUT/results.json and OUT/da_table.png, and prints the table. Finished runs are skipped, so an
interrupted table continues where it stopped. Any sweep file in the same convention (one run
group per method, `seed` over seeds, a BASELINE group) works: --sweep=configs/sweeps/da_text.py,
--sweep=configs/sweeps/da_image.py:DIR.

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

# The columns any of the sweep's runs report (the text sweeps hold out a source validation
# split, the digits sweep a source test split).
COLUMNS = ('target/test/accuracy', 'source/validation/accuracy', 'source/test/accuracy')
LABELS = {'source_only': 'Source only', 'target_supervised': 'Target supervised (ceiling)',
          'dann': 'DANN', 'mmd': 'MMD (DAN, multi-kernel)', 'coral': 'Deep CORAL',
          'cdan': 'CDAN', 'cdan_e': 'CDAN+E', 'mdd': 'MDD',
          'importance': 'Importance weighting (domain classifier)',
          'iw_classifier': 'Importance weighting (domain classifier)',
          'importance_kmm': 'Importance weighting (KMM)', 'iw_kmm': 'Importance weighting (KMM)',
          'importance_kliep': 'Importance weighting (KLIEP)',
          'iw_kliep': 'Importance weighting (KLIEP)'}
SHORT = {'importance': 'IW (classifier)', 'iw_classifier': 'IW (classifier)',
         'importance_kmm': 'IW (KMM)', 'iw_kmm': 'IW (KMM)', 'importance_kliep': 'IW (KLIEP)',
         'iw_kliep': 'IW (KLIEP)', 'target_supervised': 'ceiling'}  # distinct plot ticks


def plot(results: dict, path: pathlib.Path, columns: tuple[str, str]) -> None:
  """Target and source accuracy per method, mean ± std over seeds."""
  rows = [r for r in results['groups'] if columns[0] in r]
  x = list(range(len(rows)))
  with report.figure(path, figsize=(1.3 * len(rows) + 2, 3.5), dpi=120) as (_, ax):
    for shift, column, label in ((-0.2, columns[0], 'target test'),
                                 (0.2, columns[1], columns[1].replace('/accuracy', ''))):
      stats = [r.get(column, {'mean': 0, 'std': 0}) for r in rows]
      ax.bar([i + shift for i in x], [s['mean'] for s in stats], 0.4,
             yerr=[s['std'] for s in stats], label=label)
    ax.set_xticks(x, [SHORT.get(r['group'], LABELS.get(r['group'], r['group']).split(' (')[0])
                      for r in rows], rotation=20)
    ax.set_ylabel('accuracy')
    ax.set_ylim(0, 1)
    ax.legend(loc='upper left', bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f'{pathlib.Path(_SWEEP.sweep.value.partition(":")[0]).name}: mean ± std over '
                 'seeds', fontsize=9)


def main(argv) -> None:
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  out = pathlib.Path(_OUT.value)
  results = _SWEEP.run(out / 'runs', groups=_METHODS.value)
  columns = [c for c in COLUMNS if c == COLUMNS[0] or any(
      c in r.get('final', {}) for r in results)]
  table = (f'{_SWEEP.sweep.value}: accuracy %, mean ± std over seeds and the 95% CI of the mean; '
           'Δ: the paired difference from the baseline, seed by seed (target labels for this '
           'report only).\n\n'
           + harness.table(results, columns, labels=LABELS, group_title='method',
                           baseline=_SWEEP.baseline()))
  harness.write(out, table, harness.summary(results, columns),
                plot=lambda summary, path: plot(summary, path, (columns[0], columns[-1])),
                figure='da_table.png')


if __name__ == '__main__':
  harness.run(main)
