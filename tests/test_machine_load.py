"""The quiet-machine check every benchmark prints: another busy process is seen and named, the
benchmark's own children are not, and a watch that saw load says its timings are not figures."""

import os
import signal
import subprocess
import sys
import time

from tl_jax import machine_load

SPIN = 'import time\nend = time.time() + 30\nwhile time.time() < end: pass'


def _orphan_spinner() -> int:
  """A busy process that is not ours: started by a shell that exits, so init adopts it."""
  out = subprocess.run(['sh', '-c', f'{sys.executable} -c "{SPIN}" >/dev/null 2>&1 & echo $!'],
                       capture_output=True, text=True, check=True)
  return int(out.stdout.strip())


def test_another_busy_process_is_named_and_the_machine_is_not_quiet():
  pid = _orphan_spinner()
  try:
    time.sleep(0.3)
    watch = machine_load.LoadWatch(window_s=0.5).finish()
    assert any(f'({pid})' in b for b in watch.start.busy + watch.end.busy), watch.start
    assert not watch.quiet
    lines = watch.lines()
    assert lines[0].startswith('WARNING: machine NOT quiet') and str(pid) in lines[0]
    assert 'not figures' in lines[1] and watch.mark()
  finally:
    os.kill(pid, signal.SIGKILL)


def test_the_benchmarks_own_children_are_not_load():
  child = subprocess.Popen([sys.executable, '-c', SPIN])
  try:
    time.sleep(0.3)
    load = machine_load.sample(window_s=0.5)
    assert not any(f'({child.pid})' in b for b in load.busy), load
  finally:
    child.kill()
    child.wait()


def test_quiet_is_a_low_load_average_and_no_busy_process():
  quiet = machine_load.Load((0.05, 0.1, 0.1), ())
  watch = machine_load.LoadWatch.__new__(machine_load.LoadWatch)
  watch.start, watch.end = quiet, machine_load.Load((1.9, 0.5, 0.2), ())  # the bench's own load
  assert watch.quiet and watch.mark() == '' and watch.lines()[0].startswith('machine: quiet')
  watch.start = machine_load.Load((0.6, 0.5, 0.2), ())
  assert not watch.quiet


def test_peak_rss_of_a_child_is_its_own_not_its_parents():
  """ru_maxrss of a forked child starts at the parent's RSS; peak_rss_mb must not."""
  ballast = bytearray(300 * 2**20)  # the parent holds 300 MB when it forks
  ballast[::4096] = b'x' * len(ballast[::4096])
  out = subprocess.run([sys.executable, '-c', 'from tl_jax import machine_load; '
                        'print(machine_load.peak_rss_mb())'], capture_output=True, text=True,
                       check=True)
  assert machine_load.peak_rss_mb() > 300
  assert float(out.stdout) < 200, out.stdout
  del ballast
