"""Two processes on this machine (jax.distributed on loopback, CPU collectives over gloo), four
simulated devices each, train the tiny config exactly like one process with eight devices.

The processes find each other through the environment, as on a cluster:
JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>, JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=0|1
(config.parallel.distributed='auto' then calls jax.distributed.initialize()).
"""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from cli_helpers import (NO_DROPOUT_SHARD_MAP, assert_params_close, cli_command, cli_env,
                         complete_steps, eight_device_run, exported_params, read_metrics, REPO,
                         run_cli, tiny_args, tiny_assets)  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow
PROCESSES, LOCAL_DEVICES = 2, 4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_processes(tiny_assets, tmp_path_factory):
  """Both processes' (exit code, stdout, stderr) and their shared workdir."""
  workdir = tmp_path_factory.mktemp('two_processes') / 'run'
  args = ['train', f'--workdir={workdir}', *tiny_args(tiny_assets, **NO_DROPOUT_SHARD_MAP)]
  port = _free_port()
  procs = [subprocess.Popen(
      cli_command(args), cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      env=cli_env(LOCAL_DEVICES, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
                  JAX_NUM_PROCESSES=str(PROCESSES), JAX_PROCESS_ID=str(i)))
           for i in range(PROCESSES)]
  outputs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=400)
      outputs.append((p.returncode, out, err))
  finally:
    for p in procs:
      p.kill()
  return outputs, workdir


def _show(outputs) -> str:
  return '\n'.join(f'--- process {i}: exit {code}\n{out[-1500:]}\n{err[-3000:]}'
                   for i, (code, out, err) in enumerate(outputs))


def test_two_processes_train_like_one_process_with_eight_devices(two_processes,
                                                                 eight_device_run):
  outputs, workdir = two_processes
  assert [code for code, _, _ in outputs] == [0, 0], _show(outputs)
  assert_params_close(exported_params(workdir), exported_params(eight_device_run), atol=1e-5)


def test_each_process_reads_only_its_rows_of_each_batch(two_processes):
  outputs, _ = two_processes
  for i, (_, _, err) in enumerate(outputs):
    assert f'Process {i} of 2 reads 4 of the 8 rows of each global batch' in err, _show(outputs)


def test_only_process_zero_writes_metrics_and_reports(two_processes, eight_device_run):
  outputs, workdir = two_processes
  (_, out0, _), (_, out1, _) = outputs
  assert re.search(r'^step 6/6', out0, re.M) and 'Done: 6 steps' in out0
  assert not re.search(r'^(step|eval|Done)', out1, re.M), out1
  two, one = read_metrics(workdir), read_metrics(eight_device_run)
  assert [m['step'] for m in two] == [m['step'] for m in one]  # no line written twice
  for a, b in zip(two, one):
    assert a.keys() == b.keys()
    for key, value in a.items():
      assert value == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a['step'], key)


def test_checkpoints_of_two_processes_restore_in_one(two_processes, tmp_path):
  """Both processes wrote their part of each step; one process with eight devices restores the
  latest (checksums verified) and evaluates to what the two processes measured."""
  outputs, workdir = two_processes
  assert complete_steps(workdir) == [2, 4, 6]
  done = run_cli(['eval', f'--workdir={workdir}'], devices=8)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'eval @ step 6:' in done.stdout
  accuracy = float(re.search(r'target/validation/accuracy: ([\d.]+)', done.stdout).group(1))
  measured = [m for m in read_metrics(workdir) if 'target/validation/accuracy' in m][-1]
  assert accuracy == pytest.approx(measured['target/validation/accuracy'], abs=1e-4)
