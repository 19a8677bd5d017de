"""Crash safety, corrupted checkpoints, the workdir lock, NaN stops, determinism and security,
end to end through the real CLI on a tiny random BERT (a run takes a few seconds).

Kills, pre-emptions and NaNs are placed exactly with tl_jax.train.faults, armed through
TL_JAX_TEST_KILL_AT='<fault>:<step>' (fault: step | save | eval | term | nan).
"""

from __future__ import annotations

import ast
import fcntl
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from cli_helpers import (NO_DROPOUT_SHARD_MAP, assert_params_close, assert_params_equal,
                         cli_command, cli_env, complete_steps, describe, eight_device_run,
                         error_lines, exported_params, partial_writes, read_metrics, REPO,
                         resumed_step, run_cli, run_cli_batch, snapshot, tiny_args,
                         tiny_assets)  # noqa: F401 (fixtures)
from tl_jax import config as config_lib
from tl_jax.train import faults
from tl_jax.train.state import TrainState

KILLED = -signal.SIGKILL
PREEMPTED = 75  # loop.PREEMPTED_EXIT_CODE


def _train(assets, workdir, *, fault: str | None = None, devices: int = 1, **overrides):
  env = cli_env(devices, **({faults.ENV: fault} if fault else {}))
  return run_cli(['train', f'--workdir={workdir}', *tiny_args(assets, **overrides)], env=env)


