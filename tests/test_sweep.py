"""Sweep runner: grid expansion, names, host sharding, tables, skip-finished and resume."""

from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys

import pytest

from cli_helpers import REPO, TINY_CONFIG, cli_env, tiny_assets  # noqa: F401 (session fixture)
from tl_jax import config_overrides
from tl_jax import sweep


# -------------------------------------------------------------------------------------------
# Declaring and expanding.
# -------------------------------------------------------------------------------------------

def test_product_names_groups_and_seeds():
  schedules = [{'name': 'full', 'transfer.freeze_preset': 'all'},
               {'transfer.freeze_preset': 'top:2', 'optimizer.learning_rate': 1e-3}]
  overrides = sweep.product(schedules, sweep.axis('seed', [0, 1, 2]))
  assert len(overrides) == 6
  runs = sweep.expand(_base(), overrides)
  assert [r.name for r in runs[:4]] == [
      'full,seed=0', 'full,seed=1', 'full,seed=2', 'freeze_preset=top-2,learning_rate=0.001,seed=0']
  assert [r.group for r in runs] == ['full'] * 3 + ['freeze_preset=top-2,learning_rate=0.001'] * 3
  assert [r.config.seed for r in runs] == [0, 1, 2] * 2
  assert runs[3].config.transfer.freeze_preset == 'top:2'
  assert runs[3].config.optimizer.learning_rate == 1e-3
  assert runs[0].config.optimizer.learning_rate == _base().optimizer.learning_rate  # a copy
  # names of combined axes are joined; chain appends
  named = sweep.product([{'name': 'a'}], [{'name': 'b', 'seed': 3}])
  assert sweep.run_name(named[0]) == 'a-b,seed=3'
  assert len(sweep.chain(overrides, named)) == 7


def test_overrides_are_checked_and_typed():
  base = _base()
  with pytest.raises(sweep.SweepError, match="did you mean 'optimizer.learning_rate'"):
    sweep.expand(base, [{'optimizer.lerning_rate': 1.0}])
  # The CLI's key matcher (tl_jax.config_overrides): within the deepest section that exists.
  with pytest.raises(sweep.SweepError, match="did you mean 'transfer.coral.weight'"):
    sweep.expand(base, [{'transfer.coral.wieght': 1.0}])
  with pytest.raises(sweep.SweepError, match='both named'):
    sweep.expand(base, [{'seed': 1}, {'seed': 1}])
  with pytest.raises(sweep.SweepError, match='empty'):
    sweep.expand(base, [])
  run, = sweep.expand(base, [{'data.target.eval_splits': ['test'],
                              'transfer.lam': {'kind': 'linear', 'value': 0.5}}])
  assert run.config.data.target.eval_splits == ('test',)  # list -> the field's tuple
  assert run.config.transfer.lam.kind == 'linear' and run.config.transfer.lam.gamma == 10.0


def test_one_override_parser_for_the_cli_and_the_sweep():
  argv = ['--config.model.name=minilm', '--config.train.num_steps=5', '--only=0/2',
          "--config.data.target.eval_splits=['test']", '--config.seed', '3']
  overrides, rest = config_overrides.parse_flags(argv)
  assert overrides == {'model.name': 'minilm', 'train.num_steps': 5,
                       'data.target.eval_splits': ['test']}
  assert rest == ['--only=0/2', '--config.seed', '3']  # argparse then rejects the spaced form
  assert config_overrides.flag_keys(argv) == [  # absl takes it: the CLI checks its key too
      'model.name', 'train.num_steps', 'data.target.eval_splits', 'seed']
  config = sweep.apply_overrides(_base(), overrides)
  assert config.train.num_steps == 5 and config.data.target.eval_splits == ('test',)
  valid = config_overrides.flat_keys(_base())
  assert config_overrides.key_hint('train.num_stepz', valid, lambda k: f'--config.{k}') == (
      '; did you mean --config.train.num_steps?')


@pytest.mark.parametrize('n', [1, 2, 3, 5])
def test_host_shards_partition_the_runs(n):
  runs = sweep.expand(_base(), sweep.axis('seed', range(7)))
  shards = [sweep.shard(runs, f'{k}/{n}') for k in range(n)]
  indices = sorted(r.index for s in shards for r in s)
  assert indices == list(range(7))  # every run on exactly one host
  assert all(r.index % n == k for k, s in enumerate(shards) for r in s)
  with pytest.raises(sweep.SweepError, match='K/N'):
    sweep.shard(runs, f'{n}/{n}')


