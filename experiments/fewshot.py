"""Few-shot episodes on cached frozen-backbone features (tl_jax/analysis/episodes.py).

  python experiments/fewshot.py --config=configs/fewshot_bbc.py [--out=runs/fewshot]
         [--config.transfer.fewshot.k_shot=1] [--config.transfer.fewshot.num_episodes=600]

For each backbone init in transfer.fewshot.inits: features of transfer.fewshot.split (computed
once, cached), then num_episodes N-way K-shot episodes (the same episodes for every classifier
and backbone), mean query accuracy ± 95% CI over episodes. Writes table.md, results.json and
fewshot.png into --out.
"""

from __future__ import annotations

import pathlib

from tl_jax import harness

harness.setup()  # before jax is imported

_CONFIG = harness.define_config('fewshot_bbc.py')
_OUT = harness.define_out('fewshot')


def main(argv):
  del argv
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import episodes, features  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  cfg = config.transfer.fewshot
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  results = {}
  for init in cfg.inits:
    config.model.init = init
    feats = features.split_features(config, cfg.split, cache_dir=cfg.cache_dir or None,
                                    layer=None if cfg.layer == -100 else cfg.layer,
                                    pieces=pieces_lib.build(config))
    results[init] = episodes.evaluate(feats.x, feats.y, cfg)
    print(init, results[init], flush=True)
  name = f'{cfg.n_way}-way {cfg.k_shot}-shot, {cfg.n_query} queries/class'
  rows = [f'| backbone ({config.model.name}) | ' + ' | '.join(
      f'{c}{" (" + cfg.metric + ")" if c == "prototype" else ""}' for c in cfg.classifiers)
          + ' |', '|---' * (len(cfg.classifiers) + 1) + '|']
  for init, r in results.items():
    rows.append(f'| {init} | ' + ' | '.join(f'{r[c][0]:.4f} ± {r[c][1]:.4f}'
                                             for c in cfg.classifiers) + ' |')
  table = (f'{config.data.target.name}/{cfg.split}, {name}, {cfg.num_episodes} episodes '
           f'(seed {cfg.seed}); mean accuracy ± 95% CI\n\n' + '\n'.join(rows))
  harness.write(out, table, results, plot=lambda r, path: plot(r, path, cfg.classifiers, name),
                figure='fewshot.png')


def plot(results: dict, path: pathlib.Path, classifiers, title: str) -> None:
  """Query accuracy ± 95% CI per classifier, one bar per backbone init."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  width = 0.8 / len(results)
  with report.figure(path, figsize=(5, 3), dpi=100) as (_, ax):
    for i, (init, r) in enumerate(results.items()):
      ax.bar(np.arange(len(classifiers)) + i * width, [r[c][0] for c in classifiers],
             width, yerr=[r[c][1] for c in classifiers], label=init)
    ax.set_xticks(np.arange(len(classifiers)) + 0.4 - width / 2, classifiers)
    ax.set_ylabel('query accuracy')
    ax.set_title(title)
    ax.legend()


if __name__ == '__main__':
  harness.run(main)
