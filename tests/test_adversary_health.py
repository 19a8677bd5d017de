"""Adversary health (tl_jax/train/health.py): the monitor's rules on made-up logs, and through the
real CLI a forced collapse (a DANN discriminator at LR x 1e-6 on two tiny text domains that
differ in vocabulary): its metrics reach metrics.jsonl, the console warns once naming the setting,
and the Done report says the transfer term collapsed. The same worker runs every DA method from
the tiny config with `--config.transfer.<method>.*` overrides (sections in base_config)."""

import json
import math
import pathlib

import numpy as np
import pytest

from cli_helpers import run_cli_batch, tiny_args, tiny_assets  # noqa: F401 (fixture)
from tl_jax.config import base_config
from tl_jax.train import health

LN2 = math.log(2.0)


def feed(monitor, rows, start=1):
  """rows: (accuracy, loss) per log, one log per step from `start`; returns all warnings."""
  out = []
  for step, (acc, loss) in enumerate(rows, start):
    out += monitor.update(step, {'dann/domain_accuracy': acc, 'dann/domain_loss': loss,
                                 'loss': 1.0})
  return out


def test_classify_thresholds_around_chance():
  assert health.classify(0.5, LN2) == 'ok'
  assert health.classify(0.7, 0.55) == 'ok'  # a discriminator doing its job
  assert health.classify(0.99, 0.05) == 'won'
  assert health.classify(0.99, 0.3) == 'ok'  # right but unsure: not a collapse
  assert health.classify(0.1, 0.9) == 'lost'
  assert health.classify(0.5, 1.5) == 'lost'  # a coin flip at twice a coin flip's loss
  assert health.classify(float('nan'), 1.0) == 'ok'


def test_monitor_warns_once_after_patience_and_skips_the_warmup():
  monitor = health.Monitor(base_config().transfer, num_steps=100)
  # Winning during the warm-up (first 20 steps: the reversal starts at 0) is not judged.
  assert feed(monitor, [(1.0, 0.01)] * 20) == []
  assert monitor.collapsed() == {}
  # Four bad logs, one good one, then five bad ones: only the five in a row count.
  assert feed(monitor, [(1.0, 0.01)] * 4 + [(0.6, 0.6)], start=21) == []
  warnings = feed(monitor, [(1.0, 0.01)] * 12, start=26)
  assert len(warnings) == 1
  assert 'dann discriminator collapsed (won) since step 26' in warnings[0]
  assert '--config.transfer.dann.weight (now 1)' in warnings[0]
  assert '--config.transfer.dann.lr_multiplier (now 10)' in warnings[0]
  assert monitor.collapsed() == {'dann': (26, 'won')}
  (line,) = monitor.report_lines()
  assert 'COLLAPSED (won) since step 26' in line
  # Recovery: the report says so, and a second collapse does not warn again.
  assert feed(monitor, [(0.6, 0.62)], start=40) == []
  assert monitor.collapsed() == {}
  assert 'recovered' in monitor.report_lines()[0]
  assert feed(monitor, [(0.1, 2.0)] * 6, start=41) == []
  assert monitor.collapsed() == {'dann': (41, 'lost')}


def test_monitor_healthy_and_silent_for_methods_without_a_discriminator():
  monitor = health.Monitor(base_config().transfer, num_steps=10)
  rng = np.random.default_rng(0)
  assert feed(monitor, [(0.5 + 0.1 * rng.standard_normal(), LN2) for _ in range(10)]) == []
  assert monitor.report_lines()[0].startswith('  transfer term dann: healthy')
  quiet = health.Monitor(base_config().transfer, num_steps=10)
  quiet.update(5, {'coral/loss': 1.0, 'mdd/disparity': -3.0, 'loss': 1.0})
  assert quiet.report_lines() == []


# ---------------------------------------------------------------------------------------------
# Through the CLI.

SOURCE_WORDS = ('alpha bravo charlie delta echo foxtrot golf hotel india juliet',
                'kilo lima mike november oscar papa quebec romeo sierra tango',
                'uniform victor whiskey xray yankee zulu one two three four')
DA_METHODS = ('dann', 'cdan', 'mdd', 'coral', 'mmd')


