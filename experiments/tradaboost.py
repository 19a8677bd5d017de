"""TrAdaBoost with a few labelled target examples (tl_jax/analysis/tradaboost.py), on cached
frozen-backbone features: labelled source + k labelled target examples per class -> target test.

  python experiments/tradaboost.py --config=configs/tradaboost_digits.py [--out=runs/tradaboost]
         [--config.transfer.tradaboost.shots=10] [--config.transfer.tradaboost.rounds=40] ...

Per seed (one k-shot draw of the target train split each), four classifiers, all the same
softmax regression on the same features (linear_probe.fit_full_batch, TrAdaBoost's learner):
  target only   the k·C labelled target examples
  source only   the labelled source train split
  pooled        source + target examples, uniform weights
  TrAdaBoost    boosting over source + target (config.transfer.tradaboost.rounds)
and their accuracy on the target test split. Writes OUT/table.md, OUT/results.json and
OUT/tradaboost.png, and prints the table.

The backbone is config.model (features cached by tl_jax/analysis/features.py). The digits config
uses the ViT pre-trained on digits/original by experiments/freezing_benchmark.py; when its
export is missing, this script pre-trains it first with that script's own code (400 steps,
~1 min; from a fresh checkout the whole run took 79 s and printed the same table).
"""

from __future__ import annotations

import pathlib
import time

from tl_jax import harness

harness.setup()  # before jax is imported

import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
# Written by experiments/freezing_benchmark.py (pretrain_vit), the default --outdir.
PRETRAINED_VIT = 'runs/freezing_benchmark/pretrain/vit_digits/export'
METHODS = ('target_only', 'source_only', 'pooled', 'tradaboost', 'tradaboost_balanced')
LABELS = {'target_only': 'Target only (k-shot probe)', 'source_only': 'Source only probe',
          'pooled': 'Source + target pooled probe',
          'tradaboost': 'TrAdaBoost (uniform start, as the paper)',
          'tradaboost_balanced': 'TrAdaBoost (target starts with share s of the weight)'}

if __name__ == '__main__':
  _CONFIG = harness.define_config('tradaboost_digits.py')
  _OUT = harness.define_out('tradaboost')


def ensure_backbone(config) -> None:
  """Pre-trains the digits ViT (experiments/freezing_benchmark.py) when the config names its
  export and it is not there yet. Other names are left to load_pretrained and its errors."""
  name = pathlib.Path(str(config.model.name))
  if (name / 'config.json').exists() or name.resolve() != (REPO / PRETRAINED_VIT).resolve():
    return
  from tl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  freezing_benchmark = config_lib.load_module(REPO / 'experiments' / 'freezing_benchmark.py',
                                              'freezing_benchmark')
  outdir = name.resolve().parent.parent.parent  # OUTDIR/pretrain/vit_digits/export
  print(f'{name} is missing: pre-training it with experiments/freezing_benchmark.py', flush=True)
  exported = freezing_benchmark.pretrain_vit(outdir, quick=False)
  assert exported.resolve() == name.resolve(), (exported, name)


def domain_config(config, dataset: str):
  """The config with `dataset` as the (only) target domain: features.split_features reads it."""
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.data.target.name = dataset
    cfg.data.target.few_shot = 0
    cfg.data.source.name = ''
  return cfg


def load_features(config) -> dict:
  """Features of the source train split, the target train split and the target test split."""
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import features, linear_probe  # pylint: disable=g-import-not-at-top
  cfg = config.transfer.tradaboost
  ensure_backbone(config)
  source_cfg = domain_config(config, config.data.source.name)
  target_cfg = domain_config(config, config.data.target.name)
  pieces = pieces_lib.build(target_cfg)
  kw = dict(cache_dir=cfg.cache_dir or None, layer=linear_probe.layer_from_config(cfg),
            module=pieces.module, params=pieces.params)
  return dict(source=features.split_features(source_cfg, cfg.source_split, **kw),
              target_train=features.split_features(target_cfg, cfg.target_train_split, **kw),
              test=features.split_features(target_cfg, cfg.test_split, **kw),
              class_names=pieces.target_info.class_names)


