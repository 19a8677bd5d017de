"""Unsupervised validation of the DA table's runs: which run would each label-free score pick?

  python experiments/da_validation.py [--config=configs/da_validation_digits.py]
         [--out=runs/da_validation] [--config.transfer.uda_validation.runs_dir=runs/da_table/runs]

Every finished run RUNS_DIR/<method>,seed=<seed>/ (written by experiments/da_table.py) is restored
from its latest checkpoint with the run's own config.json (pieces.build + TrainCore +
Checkpointer.restore_latest, as `tl-jax eval` does), then scored WITHOUT target labels
(tl_jax/analysis/uda_validation.py): source validation accuracy; IWV and DEV with the density
ratio w(x) = p_T(x)/p_S(x) of a logistic domain classifier on the run's own features (source
train vs the unlabelled target train split); −entropy and SND of its predictions on the
unlabelled target split. Target labels are stripped from the target split before the model sees
it; the target TEST labels feed only the oracle column (and are checked against the run's own
metrics.jsonl). Per score: the Spearman rank correlation with the oracle over all runs, and the
run it would pick against the oracle's best. Writes OUT/table.md, OUT/results.json,
OUT/da_validation.png (each score vs oracle accuracy) and prints the tables.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import re
import sys
import time

from tl_jax import harness

harness.setup()  # before jax is imported

import numpy as np  # noqa: E402

# da_table's sweep runs '<method>,seed=<seed>' (and its older '<method>_s<seed>'); not
# '<name>.old-<date>' copies.
RUN_NAME = re.compile(r'^(?P<method>\w+)(?:,seed=|_s)(?P<seed>\d+)$')
SCORES = ('source_val_accuracy', 'iwv', 'iwv_error', 'dev', 'neg_entropy', 'snd')
LABELS = {'source_val_accuracy': 'source val acc', 'iwv': '−IWV (CE)', 'iwv_error': '−IWV (0-1)',
          'dev': '−DEV (CE)', 'neg_entropy': '−entropy', 'snd': 'SND'}
ORACLE = 'oracle_target_test_accuracy'

if __name__ == '__main__':
  _CONFIG = harness.define_config('da_validation_digits.py')
  _OUT = harness.define_out('da_validation')


class RunsMissingError(FileNotFoundError):
  """No DA runs to score."""


# -------------------------------------------------------------------------------------------
# Runs: find them, restore them through the trainer's own code.
# -------------------------------------------------------------------------------------------

def finished_step(workdir: pathlib.Path) -> int | None:
  """The step of the run's final eval when the run is finished (it logged its last eval at
  train.num_steps), else None: a run still training is not scored."""
  config = json.loads((workdir / 'config.json').read_text())
  metrics = workdir / 'metrics.jsonl'
  if not metrics.exists():
    return None
  num_steps = int(config['train']['num_steps'])
  for line in metrics.read_text().splitlines():
    row = json.loads(line)
    if row.get('step') == num_steps and any(k.startswith('target/') and k.endswith('/accuracy')
                                            for k in row):
      return num_steps
  return None


def find_runs(runs_dir: str | os.PathLike) -> list[pathlib.Path]:
  """The finished run dirs <method>,seed=<seed> (config.json, checkpoints/, final eval logged)."""
  runs_dir = pathlib.Path(runs_dir)
  how = ('create them with `python experiments/da_table.py` (writes runs/da_table/runs), or '
         'point --config.transfer.uda_validation.runs_dir at such a folder')
  if not runs_dir.is_dir():
    raise RunsMissingError(f'{runs_dir} does not exist: {how}')
  runs = []
  for path in sorted(runs_dir.iterdir()):
    if not (RUN_NAME.match(path.name) and (path / 'config.json').exists()
            and (path / 'checkpoints').is_dir()):
      continue
    if finished_step(path) is None:
      print(f'skipping {path}: not finished (no final eval in metrics.jsonl)', flush=True)
      continue
    config = json.loads((path / 'config.json').read_text())
    if not config['data'].get('source', {}).get('name') or config['data']['target']['labeled']:
      print(f'skipping {path}: not an unsupervised DA run (no source, or target labels '
            'trained on: a ceiling, not a candidate)', flush=True)
      continue
    runs.append(path)
  if not runs:
    raise RunsMissingError(f'{runs_dir} holds no finished run (<method>,seed=<seed>/ with '
                           f'config.json, checkpoints/ and its final eval): {how}')
  return runs


def restore_run(workdir: pathlib.Path):
  """(config, pieces (module, tokenizer, ...), model params, step) of the run's latest
  checkpoint, restored as `tl-jax eval` restores it (tl_jax/train/loop.py restore_run)."""
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tl_jax.methods import objectives  # pylint: disable=g-import-not-at-top
  try:
    config, pieces, _, restored = loop.restore_run(workdir)
  except FileNotFoundError as e:
    raise RunsMissingError(f'{e}: rerun it (python experiments/da_table.py) or remove '
                           'it') from None
  # The model's own params: method-owned ones (discriminators, ...) are not part of it.
  return config, pieces, objectives.module_params(restored.state.params), restored.step


def logged_target_accuracy(workdir: pathlib.Path, test_split: str) -> float | None:
  """The last target test accuracy the run itself logged in metrics.jsonl."""
  key = f'target/{test_split}/accuracy'
  value = None
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    row = json.loads(line)
    if key in row:
      value = float(row[key])
  return value


# -------------------------------------------------------------------------------------------
# Model outputs on the splits.
# -------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _forward_fn(module, head: str):
  """Jitted (params, batch) -> (pooled features [B, D], class probabilities [B, C])."""
  import jax  # pylint: disable=g-import-not-at-top
  from tl_jax.models import forward as forward_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.methods import objectives  # pylint: disable=g-import-not-at-top

  def fn(params, batch):
    out = forward_lib.forward(module, params, batch, train=False)
    logits = objectives.select_logits(out.logits, head)
    return out.pooled.astype('float32'), jax.nn.softmax(logits.astype('float32'))
  return jax.jit(fn)


def _unlabelled(batches):
  """The batches with their labels removed: what an unlabelled target split looks like."""
  for batch in batches:
    yield {k: v for k, v in batch.items() if k not in ('label', 'label_probs')}


def forward_split(fn, params, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """(features, probs, labels or None) over every real example (padding rows dropped)."""
  from tl_jax.models import forward as forward_lib  # pylint: disable=g-import-not-at-top
  feats, probs, labels = [], [], []
  for batch in batches:
    f, p = fn(params, forward_lib.model_inputs(batch))
    keep = np.asarray(batch['mask'], bool) if 'mask' in batch else slice(None)
    feats.append(np.asarray(f)[keep])
    probs.append(np.asarray(p, np.float64)[keep])
    if 'label' in batch:
      labels.append(np.asarray(batch['label'])[keep])
  return (np.concatenate(feats), np.concatenate(probs),
          np.concatenate(labels) if labels else None)


@dataclasses.dataclass
class RunOutputs:
  """What the label-free scores may see: no target label anywhere in here."""
  source_train_features: np.ndarray
  source_val_features: np.ndarray
  source_val_probs: np.ndarray
  source_val_labels: np.ndarray
  target_features: np.ndarray  # the unlabelled target split
  target_probs: np.ndarray


def run_outputs(config, pieces, params, cfg) -> tuple[RunOutputs, float]:
  """(the run's outputs for scoring, its oracle target test accuracy)."""
  from tl_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  data_cfg = config.data.copy_and_resolve_references()
  with data_cfg.unlocked():
    data_cfg.source.eval_splits = (cfg.source_train_split, cfg.source_val_split)
    data_cfg.target.eval_splits = (cfg.target_split, cfg.test_split)
  image_size = loop._image_size(config, pieces.module)  # pylint: disable=protected-access
  evals = data_lib.build_eval_batches(data_cfg, tokenizer=pieces.tokenizer,
                                      image_size=image_size, process_index=0, process_count=1,
                                      num_devices=1)
  fn = _forward_fn(pieces.module, str(config.data.target.head))
  source_train, _, _ = forward_split(fn, params, evals[f'source/{cfg.source_train_split}'])
  source_val, source_val_probs, source_val_labels = forward_split(
      fn, params, evals[f'source/{cfg.source_val_split}'])
  target, target_probs, none = forward_split(
      fn, params, _unlabelled(evals[f'target/{cfg.target_split}']))
  assert none is None  # the target split reached the model without labels
  outputs = RunOutputs(source_train, source_val, source_val_probs, source_val_labels, target,
                       target_probs)
  # The oracle: target test labels are read here and nowhere else.
  _, test_probs, test_labels = forward_split(fn, params, evals[f'target/{cfg.test_split}'])
  return outputs, float(np.mean(np.argmax(test_probs, 1) == test_labels))


def score_run(outputs: RunOutputs, cfg) -> dict[str, float]:
  """The label-free scores of one run (higher = better), from its outputs alone."""
  from tl_jax.analysis import uda_validation  # pylint: disable=g-import-not-at-top
  both = np.concatenate([outputs.source_train_features, outputs.target_features])
  mean, std = both.mean(0), both.std(0) + 1e-6  # the domain classifier sees standardised features
  weights = uda_validation.density_ratio(
      (outputs.source_train_features - mean) / std, (outputs.target_features - mean) / std,
      (outputs.source_val_features - mean) / std, c=cfg.domain_classifier_c, seed=cfg.seed)
  scores = uda_validation.score_models(
      {'run': outputs.source_val_probs}, outputs.source_val_labels,
      {'run': outputs.target_probs}, weights, snd_temperature=cfg.snd_temperature)['run']
  # Diagnostics of the ratio: mean ~1 when well estimated; a small effective sample size
  # (Kish) means a few source examples carry IWV and DEV.
  scores['mean_weight'] = float(np.mean(weights))
  scores['weight_ess'] = float(np.sum(weights) ** 2 / np.sum(weights ** 2))
  return scores


# -------------------------------------------------------------------------------------------
# All runs -> rows, correlations, picks, outputs.
# -------------------------------------------------------------------------------------------

def evaluate_runs(cfg) -> dict:
  """{'runs': {name: {scores..., oracle, logged, step}}, 'summary': {score: {...}}}."""
  runs = {}
  for workdir in find_runs(cfg.runs_dir):
    start = time.perf_counter()
    config, pieces, params, step = restore_run(workdir)
    outputs, oracle = run_outputs(config, pieces, params, cfg)
    row = score_run(outputs, cfg)
    row.update({ORACLE: oracle, 'logged_target_test_accuracy':
                logged_target_accuracy(workdir, cfg.test_split), 'step': step,
                'method': RUN_NAME.match(workdir.name)['method']})
    runs[workdir.name] = row
    print(f'{workdir.name} (step {step}, {time.perf_counter() - start:.1f} s): ' + ', '.join(
        f'{k}={row[k]:.4f}' for k in (*SCORES, ORACLE)), flush=True)
    logged = row['logged_target_test_accuracy']
    if logged is not None and abs(logged - oracle) > 1e-6:
      print(f'  WARNING: restored target test accuracy {oracle:.4f} != the run\'s logged '
            f'{logged:.4f}', flush=True)
  return {'runs': runs, 'summary': summarize(runs)}


def summarize(runs: dict) -> dict:
  """Per score: Spearman ρ with the oracle over the runs, its pick, the pick's oracle accuracy."""
  from tl_jax.analysis import uda_validation  # pylint: disable=g-import-not-at-top
  names = list(runs)
  oracle = np.array([runs[n][ORACLE] for n in names])
  summary = {}
  for score in SCORES:
    values = np.array([runs[n][score] for n in names])
    pick = names[int(np.argmax(values))]
    summary[score] = dict(
        spearman=uda_validation.spearman(values, oracle) if len(names) > 2 else float('nan'),
        pick=pick, pick_oracle=runs[pick][ORACLE])
  best = names[int(np.argmax(oracle))]
  summary['oracle'] = dict(pick=best, pick_oracle=runs[best][ORACLE])
  return summary


def markdown(results: dict) -> str:
  runs, summary = results['runs'], results['summary']
  lines = ['Scores without target labels (higher = better), one row per run; the oracle '
           'column (target test accuracy, from the restored checkpoint) is the only place '
           'target labels enter.', '',
           '| run | ' + ' | '.join(LABELS[s] for s in SCORES) +
           ' | mean w | ESS of w | oracle target test acc |',
           '|---' * (len(SCORES) + 4) + '|']
  for name, row in runs.items():
    lines.append(f'| {name} | ' + ' | '.join(f'{row[s]:.3f}' for s in SCORES) +
                 f' | {row["mean_weight"]:.2f} | {row["weight_ess"]:.0f} | {row[ORACLE]:.3f} |')
  lines += ['', f'Over {len(runs)} runs: rank correlation of each score with the oracle, and '
            'the run it picks.', '',
            '| score | Spearman ρ vs oracle | picks | its target test acc | oracle best | '
            'oracle best acc |', '|---|---|---|---|---|---|']
  best = summary['oracle']
  for score in SCORES:
    s = summary[score]
    lines.append(f'| {LABELS[score]} | {s["spearman"]:+.3f} | {s["pick"]} | '
                 f'{s["pick_oracle"]:.3f} | {best["pick"]} | {best["pick_oracle"]:.3f} |')
  return '\n'.join(lines) + '\n'


def plot(results: dict, path: pathlib.Path) -> None:
  """Each score vs the oracle target test accuracy, one colour per method."""
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  runs, summary = results['runs'], results['summary']
  methods = sorted({r['method'] for r in runs.values()})
  with report.figure(path, 2, 3, figsize=(13, 7), dpi=100) as (fig, axes):
    colors = {m: report.pyplot().cm.tab10(i % 10) for i, m in enumerate(methods)}
    for ax, score in zip(axes.ravel(), SCORES):
      for method in methods:
        rows = [r for r in runs.values() if r['method'] == method]
        ax.scatter([r[score] for r in rows], [r[ORACLE] for r in rows], color=colors[method],
                   label=method)
      ax.set_xlabel(f'{LABELS[score]} (no target labels)')
      ax.set_ylabel('oracle target test acc')
      ax.set_title(f'Spearman ρ = {summary[score]["spearman"]:+.2f}', fontsize=9)
      ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle('unsupervised DA validation: each score vs the oracle target test accuracy')


def write_outputs(results: dict, out: pathlib.Path) -> str:
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  return report.write(out, markdown(results), results, plot=plot, figure='da_validation.png')


def main(argv):
  del argv
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  start = time.monotonic()
  try:
    results = evaluate_runs(_CONFIG.value.transfer.uda_validation)
  except RunsMissingError as e:
    print(f'da_validation: error: {e}', file=sys.stderr)
    sys.exit(2)
  table = write_outputs(results, pathlib.Path(_OUT.value))
  print(table)
  print(f'({time.monotonic() - start:.0f} s; outputs in {_OUT.value})')


if __name__ == '__main__':
  harness.run(main)