# -------------------------------------------------------------------------------------------
# Measuring and aggregating.
# -------------------------------------------------------------------------------------------

def test_step_times_skip_the_compile_step():
  records = [{'step': 1, 'examples_per_sec': 1.0}, {'step': 2, 'examples_per_sec': 16.0},
             {'step': 4, 'examples_per_sec': 8.0}]
  assert sweep.step_times(records, examples_per_step=16) == [1.0, 2.0]


def test_aggregate_mean_std_over_seeds_and_table():
  accs = [0.9, 0.92, 0.94]
  results = [{'name': f'a,seed={i}', 'group': 'a', 'final': {'target/test/accuracy': acc},
              'wall_s': 10.0 + i, 'opt_state_bytes': 2**20} for i, acc in enumerate(accs)]
  results += [{'name': 'b,seed=0', 'group': 'b', 'final': {'target/test/accuracy': 0.5},
               'wall_s': 3.0},
              {'name': 'b,seed=1', 'group': 'b', 'pending': True}]
  columns = ('target/test/accuracy', 'wall_s', 'opt_state_bytes')
  rows = sweep.aggregate(results, columns)
  a, b = rows
  assert a['runs'] == 3 and a['pending'] == 0 and b['runs'] == 1 and b['pending'] == 1
  mean, std, n = a['target/test/accuracy']
  assert mean == pytest.approx(0.92) and std == pytest.approx(statistics.stdev(accs)) and n == 3
  assert b['target/test/accuracy'] == (0.5, 0.0, 1)
  table = sweep.markdown_table(rows, columns).splitlines()
  # Eval metrics get the 95% CI of the mean, t(0.975, 2) = 4.303: 4.303 * 2.0 / sqrt(3) = 4.97.
  assert table[2] == '| a | 3 | 92.0 ± 2.0 (95% CI ± 5.0) | 11 ± 1 | 1 |'
  assert table[3] == '| b | 1 (+1 pending) | 50.0 | 3 | — |'


def test_paired_deltas_against_a_baseline_by_seed():
  """Δ per seed (row − baseline of the same seed), its mean, std and Student-t CI, and a verdict
  only when the CI excludes 0 — checked by hand."""
  def run(group, seed, acc):
    return {'name': f'{group},seed={seed}', 'group': group, 'seed': seed,
            'final': {'target/test/accuracy': acc}}
  base = [0.80, 0.70, 0.90]
  results = [run('base', i, a) for i, a in enumerate(base)]
  results += [run('up', i, a + d) for i, (a, d) in enumerate(zip(base, (0.05, 0.06, 0.07)))]
  results += [run('noise', i, a + d) for i, (a, d) in enumerate(zip(base, (0.10, -0.10, 0.02)))]
  results += [run('one', 0, 0.60), {'name': 'one,seed=1', 'group': 'one', 'pending': True},
              run('unpaired', 7, 0.99)]
  deltas = sweep.paired_deltas(results, 'target/test/accuracy', 'base')
  assert set(deltas) == {'up', 'noise', 'one'}  # seed 7 has no baseline run: not compared
  mean, std, n = deltas['up']
  assert (mean, std, n) == (pytest.approx(0.06), pytest.approx(0.01), 3)
  # 4.303 * 0.01 / sqrt(3) = 0.0248 -> ± 2.5 points, above 0.
  assert sweep.format_delta('target/test/accuracy', deltas['up']) == '+6.0 (95% CI ± 2.5): better'
  assert sweep.format_delta('target/test/accuracy', deltas['noise']).endswith(': no difference')
  assert sweep.format_delta('target/test/accuracy', deltas['one']) == '-20.0 (1 seed: no CI)'
  assert sweep.format_delta('target/test/loss', (-0.5, 0.01, 3)).endswith(': lower')
  # Two seeds that each gained one article have std 0: a degenerate interval, not "better".
  assert sweep.format_delta('target/test/accuracy', (0.01, 0.0, 2)) == (
      '+1.0 (the same in all 2 seeds: no CI)')
  table = sweep.markdown_table(sweep.aggregate(results, ['target/test/accuracy']),
                               ['target/test/accuracy'], baseline='base', deltas=deltas)
  lines = table.splitlines()
  assert lines[0] == '| run | seeds | target test acc % | Δ vs base |'
  assert lines[2].startswith('| base | 3 | 80.0 ± 10.0') and lines[2].endswith('| — |')
  assert lines[3].endswith('| +6.0 (95% CI ± 2.5): better |')


