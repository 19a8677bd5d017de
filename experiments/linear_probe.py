"""Linear probe on cached frozen-backbone features (tl_jax/analysis/{features,linear_probe}.py).

  python experiments/linear_probe.py --config=configs/linear_probe_bbc.py [--out=runs/linear_probe]
         [--config.transfer.linear_probe.layer=3] [--config.data.max_length=64] ...

For each backbone init in transfer.linear_probe.inits (pretrained, random): features of the train
and eval splits (computed once, cached), a softmax-regression probe on the train features, its
accuracy on the eval split. Writes table.md, results.json and linear_probe.png into --out.
The probe is full-batch from a zero init, so it is deterministic: no seeds to average.
"""

from __future__ import annotations

import pathlib
import time

from tl_jax import harness

harness.setup()  # before jax is imported

_CONFIG = harness.define_config('linear_probe_bbc.py')
_OUT = harness.define_out('linear_probe')


def main(argv):
  del argv
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import features, linear_probe  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  cfg = config.transfer.linear_probe
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  results = {}
  for init in cfg.inits:
    config.model.init = init
    pieces = pieces_lib.build(config)
    kw = dict(cache_dir=cfg.cache_dir or None, layer=linear_probe.layer_from_config(cfg),
              pieces=pieces)
    train = features.split_features(config, cfg.train_split, limit=cfg.train_limit, **kw)
    test = features.split_features(config, cfg.eval_split, **kw)
    start = time.perf_counter()
    probe = linear_probe.train_from_config(train.x, train.y, pieces.target_info.num_classes, cfg)
    probe_seconds = time.perf_counter() - start
    results[init] = dict(
        train_examples=len(train), eval_examples=len(test),
        train_accuracy=linear_probe.accuracy(probe, train.x, train.y),
        eval_accuracy=linear_probe.accuracy(probe, test.x, test.y),
        feature_seconds=train.seconds + test.seconds, from_cache=train.from_cache,
        probe_seconds=probe_seconds)
    print(init, results[init], flush=True)
  rows = [f'| backbone ({config.model.name}) | train N | {cfg.eval_split} N | train acc | '
          f'{cfg.eval_split} acc | features s | probe s |', '|---' * 7 + '|']
  for init, r in results.items():
    rows.append(f'| {init} | {r["train_examples"]} | {r["eval_examples"]} | '
                f'{r["train_accuracy"]:.4f} | {r["eval_accuracy"]:.4f} | '
                f'{r["feature_seconds"]:.1f}{" (cached)" if r["from_cache"] else ""} | '
                f'{r["probe_seconds"]:.2f} |')
  table = '\n'.join(rows)
  title = f'linear probe: {config.model.name} on {config.data.target.name}'
  harness.write(out, table, results, figure='linear_probe.png',
                plot=lambda r, path: plot(r, path, f'{cfg.eval_split} accuracy', title))


def plot(results: dict, path: pathlib.Path, ylabel: str, title: str) -> None:
  """Eval accuracy per backbone init."""
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  with report.figure(path, figsize=(4, 3), dpi=100) as (_, ax):
    ax.bar(list(results), [r['eval_accuracy'] for r in results.values()])
    ax.set_ylabel(ylabel)
    ax.set_title(title)


if __name__ == '__main__':
  harness.run(main)
