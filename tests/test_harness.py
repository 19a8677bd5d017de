"""The experiment harness: seeds run as sweep runs and tabulate as mean ± std; every script in
experiments/ goes through it and answers --help."""

import json
import pathlib
import statistics
import subprocess
import sys

import pytest

from cli_helpers import REPO, TINY_CONFIG, cli_env, tiny_assets  # noqa: F401 (fixture)
from tl_jax import harness
from tl_jax import sweep

SCRIPTS = sorted((REPO / 'experiments').glob('*.py'))
METRIC = 'target/validation/accuracy'

SWEEP_FILE = '''
from tl_jax import config as config_lib
from tl_jax import sweep

def get_config(arg=None):
  config = config_lib.from_file({tiny!r})
  config.model.name = {bert!r}
  config.data.target.name = {texts!r}
  config.data.data_dir = {data_dir!r}
  config.data.text_fields = ('text',)
  config.data.target.eval_splits = ('validation',)
  config.train.best_metric = ''
  config.train.num_steps = 2
  config.train.eval_every = 0  # one eval and checkpoint, at the end
  config.train.checkpoint_every = 0
  config.train.export_hf = False
  return config

def get_sweep(arg=None):
  return sweep.product([{{'name': 'head', 'transfer.freeze_preset': 'head_only'}},
                        {{'name': 'full', 'transfer.freeze_preset': 'all'}}],
                       [{{'seed': s, 'data.shuffle_seed': s}} for s in (0, 1)])
'''


@pytest.fixture
def sweep_file(tiny_assets, tmp_path) -> str:  # noqa: F811 (the fixture)
  path = tmp_path / 'tiny_sweep.py'
  path.write_text(SWEEP_FILE.format(
      tiny=str(TINY_CONFIG), bert=str(tiny_assets.bert_dir), texts=tiny_assets.text_dataset,
      data_dir=str(tiny_assets.data_dir)))
  return str(path)


def test_seeds_run_as_sweep_runs_and_table_gives_mean_and_std(sweep_file, tmp_path):
  results = harness.run_sweep(sweep_file, tmp_path / 'runs', groups=['head'], runner='inprocess')
  assert [r['name'] for r in results] == ['head,seed=0', 'head,seed=1']  # 'full' left out
  accs = [r['final'][METRIC] for r in results]
  table = harness.table(results, [METRIC], labels={'head': 'head only'}, group_title='method')
  assert '| method | seeds |' in table
  row, = [line for line in table.splitlines() if line.startswith('| head only |')]
  assert row.startswith('| head only | 2 |')
  assert f'{100 * statistics.fmean(accs):.1f} ± {100 * statistics.stdev(accs):.1f}' in row

  summary = harness.summary(results, [METRIC])
  group, = summary['groups']
  assert group[METRIC]['n'] == 2
  assert group[METRIC]['mean'] == pytest.approx(statistics.fmean(accs))
  assert group[METRIC]['std'] == pytest.approx(statistics.stdev(accs))
  assert [r['seed'] for r in summary['runs']] == [0, 1]

  out = tmp_path / 'out'
  harness.write(out, table, summary, figure='acc.png', plot=_bar_plot)
  assert (out / 'table.md').read_text().strip() == table
  assert json.loads((out / 'results.json').read_text())['groups'][0]['runs'] == 2
  assert (out / 'acc.png').stat().st_size > 0

  # Rerun: finished runs are read back, not trained again; --report_only reads the same.
  again = harness.run_sweep(sweep_file, tmp_path / 'runs', groups=['head'], report_only=True)
  assert [r['final'][METRIC] for r in again] == accs


def _bar_plot(results, path):
  from tl_jax import report  # pylint: disable=g-import-not-at-top
  with report.figure(path, figsize=(3, 2)) as (_, ax):
    ax.bar([0], [results['groups'][0][METRIC]['mean']])


def test_unknown_group_is_one_error_before_anything_runs(sweep_file, tmp_path):
  with pytest.raises(sweep.SweepError, match=r"no runs named \['haed'\]; valid: head, full"):
    harness.run_sweep(sweep_file, tmp_path / 'runs', groups=['haed'], runner='inprocess')
  assert not (tmp_path / 'runs').exists()