def test_ci95_is_the_student_t_half_width():
  # By hand: accuracies 0.90, 0.92, 0.94 -> std 0.02; 4.303 * 0.02 / sqrt(3) = 0.049687.
  assert sweep.ci95(0.02, 3) == pytest.approx(0.049687, abs=1e-6)
  assert sweep.ci95(0.5, 2) == pytest.approx(12.706 * 0.5 / 2**0.5)  # df=1
  assert sweep.ci95(1.0, 31) == pytest.approx(2.042 / 31**0.5)  # df=30, the table's last
  assert sweep.ci95(1.0, 100) == pytest.approx(1.96 / 10)  # beyond the table: the normal's
  assert sweep.ci95(0.0, 1) is None  # one seed: no interval
  # A metric some runs lack: its n is shown, as it is not the row's seed count.
  rows = sweep.aggregate([{'group': 'g', 'final': {'t/test/loss': x}} for x in (1.0, 3.0)]
                         + [{'group': 'g', 'final': {}}], ['t/test/loss'])
  assert sweep.markdown_table(rows, ['t/test/loss']).splitlines()[2] == (
      '| g | 3 | 2 ± 1.41 (95% CI ± 12.7, n=2) |')


# -------------------------------------------------------------------------------------------
# Running: tiny BERT on a folder of texts, a few steps per run.
# -------------------------------------------------------------------------------------------

SWEEP_FILE = '''
import sys
sys.path.insert(0, {repo!r})
from tl_jax import sweep
sys.path.insert(0, {configs!r})
import tiny_test

def get_config(arg=None):
  config = tiny_test.get_config()
  config.model.name = {bert!r}
  config.data.target.name = {texts!r}
  config.data.data_dir = {data_dir!r}
  config.data.text_fields = ('text',)
  config.data.target.eval_splits = ('validation',)
  config.train.best_metric = ''
  config.train.num_steps = 4
  config.train.eval_every = 0  # eval and checkpoint at the end only: fewer compiles and writes
  config.train.checkpoint_every = 0
  config.train.export_hf = False
  return config

BASELINE = 'head'  # table.md: every row against it, seed by seed
COLUMNS = ('target/validation/accuracy', 'wall_s')

def get_sweep(arg=None):
  return sweep.product([{{'name': 'head', 'transfer.freeze_preset': 'head_only'}},
                        {{'name': 'all', 'transfer.freeze_preset': 'all'}}],
                       sweep.axis('seed', [0]))
'''


@pytest.fixture
def sweep_file(tiny_assets, tmp_path) -> pathlib.Path:
  path = tmp_path / 'tiny_sweep.py'
  path.write_text(SWEEP_FILE.format(
      repo=str(REPO), configs=str(TINY_CONFIG.parent), bert=str(tiny_assets.bert_dir),
      texts=tiny_assets.text_dataset, data_dir=str(tiny_assets.data_dir)))
  return path