def run_seed(feats: dict, cfg, seed: int) -> dict:
  """Target test accuracy of the four classifiers for one k-shot draw."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tl_jax.data import fewshot  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import linear_probe, tradaboost  # pylint: disable=g-import-not-at-top
  num_classes = len(feats['class_names'])
  source, target, test = feats['source'], feats['target_train'], feats['test']
  shots = fewshot.few_shot_indices(target.y, cfg.shots, seed, feats['class_names'],
                                   where='target train split')
  mean, std = 0.0, 1.0
  if cfg.standardize:
    mean, std = source.x.mean(0), source.x.std(0) + 1e-6
  x_s, y_s = (source.x - mean) / std, source.y
  x_t, y_t = (target.x[shots] - mean) / std, target.y[shots]
  x_test, y_test = (test.x - mean) / std, test.y

  def probe(x, y):
    return linear_probe.fit_full_batch_jit(
        jnp.asarray(x, jnp.float32), jnp.asarray(y), num_classes, l2=cfg.l2,
        learning_rate=cfg.learning_rate, num_steps=cfg.steps, standardize=False)

  out = {'seed': seed, 'labelled_target': len(shots), 'source_examples': len(x_s)}
  out['target_only'] = linear_probe.accuracy(probe(x_t, y_t), x_test, y_test)
  out['source_only'] = linear_probe.accuracy(probe(x_s, y_s), x_test, y_test)
  out['pooled'] = linear_probe.accuracy(
      probe(np.concatenate([x_s, x_t]), np.concatenate([y_s, y_t])), x_test, y_test)
  variants = {'tradaboost': None}
  if cfg.balanced_target_share:
    variants['tradaboost_balanced'] = float(cfg.balanced_target_share)
  for name, share in variants.items():
    start = time.perf_counter()
    boosted = tradaboost.tradaboost(x_s, y_s, x_t, y_t, num_classes=num_classes,
                                    rounds=cfg.rounds, l2=cfg.l2, steps=cfg.steps,
                                    lr=cfg.learning_rate, initial_target_share=share)
    out[name] = float(np.mean(boosted.predict(x_test) == y_test))
    out[f'{name}_seconds'] = time.perf_counter() - start
    # Where the boosting put its trust: the source's share of the final weight mass, and the
    # weighted target error per round (clipped below 1/2, as the update requires).
    out[f'{name}_source_weight_share'] = float(
        boosted.source_weights.sum() / (boosted.source_weights.sum() +
                                        boosted.target_weights.sum()))
    out[f'{name}_target_errors'] = [round(float(e), 4) for e in boosted.target_errors]
  return out


def run(config) -> dict:
  """{'setting': {...}, 'seeds': [run_seed rows]} for every seed of the config."""
  cfg = config.transfer.tradaboost
  feats = load_features(config)
  setting = dict(backbone=str(config.model.name), source=config.data.source.name,
                 target=config.data.target.name, shots=int(cfg.shots), rounds=int(cfg.rounds),
                 balanced_target_share=float(cfg.balanced_target_share),
                 source_examples=len(feats['source']), test_examples=len(feats['test']),
                 feature_dim=int(feats['source'].x.shape[1]))
  rows = []
  for seed in cfg.seeds:
    rows.append(run_seed(feats, cfg, int(seed)))
    print(' '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in rows[-1].items() if not isinstance(v, list)), flush=True)
  return {'setting': setting, 'seeds': rows}


def methods(rows: list[dict]) -> list[str]:
  return [m for m in METHODS if m in rows[0]]


def markdown(results: dict) -> str:
  s, rows = results['setting'], results['seeds']
  lines = [f'{s["source"]} (labelled, {s["source_examples"]}) -> {s["target"]} with {s["shots"]} '
           f'labelled examples per class; frozen features ({s["feature_dim"]}-d) of '
           f'{s["backbone"]}; target test accuracy ({s["test_examples"]} examples), mean ± std '
           f'over {len(rows)} k-shot draws (seeds {[r["seed"] for r in rows]}); TrAdaBoost '
           f'{s["rounds"]} rounds.', '',
           '| method | target test acc | per seed |', '|---|---|---|']
  for method in methods(rows):
    acc = np.array([r[method] for r in rows])
    label = LABELS[method].replace('share s', f'share {s["balanced_target_share"]}')
    lines.append(f'| {label} | {acc.mean():.3f} ± {acc.std():.3f} | '
                 f'{", ".join(f"{a:.3f}" for a in acc)} |')
  return '\n'.join(lines) + '\n'


def plot(results: dict, path: pathlib.Path) -> None:
  """Target test accuracy per method, mean ± std over seeds (dots: seeds)."""
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  rows, s = results['seeds'], results['setting']
  names = methods(rows)
  acc = [np.array([r[m] for r in rows]) for m in names]
  short = {'tradaboost': 'TrAdaBoost\n(uniform start)',
           'tradaboost_balanced': 'TrAdaBoost\n(balanced start)'}
  with report.figure(path, figsize=(7, 3.8)) as (_, ax):
    ax.bar(range(len(names)), [a.mean() for a in acc], yerr=[a.std() for a in acc], capsize=4)
    for i, a in enumerate(acc):
      ax.plot([i] * len(a), a, 'k.', alpha=0.6)
    ax.set_xticks(range(len(names)), [short.get(m, LABELS[m].split(' (')[0]) for m in names],
                  rotation=15, fontsize=8)
    ax.set_ylabel('target test accuracy')
    ax.set_ylim(0, 1)
    ax.set_title(f'{s["source"]} -> {s["target"]}, {s["shots"]}-shot, mean ± std over seeds',
                 fontsize=9)


def write_outputs(results: dict, out: pathlib.Path) -> str:
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  return report.write(out, markdown(results), results, plot=plot, figure='tradaboost.png')


def main(argv):
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  start = time.monotonic()
  results = run(_CONFIG.value)
  table = write_outputs(results, pathlib.Path(_OUT.value))
  print(table)
  print(f'({time.monotonic() - start:.0f} s; outputs in {_OUT.value})')


if __name__ == '__main__':
  harness.run(main)