def test_table_sweeps_expand_with_their_options():
  da = sweep.SweepSpec(str(REPO / 'configs/sweeps/da_digits.py') + ':steps=2,seeds=2').runs()
  assert da[0].name == 'source_only,seed=0' and len(da) == 9 * 2
  assert {r.config.train.num_steps for r in da} == {2}
  ft = sweep.SweepSpec(str(REPO / 'configs/sweeps/finetune_bbc.py') + ':seeds=1').runs()
  assert [r.group for r in ft] == ['random_init', 'head_only', 'finetune', 'l2sp', 'bss',
                                   'distill_hidden', 'distill_attention', 'lora']
  assert ft[-1].config.transfer.freeze_preset == 'lora'


def test_every_script_uses_the_harness():
  assert len(SCRIPTS) >= 17


def test_vit_sweeps_run_without_a_model_dir():
  """The ViT pre-training and λ sweeps default to the shipped configs/models/vit_digits8 (a
  stranger runs the README's command as is); options may follow a DIR or stand alone."""
  pre, = sweep.SweepSpec(str(REPO / 'configs/sweeps/vit_digits_pretrain.py')).runs()
  shipped = json.loads((pathlib.Path(pre.config.model.name) / 'config.json').read_text())
  assert (shipped['image_size'], shipped['patch_size'], shipped['num_hidden_layers']) == (8, 2, 4)
  lam = sweep.SweepSpec(str(REPO / 'configs/sweeps/lambda.py') + ':steps=6,seeds=1').runs()
  assert len(lam) == 8 and {r.config.train.num_steps for r in lam} == {6}
  assert {r.config.model.name for r in lam} == {pre.config.model.name}
  other = sweep.SweepSpec(str(REPO / 'configs/sweeps/lambda.py') + ':/elsewhere,seeds=1').runs()
  assert {r.config.model.name for r in other} == {'/elsewhere'}
  with pytest.raises(ValueError, match="options are ',steps=N,seeds=N'"):
    sweep.SweepSpec(str(REPO / 'configs/sweeps/lambda.py') + ':stpes=6').runs()
  for path in SCRIPTS:
    text = path.read_text()
    assert 'harness.setup(' in text and 'harness.run(main' in text, path.name
    for old in ('argparse', 'sys.path.insert', 'app.run(', 'sys.argv', 'os.environ'):
      assert old not in text, f'{path.name}: {old}'


# One process for all scripts: each runs as __main__ with --help (absl prints its flags and
# exits), then its flags are removed so the next script can define its own.
HELP_ALL = '''
import contextlib, io, runpy, sys
from absl import flags
failed = []
for path in sys.argv[1:]:
  before = set(flags.FLAGS)
  out = io.StringIO()
  sys.argv = [path, '--help']
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
      runpy.run_path(path, run_name='__main__')
    failed.append(f'{path}: no exit after --help')
  except SystemExit:
    if 'flags:' not in out.getvalue() and '--' not in out.getvalue():
      failed.append(f'{path}: no help text: {out.getvalue()[-500:]}')
  except BaseException as e:  # pylint: disable=broad-except
    failed.append(f'{path}: {type(e).__name__}: {e}')
  for name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, name)
print('\\n'.join(failed) or 'ALL OK')
'''


def test_every_script_answers_help():
  done = subprocess.run([sys.executable, '-c', HELP_ALL, *map(str, SCRIPTS)], cwd=REPO,
                        env=cli_env(1), capture_output=True, text=True, timeout=240)
  assert done.stdout.strip().endswith('ALL OK'), done.stdout[-3000:] + done.stderr[-3000:]


def _undefined_globals(source: str, filename: str) -> set[str]:
  """Names a script's functions read as globals that the module never binds (a missing import
  that only the plotting or reporting code reaches, at the end of an hour-long run)."""
  import builtins  # pylint: disable=g-import-not-at-top
  import symtable  # pylint: disable=g-import-not-at-top
  top = symtable.symtable(source, filename, 'exec')
  bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
  missing, tables = set(), list(top.get_children())
  while tables:
    table = tables.pop()
    tables.extend(table.get_children())
    missing |= {s.get_name() for s in table.get_symbols()
                if s.is_global() and s.is_referenced() and not s.is_assigned()}
  return missing - bound - set(dir(builtins)) - {'__file__'}


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_no_unbound_global(script):
  assert not _undefined_globals(script.read_text(), str(script)), script.name


@pytest.mark.parametrize('script', [s for s in SCRIPTS if s.name.startswith('bench_')],
                         ids=lambda p: p.name)
def test_every_benchmark_records_the_machine_load(script):
  """A benchmark prints whether the machine was quiet (tl_jax.machine_load), so a timing taken
  under load says so in its own output."""
  text = script.read_text()
  assert 'harness.run(main, timed=True)' in text or 'harness.load_watch()' in text