def test_sweep_resumes_interrupted_run_and_skips_finished(sweep_file, tmp_path):
  sweepdir = tmp_path / 'sweep'
  spec = sweep.SweepSpec(str(sweep_file))
  head, full = spec.runs()
  # An interrupted run: 2 of its 4 steps done and checkpointed, no result marker.
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  loop.train(sweep.apply_overrides(head.config, {'train.num_steps': 2}), str(sweepdir / head.name))
  assert not sweep.is_finished(sweepdir / head.name)

  lines = []
  results = sweep.run_sweep(spec, sweepdir, only='0/2', runner='inprocess', printer=lines.append)
  assert '2 runs, 1 on this host (0/2), 0 already finished, 1 to run' in lines[0]
  assert any(line.startswith('[1/1] resuming ' + head.name) for line in lines)
  done, pending = results
  assert done['name'] == head.name and done['resumed'] and pending['pending']
  train, _ = sweep.read_history(sweepdir / head.name)
  assert [r['step'] for r in train] == [1, 2, 3, 4]  # steps 3-4 continued, none twice
  assert done['num_steps'] == 4 and 0 <= done['final']['target/validation/accuracy'] <= 1
  assert done['peak_rss_mb'] > 0 and done['median_step_s'] > 0
  assert len(done['train_curve']) == 4 and done['eval_curve'][-1]['step'] == 4
  # head_only trains only the head, and only the head has optimizer state
  costs = sweep.state_costs(full.config)
  assert costs['trainable_params'] == costs['total_params'] == done['total_params']
  assert done['trainable_params'] == 32 * 3 + 3  # tiny BERT width 32 -> 3 classes
  assert done['opt_state_bytes'] < costs['opt_state_bytes'] / 100
  # A method that reads the pretrained weights is costed as the loop builds it (L2-SP's runs
  # once trained and then failed here, in the costing).
  l2sp = sweep.state_costs(sweep.apply_overrides(
      full.config, {'transfer.objectives': ('cross_entropy', 'l2sp')}))
  assert l2sp['trainable_params'] == costs['trainable_params']
  saved = json.loads((sweepdir / 'runs.json').read_text())
  assert [r['name'] for r in saved] == [head.name, full.name]
  assert (sweepdir / 'runs.csv').read_text().count('\n') == 3
  table = (sweepdir / 'table.md').read_text()
  assert '| head | 1 |' in table and '| all | 0 (+1 pending) | — | — | — |' in table

  # Rerun: finished, so nothing trains again (the marker is untouched).
  marker = sweepdir / head.name / sweep.RESULT_FILE
  before = marker.stat().st_mtime_ns
  lines.clear()
  sweep.run_sweep(spec, sweepdir, only='0/2', runner='inprocess', printer=lines.append)
  assert '1 already finished, 0 to run' in lines[0]
  assert marker.stat().st_mtime_ns == before

  # An edited config (here a learning rate): the finished result is stale, not reused silently.
  edited = sweep.SweepSpec(str(sweep_file), {'optimizer.learning_rate': 0.5})
  with pytest.raises(sweep.SweepError, match=(
      rf'1 finished run\(s\) in .* another config .*\n  {head.name}: '
      r'optimizer.learning_rate: 0.001 -> 0.5\nMove those run directories away')):
    sweep.run_sweep(edited, sweepdir, only='0/2', runner='inprocess', printer=lines.append)
  assert marker.stat().st_mtime_ns == before
  # --report_only trains nothing; it tabulates the run as trained and names the change.
  lines.clear()
  reported = sweep.report_only(edited, sweepdir, printer=lines.append)
  assert lines == [f'WARNING: trained with another config than the sweep gives now: {head.name}: '
                   'optimizer.learning_rate: 0.001 -> 0.5']
  assert reported[0]['name'] == head.name and marker.stat().st_mtime_ns == before


def test_cli_subprocess_runner_and_report(sweep_file, tmp_path):
  sweepdir = tmp_path / 'cli'
  command = [sys.executable, '-m', 'tl_jax.sweep', f'--config={sweep_file}',
             f'--sweepdir={sweepdir}', '--only=1/2', '--config.train.num_steps=2',
             '--prune_checkpoints']
  done = subprocess.run(command, cwd=REPO, env=cli_env(1), capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  result = sweep.read_result(sweepdir / 'all,seed=0')
  assert result['num_steps'] == 2  # the --config override reached the child
  assert result['trainable_params'] == result['total_params']
  assert not (sweepdir / 'all,seed=0' / 'checkpoints').exists()
  assert not (sweepdir / 'head,seed=0').exists()  # host 0's run
  assert '| head | 0 (+1 pending) | — | — | — |' in done.stdout
  assert '| run | seeds | target val acc % | Δ vs head | wall s |' in done.stdout  # COLUMNS
  assert (sweepdir / 'logs' / 'all,seed=0.log').read_text().count('step 2/2') == 1
  bad = subprocess.run(command[:4] + [f'--sweepdir={sweepdir}', '--config.train.nm_steps=2'],
                       cwd=REPO, env=cli_env(1), capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2
  assert "did you mean 'train.num_steps'" in bad.stderr


def _base():
  from tl_jax.config import base_config  # pylint: disable=g-import-not-at-top
  return base_config()


def test_overrides_between_two_configs_are_what_the_second_changes():
  from tl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  base = config_lib.from_file(str(REPO / 'configs' / 'source_only_digits.py'))
  dann = config_lib.from_file(str(REPO / 'configs' / 'dann_digits.py'))
  overrides = config_overrides.between(base, dann)
  assert overrides['transfer.objectives'] == ('cross_entropy', 'dann')
  assert overrides['transfer.dann.weight'] == 0.1
  assert 'model.name' not in overrides  # the same in both
  assert sweep.apply_overrides(base, overrides).to_dict() == dann.to_dict()
