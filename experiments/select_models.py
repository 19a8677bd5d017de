"""Rank candidate backbones / layers by transferability scores, before any training
(tl_jax/analysis/selection.py).

  python experiments/select_models.py --config=configs/selection_bbc.py [--out=runs/selection]

Each candidate ('init' or 'init:layer') gets features of the first `limit` examples of
transfer.selection.split, then LogME, H-score, LEEP and NCE (LEEP/NCE through a Gaussian-mixture
source head: the backbones have no source classifier). The last column, kept apart, is what
the scores try to predict: the test accuracy of a linear probe trained on those same examples.
Writes table.md and results.json into --out.
"""

from __future__ import annotations

import pathlib
import time

from tl_jax import harness

harness.setup()  # before jax is imported

_CONFIG = harness.define_config('selection_bbc.py')
_OUT = harness.define_out('selection')
SCORES = ('logme', 'h_score', 'leep', 'nce')


def main(argv):
  del argv
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import (features, linear_probe,  # pylint: disable=g-import-not-at-top
                               selection)
  config = _CONFIG.value
  cfg = config.transfer.selection
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  pieces, results = {}, {}
  for candidate in cfg.candidates:
    init, _, layer = candidate.partition(':')
    config.model.init = init
    if init not in pieces:
      pieces[init] = pieces_lib.build(config)
    kw = dict(cache_dir=cfg.cache_dir or None, layer=int(layer) if layer else None,
              pieces=pieces[init])
    train = features.split_features(config, cfg.split, limit=cfg.limit, **kw)
    start = time.perf_counter()
    scores = selection.all_scores(train.x, train.y, num_components=cfg.num_components,
                                  seed=cfg.seed)
    seconds = time.perf_counter() - start
    test = features.split_features(config, cfg.eval_split, **kw)
    probe = linear_probe.train_probe(train.x, train.y, pieces[init].target_info.num_classes)
    results[candidate] = dict(scores, score_seconds=seconds,
                              probe_test_accuracy=linear_probe.accuracy(probe, test.x, test.y))
    print(candidate, results[candidate], flush=True)
  ranks = selection.rank({c: {s: r[s] for s in SCORES} for c, r in results.items()})
  truth = sorted(results, key=lambda c: -results[c]['probe_test_accuracy'])
  rows = [f'| candidate ({config.model.name}) | ' + ' | '.join(SCORES)
          + ' | scores s | oracle: probe test acc |', '|---' * (len(SCORES) + 3) + '|']
  for c, r in results.items():
    rows.append(f'| {c} | ' + ' | '.join(f'{r[s]:.4f}' for s in SCORES)
                + f' | {r["score_seconds"]:.2f} | {r["probe_test_accuracy"]:.4f} |')
  rows.append('')
  rows += [f'- {s} ranks: {" > ".join(ranks[s])}' for s in SCORES]
  rows.append(f'- oracle (probe on {cfg.eval_split}, not used by the scores): '
              f'{" > ".join(truth)}')
  table = (f'{config.data.target.name}/{cfg.split}, first {cfg.limit} examples, max_length '
           f'{config.data.max_length}; layer k = hidden state k pooled like the model\n\n'
           + '\n'.join(rows))
  harness.write(out, table, results)


if __name__ == '__main__':
  harness.run(main)