@pytest.fixture(scope='module')
def reference(tiny_assets, tmp_path_factory) -> pathlib.Path:
  """An uninterrupted tiny run: 6 steps, eval + checkpoint every 2, dropout on."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  done = _train(tiny_assets, workdir)
  assert done.returncode == 0, describe(done)
  assert complete_steps(workdir) == [2, 4, 6]
  return workdir


# ---------------------------------------------------------------------------------------------
# Crash safety: one workdir, interrupted again and again, then finished.

CHAIN = (
    ('kill_mid_step', dict(fault='step:3')),
    ('nan_at_step_3', dict(fault='nan:3')),
    ('kill_during_save', dict(fault='save:4')),
    ('kill_during_eval', dict(fault='eval:6')),
    ('finish', dict()),
)


@pytest.fixture(scope='module')
def chain(tiny_assets, tmp_path_factory):
  """{phase: (result, complete steps before, complete steps after, partial writes after)}."""
  workdir = tmp_path_factory.mktemp('chain') / 'run'
  phases = {}
  for name, kwargs in CHAIN:
    before = complete_steps(workdir)
    done = _train(tiny_assets, workdir, **kwargs)
    phases[name] = (done, before, complete_steps(workdir), partial_writes(workdir))
  phases['workdir'] = workdir
  return phases


@pytest.mark.slow  # the chain: five runs
def test_every_rerun_resumes_from_the_last_complete_checkpoint(chain):
  for name, _ in CHAIN[1:]:
    done, before, _, _ = chain[name]
    expected = max(before) if before else None
    assert resumed_step(done.stdout) == expected, f'{name}: {describe(done)}'


@pytest.mark.slow  # the chain: five runs
def test_kill_mid_step_keeps_only_complete_checkpoints(chain):
  done, _, after, _ = chain['kill_mid_step']
  assert done.returncode == KILLED, describe(done)
  assert set(after) <= {2}  # step 3 was never saved; step 2's async write may not have finished


@pytest.mark.slow  # the chain: five runs
def test_nan_loss_stops_at_that_step_and_keeps_the_last_good_checkpoint(chain):
  done, _, after, partial = chain['nan_at_step_3']
  assert done.returncode == 2, describe(done)
  lines = error_lines(done.stderr)
  assert len(lines) == 1 and 'not finite at step 3' in lines[0], describe(done)
  assert 'Lower the learning rate' in lines[0]
  assert 'Traceback' not in done.stderr
  assert after == [2] and not partial  # the good step 2 is complete, nothing after it
  # ... and it is usable: the next run restores it (its checksums verified).
  assert resumed_step(chain['kill_during_save'][0].stdout) == 2


@pytest.mark.slow  # the chain: five runs
def test_kill_during_a_save_leaves_a_partial_write_that_is_never_used(chain):
  done, _, after, partial = chain['kill_during_save']
  assert done.returncode == KILLED, describe(done)
  assert 4 not in after and any(p.startswith('4.') for p in partial), (after, partial)
  assert resumed_step(chain['kill_during_eval'][0].stdout) == 2


@pytest.mark.slow  # the chain: five runs
def test_kill_during_eval(chain):
  done, _, after, _ = chain['kill_during_eval']
  assert done.returncode == KILLED, describe(done)
  assert 6 not in after


@pytest.mark.slow  # the chain: five runs
def test_interrupted_run_ends_bit_identical_to_an_uninterrupted_one(chain, reference):
  done, _, after, partial = chain['finish']
  assert done.returncode == 0, describe(done)
  assert after == [2, 4, 6] and not partial
  assert_params_equal(exported_params(chain['workdir']), exported_params(reference))
  # The log too: lines of steps that ran twice were replaced, not duplicated.
  assert read_metrics(chain['workdir']) == read_metrics(reference)


# ---------------------------------------------------------------------------------------------
# The fault hook itself: inert unless armed, and out of the user's config.

def test_the_fault_hook_is_inert_unless_armed_and_not_in_the_config(monkeypatch):
  state = TrainState(params={'w': np.ones(3, np.float32)}, opt_state=(), step=0, rng=0, stage=0)
  monkeypatch.delenv(faults.ENV, raising=False)
  assert faults.armed() is None
  for point in faults.POINTS:
    assert faults.at(point, 3, state=state) is state
  monkeypatch.setenv(faults.ENV, 'nan:3')
  assert faults.armed() == ('nan', 3)
  assert faults.at('before_step', 2, state=state) is state  # another step
  assert faults.at('step', 3, state=state) is state  # another point: nothing fires
  assert np.isnan(faults.at('before_step', 3, state=state).params['w']).all()
  with pytest.raises(ValueError, match='unknown fault point'):
    faults.at('stpe', 3, state=state)
  monkeypatch.setenv(faults.ENV, 'kill:3')
  with pytest.raises(ValueError, match='want <fault>:<step>'):
    faults.armed()
  assert 'inject_nan_at_step' not in config_lib.base_config().train


# ---------------------------------------------------------------------------------------------
# Pre-emption: SIGTERM saves at the next step boundary and exits 75; the rerun resumes.

def test_sigterm_saves_at_the_step_boundary_and_resumes_bit_identically(tiny_assets, reference,
                                                                        tmp_path):
  workdir = tmp_path / 'run'
  done = _train(tiny_assets, workdir, fault='term:3')  # SIGTERM right after step 3 starts
  assert done.returncode == PREEMPTED, describe(done)
  assert 'Pre-empted (SIGTERM) at step 3/6: checkpoint 3 saved' in done.stdout, describe(done)
  assert 'Traceback' not in done.stderr and not error_lines(done.stderr), describe(done)
  assert 3 in complete_steps(workdir) and not partial_writes(workdir)
  again = _train(tiny_assets, workdir)
  assert again.returncode == 0, describe(again)
  assert resumed_step(again.stdout) == 3
  assert_params_equal(exported_params(workdir), exported_params(reference))
  assert read_metrics(workdir) == read_metrics(reference)


# ---------------------------------------------------------------------------------------------
# Readers (tl-jax eval, restore_run) beside a live trainer that saves every step.

def test_readers_beside_a_live_trainer_leave_it_alone(tiny_assets, tmp_path):
  workdir = tmp_path / 'run'
  args = ['train', f'--workdir={workdir}',
          *tiny_args(tiny_assets, train__num_steps=100000, train__eval_every=0,
                     train__checkpoint_every=1, train__keep_checkpoints=2)]
  out, err = open(tmp_path / 'stdout', 'w'), open(tmp_path / 'stderr', 'w')
  trainer = subprocess.Popen(cli_command(args), cwd=REPO, env=cli_env(1), stdout=out, stderr=err)
  try:
    deadline = time.monotonic() + 180
    while len(complete_steps(workdir)) < 2:  # training and saving every step
      assert trainer.poll() is None and time.monotonic() < deadline, 'trainer did not start'
      time.sleep(0.2)
    readers = run_cli_batch({f'eval{i}': ['eval', f'--workdir={workdir}'] for i in range(4)})
    assert trainer.poll() is None, 'a reader stopped the trainer'
    trainer.send_signal(signal.SIGTERM)  # and a pre-emption from outside, mid-run
    code = trainer.wait(timeout=120)
  finally:
    if trainer.poll() is None:
      trainer.kill()
      trainer.wait()
    out.close()
    err.close()
  stdout, stderr = (tmp_path / 'stdout').read_text(), (tmp_path / 'stderr').read_text()
  steps = []
  for name, result in readers.items():
    assert result['code'] == 0, f"{name}: {result['stderr'][-3000:]}"
    assert 'Traceback' not in result['stderr'] and not error_lines(result['stderr']), name
    steps.append(int(re.search(r'eval @ step (\d+):', result['stdout']).group(1)))
  assert steps == sorted(steps) and steps[0] >= 2, steps
  assert code == PREEMPTED, f'exit {code}\n{stdout[-2000:]}\n{stderr[-3000:]}'
  assert 'Traceback' not in stderr and not error_lines(stderr), stderr[-3000:]
  stopped = int(re.search(r'Pre-empted \(SIGTERM\) at step (\d+)/', stdout).group(1))
  assert stopped >= steps[-1] and complete_steps(workdir)[-1] == stopped
  assert not (workdir / 'checkpoints_rejected').exists()  # nothing was taken for broken
  final = run_cli(['eval', f'--workdir={workdir}'])
  assert final.returncode == 0 and f'eval @ step {stopped}:' in final.stdout, describe(final)


# ---------------------------------------------------------------------------------------------
# Resuming under another freezing preset or optimizer (train the head, then unfreeze).

def _encoder(params):
  return {k: v for k, v in params.items() if 'encoder' in k}


def test_resume_after_unfreezing_and_changing_the_optimizer(tiny_assets, tmp_path):
  workdir = tmp_path / 'run'
  head = _train(tiny_assets, workdir, train__num_steps=4, transfer__freeze_preset='head_only')
  assert head.returncode == 0, describe(head)
  from safetensors.numpy import load_file
  pretrained = load_file(tiny_assets.bert_dir / 'model.safetensors')
  head_export = exported_params(workdir)
  assert_params_equal(_encoder(head_export), {k: pretrained[k] for k in _encoder(head_export)})

  full = _train(tiny_assets, workdir, train__num_steps=6, transfer__freeze_preset='all')
  assert full.returncode == 0, describe(full)
  assert resumed_step(full.stdout) == 4
  assert 'rebuilt the optimizer state' in full.stderr, describe(full)
  assert 'Traceback' not in full.stderr and not error_lines(full.stderr)
  full_export = exported_params(workdir)
  assert all(not np.array_equal(full_export[k], head_export[k]) for k in _encoder(head_export))
  assert len(list(workdir.glob('config.resumed-*.json'))) == 1
  assert [m['step'] for m in read_metrics(workdir) if 'loss' in m] == [1, 2, 3, 4, 5, 6]

  time.sleep(1.1)  # config.resumed-<second>.json names: one per second
  sgd = _train(tiny_assets, workdir, train__num_steps=8, transfer__freeze_preset='all',
               optimizer__name='sgd')
  assert sgd.returncode == 0, describe(sgd)
  assert resumed_step(sgd.stdout) == 6 and 'rebuilt the optimizer state' in sgd.stderr
  # Readers use the config the newest checkpoint was written with.
  evaluated = run_cli(['eval', f'--workdir={workdir}'])
  assert evaluated.returncode == 0 and 'eval @ step 8:' in evaluated.stdout, describe(evaluated)


# ---------------------------------------------------------------------------------------------
# An update that overflows although the loss and gradients are finite.

def test_a_non_finite_update_stops_in_that_step(tiny_assets, tmp_path):
  workdir = tmp_path / 'run'
  # 1e39 is finite as a Python float (the config accepts it) and inf in float32.
  done = _train(tiny_assets, workdir, optimizer__learning_rate=1e39)
  assert done.returncode == 2, describe(done)
  lines = error_lines(done.stderr)
  assert len(lines) == 1, describe(done)
  assert 'update is not finite at step 1 although the loss' in lines[0], lines
  assert 'no checkpoint was saved before it' in lines[0] and 'Lower the learning rate' in lines[0]
  assert complete_steps(workdir) == [] and 'Traceback' not in done.stderr


# ---------------------------------------------------------------------------------------------
# A full disk (here: a file-size limit, same failure path) while saving.

def test_a_failed_save_is_one_line_and_keeps_the_last_complete_checkpoint(tiny_assets, tmp_path):
  import resource
  workdir = tmp_path / 'run'
  first = _train(tiny_assets, workdir, train__num_steps=2)
  assert first.returncode == 0 and complete_steps(workdir) == [2], describe(first)
  limit = 1 << 20  # below one step's data file (~1.6 MB), above everything else written
  args = ['train', f'--workdir={workdir}', *tiny_args(tiny_assets, train__num_steps=6)]
  full = subprocess.run(
      cli_command(args), cwd=REPO, capture_output=True, text=True, timeout=300,
      env=cli_env(1, JAX_ENABLE_COMPILATION_CACHE='false'),
      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
  assert full.returncode == 2, describe(full)
  lines = error_lines(full.stderr)
  assert len(lines) == 1 and 'CheckpointWriteError: cannot write step 4' in lines[0], describe(full)
  assert 'File too large' in lines[0] and 'last complete checkpoint (step 2) is kept' in lines[0]
  assert len(lines[0]) < 300 and 'Traceback' not in full.stderr, describe(full)
  assert complete_steps(workdir) == [2]


# ---------------------------------------------------------------------------------------------
# Corrupted checkpoints.

def _largest_file(directory: pathlib.Path) -> pathlib.Path:
  return max((p for p in directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(step_dir: pathlib.Path) -> None:
  path = _largest_file(step_dir / 'state')
  with open(path, 'r+b') as f:
    f.truncate(path.stat().st_size // 2)


def _flip_bytes(step_dir: pathlib.Path) -> None:
  path = _largest_file(step_dir / 'state')
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  path.write_bytes(bytes(data))


def test_corrupted_latest_checkpoints_fall_back_to_the_last_good_one(tiny_assets, reference,
                                                                     tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  _truncate(workdir / 'checkpoints' / '6')
  _flip_bytes(workdir / 'checkpoints' / '4')
  done = _train(tiny_assets, workdir)
  assert done.returncode == 0, describe(done)
  assert 'Checkpoint step 6' in done.stderr and 'Checkpoint step 4' in done.stderr
  assert 'unusable' in done.stderr
  assert resumed_step(done.stdout) == 2
  rejected = sorted(p.name.split('-')[0] for p in (workdir / 'checkpoints_rejected').iterdir())
  assert rejected == ['4', '6']  # moved aside (kept for inspection), not deleted
  assert_params_equal(exported_params(workdir), exported_params(reference))


def test_no_usable_checkpoint_is_one_clear_error_and_moves_nothing(tiny_assets, reference,
                                                                   tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  for step in (2, 4, 6):
    _truncate(workdir / 'checkpoints' / str(step))
  before = snapshot(workdir / 'checkpoints')
  done = _train(tiny_assets, workdir)
  assert done.returncode != 0, describe(done)
  lines = error_lines(done.stderr)
  assert len(lines) == 1 and 'no usable checkpoint' in lines[0], describe(done)
  assert '--overwrite' in lines[0] and 'Traceback' not in done.stderr
  assert snapshot(workdir / 'checkpoints') == before


# ---------------------------------------------------------------------------------------------
# The workdir lock.

def test_a_second_run_on_a_busy_workdir_refuses(tiny_assets, tmp_path):
  workdir = tmp_path / 'run'
  args = ['train', f'--workdir={workdir}',
          *tiny_args(tiny_assets, train__num_steps=100000, train__eval_every=0,
                     train__checkpoint_every=0)]
  first = subprocess.Popen(cli_command(args), cwd=REPO, env=cli_env(1),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 180
    metrics = workdir / 'metrics.jsonl'
    while not (metrics.exists() and metrics.read_text().strip()):  # training, lock held
      assert first.poll() is None and time.monotonic() < deadline, 'first run did not start'
      time.sleep(0.2)
    second = run_cli(args)
    assert first.poll() is None, 'the first run must be left alone'
  finally:
    first.kill()
    first.wait()
  assert second.returncode != 0, describe(second)
  lines = error_lines(second.stderr)
  assert len(lines) == 1 and f'is in use by another run (pid {first.pid})' in lines[0]
  assert 'choose another --workdir' in lines[0]
  # A killed holder leaves no stale lock behind.
  fd = os.open(workdir / '.lock', os.O_RDWR)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  finally:
    os.close(fd)


# ---------------------------------------------------------------------------------------------
# Determinism.

def test_same_seed_same_config_same_metrics_and_params(tiny_assets, reference, tmp_path):
  done = _train(tiny_assets, tmp_path / 'run')
  assert done.returncode == 0, describe(done)
  again = read_metrics(tmp_path / 'run')
  assert again == read_metrics(reference) and len(again) == 9  # 6 train + 3 eval lines
  assert_params_equal(exported_params(tmp_path / 'run'), exported_params(reference))


def test_one_device_and_eight_devices_agree(tiny_assets, eight_device_run, tmp_path):
  """Dropout off: step.py folds the device index into the dropout key, so with dropout the
  masks depend on the device count (by design: distinct noise per device)."""
  done = _train(tiny_assets, tmp_path / 'run', **NO_DROPOUT_SHARD_MAP)
  assert done.returncode == 0, describe(done)
  assert_params_close(exported_params(tmp_path / 'run'), exported_params(eight_device_run),
                      atol=1e-5)
  one, eight = read_metrics(tmp_path / 'run'), read_metrics(eight_device_run)
  assert [m['step'] for m in one] == [m['step'] for m in eight]
  for a, b in zip(one, eight):
    for key in ('loss', 'target/validation/loss'):
      if key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a['step'], key)


# ---------------------------------------------------------------------------------------------
# Security (the CLI side is in test_cli_bad_inputs.py: code-like values, a .py as model name,
# a dataset folder of .py files, a tokenizer that wants remote code, a pickle without the flag).

def test_a_pickle_is_read_only_with_the_explicit_flag(tiny_assets, tmp_path, monkeypatch):
  torch = pytest.importorskip('torch')
  from safetensors.numpy import load_file
  from tl_jax import models
  from tl_jax.models import pretrained
  shutil.copytree(tiny_assets.bert_dir, tmp_path / 'model')
  state = load_file(tmp_path / 'model' / 'model.safetensors')
  torch.save({k: torch.from_numpy(v) for k, v in state.items()},
             tmp_path / 'model' / 'pytorch_model.bin')
  (tmp_path / 'model' / 'model.safetensors').unlink()
  calls = []
  real_load = torch.load
  monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k) or real_load(*a, **k))
  with pytest.raises(pretrained.PickleNotAllowedError, match='allow_pickle=True'):
    models.load_pretrained(tmp_path / 'model')
  assert not calls  # refused before unpickling anything
  _, params = models.load_pretrained(tmp_path / 'model', allow_pickle=True)
  assert calls == [{'map_location': 'cpu', 'weights_only': True}]  # still the restricted one
  _, expected = models.load_pretrained(tiny_assets.bert_dir)
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(got, want)


# Files that load a Python config (--config=x.py, a sweep file): Python by design, like any
# ml_collections config; the values inside are parsed with ast.literal_eval, never run.
CONFIG_LOADERS = ('config.py',)  # tl_jax.config.load_module: the one place config files run
PICKLE_MODULES = ('pickle', 'cPickle', '_pickle', 'dill', 'cloudpickle', 'joblib', 'shelve')


def _keyword_true(call: ast.Call, name: str) -> bool:
  return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
             for k in call.keywords)


def test_the_sources_load_no_pickle_and_run_no_foreign_code():
  """Every way tl_jax reads a file of the user's or the hub's: no pickle module, torch.load only
  with weights_only=True (and only behind allow_pickle, tested above), never
  trust_remote_code=True, nothing evaluated but the config files themselves."""
  offenders = []
  for path in sorted((REPO / 'tl_jax').rglob('*.py')):
    for node in ast.walk(ast.parse(path.read_text())):
      where = f'{path.relative_to(REPO)}:{getattr(node, "lineno", "?")}'
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [a.name for a in node.names] + [getattr(node, 'module', None) or '']
        if any(n.split('.')[0] in PICKLE_MODULES for n in names):
          offenders.append(f'{where}: imports a pickle module')
      if not isinstance(node, ast.Call):
        continue
      func = node.func
      name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
      if _keyword_true(node, 'trust_remote_code') or _keyword_true(node, 'allow_pickle'):
        offenders.append(f'{where}: {name}(...=True)')
      if (isinstance(func, ast.Attribute) and func.attr == 'load'
          and getattr(func.value, 'id', '') == 'torch' and not _keyword_true(node, 'weights_only')):
        offenders.append(f'{where}: torch.load without weights_only=True')
      if isinstance(func, ast.Name) and func.id in ('eval', 'exec', 'compile', '__import__') and (
          path.name != 'resolve.py' or func.id != '__import__'):  # resolve: a fixed alias table
        offenders.append(f'{where}: {func.id}()')
      if name == 'exec_module' and path.name not in CONFIG_LOADERS:
        offenders.append(f'{where}: exec_module()')
  assert not offenders, '\n'.join(offenders)