def source_folder(assets) -> str:
  """A second text domain: the tiny classes in words the target never uses."""
  root = assets.root / 'source_texts'
  if not root.exists():
    rng = np.random.default_rng(1)
    for label, words in zip(('business', 'sport', 'tech'), SOURCE_WORDS):
      (root / label).mkdir(parents=True)
      for i in range(20):
        (root / label / f'{i:03d}.txt').write_text(' '.join(rng.choice(words.split(), 12)))
    from tl_jax.data import sources  # pylint: disable=g-import-not-at-top
    sources.get_builder(f'folder:{root}', str(assets.data_dir))  # prepared once, here
  return f'folder:{root}'


def da_args(assets, **overrides):
  values = dict(data__source__name=source_folder(assets),
                data__source__eval_splits='validation', data__target__labeled=False,
                train__checkpoint_every=0, train__best_metric='', train__export_hf=False)
  values.update(overrides)
  return tiny_args(assets, **values)


@pytest.fixture(scope='module')
def runs(tiny_assets, tmp_path_factory):
  root = tmp_path_factory.mktemp('health')
  cases = {
      # The discriminator barely moves (LR x 1e-6) while the reversal pushes the features:
      # it ends confidently wrong, the "lost" collapse.
      'collapse': ['train', f'--workdir={root / "collapse"}', *da_args(
          tiny_assets, transfer__objectives="('cross_entropy', 'dann')",
          transfer__dann__hidden='(16,)', transfer__dann__lr_multiplier=1e-6,
          train__num_steps=12, train__eval_every=12)],
      # Every DA method at once from the tiny config, each with a --config.transfer override.
      'all_methods': ['train', f'--workdir={root / "all"}', *da_args(
          tiny_assets, transfer__objectives=str(('cross_entropy',) + DA_METHODS),
          transfer__coral__weight=0.5, transfer__mmd__weight=0.25,
          transfer__dann__hidden='(8,)', transfer__cdan__hidden='(8,)',
          transfer__cdan__random_dim=16, transfer__mdd__hidden='(8,)',
          transfer__mdd__lr_multiplier=3.0, transfer__dann__optimizer='sgd',
          train__num_steps=3, train__eval_every=3)],
  }
  return root, run_cli_batch(cases)


def rows(workdir: pathlib.Path):
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_forced_collapse_is_logged_warned_once_and_reported(runs):
  root, results = runs
  result = results['collapse']
  assert result['code'] == 0, result['stderr'][-3000:]
  out = result['stdout']
  warnings = [l for l in out.splitlines() if l.startswith('WARNING: dann discriminator')]
  assert len(warnings) == 1, out
  assert 'collapsed (lost)' in warnings[0]
  assert '--config.transfer.dann.lr_multiplier (now 1e-06)' in warnings[0]
  done = [l for l in out.splitlines() if l.startswith('Done:')]
  assert done and done[0].endswith('but the transfer term of dann collapsed.'), out
  assert 'transfer term dann: COLLAPSED (lost)' in out
  train = [r for r in rows(root / 'collapse') if 'loss' in r]
  assert [r['step'] for r in train] == list(range(1, 13))
  acc = [r['dann/domain_accuracy'] for r in train]
  loss = [r['dann/domain_loss'] for r in train]
  assert all(0.0 <= a <= 1.0 for a in acc)
  assert loss[-1] > 2 * LN2 > loss[0]  # the frozen discriminator is fooled more and more
  assert any((root / 'collapse' / 'tensorboard').iterdir())


def test_every_da_method_runs_from_the_tiny_config_with_overrides(runs):
  root, results = runs
  result = results['all_methods']
  assert result['code'] == 0, result['stderr'][-3000:]
  train = [r for r in rows(root / 'all') if 'loss' in r]
  assert len(train) == 3
  for r in train:
    np.testing.assert_allclose(r['loss/coral'], 0.5 * r['coral/loss'], rtol=1e-5)
    np.testing.assert_allclose(r['loss/mmd'], 0.25 * r['mmd/mmd2'], rtol=1e-5, atol=1e-9)
    for key in ('dann/domain_accuracy', 'dann/domain_loss', 'cdan/domain_accuracy',
                'cdan/domain_loss', 'mdd/disparity', 'mdd/source_agreement'):
      assert np.isfinite(r[key]), key
  assert 'transfer term dann: healthy' in result['stdout'] or 'transfer term dann' not in \
      result['stdout']  # 3 steps: judged from step 1 on at most, never collapsed
  config = json.loads((root / 'all' / 'config.json').read_text())
  assert config['transfer']['coral']['weight'] == 0.5
  assert config['transfer']['dann']['optimizer'] == 'sgd'
