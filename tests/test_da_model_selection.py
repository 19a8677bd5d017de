"""The model-selection experiments end to end on tiny real data (digits -> digits/rotated, a tiny
random ViT): experiments/tradaboost.py from its config to the table rows, and
experiments/da_validation.py scoring two tiny trained runs restored from their checkpoints,
with scores that do not move when every target label is shuffled (only the oracle does)."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from fixtures_data import prepared_data_dir  # noqa: F401 (fixture)
from test_da_e2e import shrunk, write_tiny_vit
from tl_jax import config as config_lib
from tl_jax import models
from tl_jax.data import sources
from tl_jax.train import loop

REPO = pathlib.Path(__file__).resolve().parent.parent
TARGET = 'digits/rotated'


tradaboost_exp = config_lib.load_module(REPO / 'experiments' / 'tradaboost.py',
                                       'tradaboost_experiment')
da_validation = config_lib.load_module(REPO / 'experiments' / 'da_validation.py',
                                      'da_validation_experiment')


@pytest.fixture(scope='module')
def vit_dir(tmp_path_factory):
  return write_tiny_vit(tmp_path_factory.mktemp('tiny_vit'), seed=3)


@pytest.fixture(scope='module')
def data_dir(prepared_data_dir):  # noqa: F811 (fixture)
  sources.get_builder(TARGET, prepared_data_dir)
  return prepared_data_dir


# -------------------------------------------------------------------------------------------
# TrAdaBoost: config -> cached features -> four classifiers per seed -> table.
# -------------------------------------------------------------------------------------------

def test_tradaboost_experiment_from_config_to_table(vit_dir, data_dir, tmp_path):
  config = config_lib.from_file(REPO / 'configs' / 'tradaboost_digits.py')
  assert config.data.target.name == TARGET and config.data.source.name == 'digits'
  config.model.name = str(vit_dir)
  config.data.data_dir = data_dir
  cfg = config.transfer.tradaboost
  cfg.update(dict(cache_dir=str(tmp_path / 'cache'), shots=3, seeds=(0, 1), rounds=4, steps=40))

  results = tradaboost_exp.run(config)
  rows = results['seeds']
  assert [r['seed'] for r in rows] == [0, 1]
  num_source = sources.info('digits', data_dir).splits['train']
  for r in rows:
    assert r['labelled_target'] == 3 * 10 and r['source_examples'] == num_source
    assert all(0.0 <= r[m] <= 1.0 for m in tradaboost_exp.METHODS)
    assert len(r['tradaboost_target_errors']) == 4
    # The balanced start gives the target half the weight mass; uniform gives it 30/(30 + N).
    assert r['tradaboost_balanced_source_weight_share'] < r['tradaboost_source_weight_share']
  # The source-only probe never sees the k-shot draw; the target-only probe does.
  assert rows[0]['source_only'] == rows[1]['source_only']
  # Features computed once per split (source train, target train, target test) and cached.
  assert len(list((tmp_path / 'cache').glob('*.npz'))) == 3

  table = tradaboost_exp.write_outputs(results, tmp_path / 'out')
  assert table.count('\n| ') == 1 + len(tradaboost_exp.METHODS)  # header + one row each
  for method in tradaboost_exp.METHODS:
    acc = np.array([r[method] for r in rows])
    label = tradaboost_exp.LABELS[method].split(' (')[0]
    assert any(line.startswith(f'| {label}') and f'| {acc.mean():.3f} ± {acc.std():.3f} |' in line
               for line in table.splitlines()), (method, table)
  assert json.loads((tmp_path / 'out' / 'results.json').read_text())['seeds'] == rows
  assert (tmp_path / 'out' / 'tradaboost.png').stat().st_size > 0


# -------------------------------------------------------------------------------------------
# DA validation: two tiny trained runs, restored and scored without target labels.
# -------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def runs_dir(vit_dir, data_dir, tmp_path_factory):
  runs = tmp_path_factory.mktemp('da_runs')
  for method, seed in (('source_only', 0), ('coral', 1)):
    config = config_lib.from_file(REPO / 'configs' / f'{method}_digits.py')
    config.seed = config.data.shuffle_seed = seed
    config = shrunk(config, vit_dir, data_dir, steps=2)
    config.train.export_hf = False
    config.optimizer.learning_rate = 1e-2  # two steps that move the weights off the init
    loop.train(config, str(runs / f'{method}_s{seed}'))
  # A finished target-supervised ceiling (no source, target labels trained on): not a candidate.
  ceiling = runs / 'target_supervised_s0'
  shutil.copytree(runs / 'source_only_s0', ceiling)
  config = json.loads((ceiling / 'config.json').read_text())
  config['data']['source']['name'] = ''
  config['data']['target']['labeled'] = True
  (ceiling / 'config.json').write_text(json.dumps(config))
  # A run still training (no final eval yet) and an old copy: neither is scored.
  for name in ('dann_s0', 'coral_s1.old-20260101-000000'):
    (runs / name / 'checkpoints').mkdir(parents=True)
    (runs / name / 'config.json').write_text((runs / 'coral_s1' / 'config.json').read_text())
    (runs / name / 'metrics.jsonl').write_text('{"step": 1, "loss": 1.0}\n')
  return runs


def da_validation_init_dir(runs):
  return json.loads((runs / 'source_only_s0' / 'config.json').read_text())['model']['name']


def _cfg(runs):
  cfg = config_lib.from_file(REPO / 'configs' / 'da_validation_digits.py')
  cfg = cfg.transfer.uda_validation
  cfg.runs_dir = str(runs)
  return cfg


class _ShuffledLabels:
  """A data source whose labels are a permutation of the real ones."""

  def __init__(self, source, seed):
    from tl_jax.data import fewshot
    labels = fewshot.read_labels(source, 'label')
    self._source = source
    self._labels = np.random.default_rng(seed).permutation(labels)

  def __len__(self):
    return len(self._source)

  def _relabel(self, i, record):
    return {**record, 'label': self._labels[i]}

  def __getitem__(self, i):
    return self._relabel(i, self._source[i])

  def __getitems__(self, indices):
    return [self._relabel(i, r) for i, r in zip(indices, self._source.__getitems__(indices))]


def test_da_validation_restores_runs_scores_without_target_labels(runs_dir, tmp_path,
                                                                  monkeypatch):
  cfg = _cfg(runs_dir)
  results = da_validation.evaluate_runs(cfg)
  runs = results['runs']
  assert sorted(runs) == ['coral_s1', 'source_only_s0']
  # The params come from the checkpoint (trained), not from the model directory (the init).
  _, _, params, step = da_validation.restore_run(runs_dir / 'source_only_s0')
  _, init = models.load_pretrained(str(da_validation_init_dir(runs_dir)))
  assert step == 2
  moved = [not np.allclose(a, b) for a, b in zip(
      jax.tree.leaves(params['encoder']), jax.tree.leaves(init['encoder']))]
  assert any(moved)
  for name, row in runs.items():
    # Restored from the final checkpoint: its target test accuracy is the one the run logged.
    assert row['step'] == 2
    assert row[da_validation.ORACLE] == pytest.approx(row['logged_target_test_accuracy'],
                                                      abs=1e-6), name
    assert all(np.isfinite(row[s]) for s in da_validation.SCORES), row
    assert 0.0 <= row['source_val_accuracy'] <= 1.0
  assert runs['coral_s1']['snd'] != runs['source_only_s0']['snd']  # two different models

  # Every target label shuffled (train and test splits): the scores stay, the oracle moves.
  real = sources.data_source

  def shuffled(name, split, data_dir=None):
    source = real(name, split, data_dir)
    return _ShuffledLabels(source, seed=len(split)) if name == TARGET else source
  monkeypatch.setattr(sources, 'data_source', shuffled)
  again = da_validation.evaluate_runs(cfg)['runs']
  for name in runs:
    for score in (*da_validation.SCORES, 'mean_weight'):
      assert again[name][score] == runs[name][score], (name, score)
  assert any(again[n][da_validation.ORACLE] != runs[n][da_validation.ORACLE] for n in runs)

  table = da_validation.write_outputs(results, tmp_path / 'out')
  assert '| coral_s1 |' in table and '| source_only_s0 |' in table
  assert 'Spearman' in table and (tmp_path / 'out' / 'da_validation.png').stat().st_size > 0
  summary = json.loads((tmp_path / 'out' / 'results.json').read_text())['summary']
  best = max(runs, key=lambda n: runs[n][da_validation.ORACLE])
  assert summary['oracle']['pick'] == best
  pick = max(runs, key=lambda n: runs[n]['dev'])
  assert summary['dev']['pick'] == pick


def test_da_validation_without_runs_names_the_command_and_fails(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(REPO / 'experiments' / 'da_validation.py'),
       f'--config.transfer.uda_validation.runs_dir={tmp_path / "missing"}',
       f'--out={tmp_path / "out"}'], capture_output=True, text=True, cwd=REPO, timeout=60)
  assert proc.returncode != 0
  assert 'python experiments/da_table.py' in proc.stderr, proc.stderr
  assert not (tmp_path / 'out').exists()
