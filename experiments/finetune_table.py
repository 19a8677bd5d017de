"""Few-shot fine-tuning table: MiniLM on BBC News with 8 labelled articles per class, 3 seeds.

Runs configs/sweeps/finetune_bbc.py (methods: random-init fine-tune (no transfer), head only,
full fine-tune, L2-SP, BSS, hidden-state and attention distillation from the frozen pretrained
model, LoRA; batch 16 × 64 tokens, each trained until target validation accuracy stops improving
(configs/common.py:few_shot_bbc) and scored at its best validation step on the 214-article test
split) through the sweep runner. A seed sets the head init, the data order and WHICH 8 articles
per class are labelled (paired across methods); each row is compared with full fine-tuning seed
by seed. Writes OUT/table.md, OUT/results.json and OUT/finetune_table.png and prints the table;
finished runs are skipped, so an interrupted table continues where it stopped.

Run:   python experiments/finetune_table.py [--out=runs/finetune_table] [--methods=head_only,lora]
       python experiments/finetune_table.py --sweep=configs/sweeps/finetune_bbc.py:steps=2,seeds=1
           --methods=head_only                                      (smoke run)
Measured: see the README.
"""

from __future__ import annotations

from tl_jax import harness

harness.setup()  # before jax is imported

import pathlib  # noqa: E402

from absl import flags  # noqa: E402

from tl_jax import report  # noqa: E402

_SWEEP = harness.define_sweep('configs/sweeps/finetune_bbc.py')
_OUT = harness.define_out('finetune_table')
_METHODS = flags.DEFINE_list('methods', [], 'run groups (methods) to run; empty = all')

COLUMNS = ('target/test/accuracy',)
LABELS = {'random_init': 'fine-tune from random init (no transfer)',
          'head_only': 'head only (frozen backbone)', 'finetune': 'full fine-tune',
          'l2sp': 'L2-SP', 'bss': 'BSS', 'distill_hidden': 'hidden-state distillation',
          'distill_attention': 'attention distillation', 'lora': 'LoRA (rank 8, q/v)'}


def plot(results: dict, path: pathlib.Path) -> None:
  """Mean ± std per method, one dot per seed."""
  rows = [r for r in results['groups'] if COLUMNS[0] in r]
  with report.figure(path, figsize=(8, 4), dpi=120) as (_, ax):
    ax.bar(range(len(rows)), [r[COLUMNS[0]]['mean'] for r in rows],
           yerr=[r[COLUMNS[0]]['std'] for r in rows], capsize=4, color='tab:blue')
    for i, row in enumerate(rows):
      accs = [r['final'][COLUMNS[0]] for r in results['runs']
              if r['group'] == row['group'] and not r['pending']]
      ax.scatter([i] * len(accs), accs, color='k', s=10, zorder=3)
    ax.set_xticks(range(len(rows)), [LABELS.get(r['group'], r['group']) for r in rows],
                  rotation=20, ha='right')
    ax.set_ylabel('target test accuracy')
    ax.set_ylim(0, 1)
    ax.set_title('MiniLM → BBC News, 8-shot (mean ± std over seeds, dots = seeds)')


def main(argv) -> None:
  del argv
  out = pathlib.Path(_OUT.value)
  results = _SWEEP.run(out / 'runs', groups=_METHODS.value)
  table = (harness.table(results, COLUMNS, labels=LABELS, group_title='method',
                         baseline=_SWEEP.baseline())
           + f'\n\n{_SWEEP.sweep.value}: MiniLM-L6 on BBC News, 8 labelled articles per class, '
           'batch 16 × 64 tokens; test split.')
  harness.write(out, table, harness.summary(results, COLUMNS), plot=plot,
                figure='finetune_table.png')


if __name__ == '__main__':
  harness.run(main)
