"""Is this machine quiet enough to time on? Load average, the other busy processes, peak RSS.

A timing taken while other jobs share the cores is not a figure: a framework with a larger
thread pool suffers more, so even ratios move (PyTorch lost 4x under a load of 8 on 2 cores).
Every benchmark script records a `LoadWatch` around its timing and prints its verdict next to
the table; a run that was not quiet says so in its own output.

  watch = machine_load.LoadWatch()       # before the timed part
  ...
  for line in watch.finish().lines(): print(line)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time

QUIET_LOAD = 0.25  # 1-minute load average at the start: above it, other work was running
BUSY_SHARE = 0.2  # another process using more than this share of one core counts as busy


@dataclasses.dataclass(frozen=True)
class Load:
  loadavg: tuple[float, float, float]
  busy: tuple[str, ...]  # other processes over BUSY_SHARE of a core, as 'name (pid) 85%'


def _processes() -> dict[int, tuple[str, int, int]]:
  """pid -> (name, parent pid, CPU ticks used so far), from /proc ({} where there is none)."""
  out = {}
  for entry in os.listdir('/proc') if os.path.isdir('/proc') else ():
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        raw = f.read()
    except OSError:  # it ended meanwhile
      continue
    name = raw[raw.index('(') + 1:raw.rindex(')')]
    fields = raw[raw.rindex(')') + 2:].split()  # state, ppid, ..., utime (11), stime (12)
    out[int(entry)] = (name, int(fields[1]), int(fields[11]) + int(fields[12]))
  return out


def _ours(processes: dict[int, tuple[str, int, int]]) -> set[int]:
  """This process and its descendants (a benchmark's own workers are not other load)."""
  ours, grew = {os.getpid()}, True
  while grew:
    new = {pid for pid, (_, parent, _) in processes.items() if parent in ours} - ours
    ours |= new
    grew = bool(new)
  return ours


def sample(window_s: float = 1.0) -> Load:
  """The load average now, and the other processes busy during the next `window_s` seconds."""
  before = _processes()
  time.sleep(window_s)
  after = _processes()
  ours = _ours(after)
  hz = os.sysconf('SC_CLK_TCK')
  busy = []
  for pid, (name, _, ticks) in after.items():
    if pid in ours or pid not in before:
      continue
    share = (ticks - before[pid][2]) / hz / window_s
    if share > BUSY_SHARE:
      busy.append(f'{name} ({pid}) {share:.0%}')
  return Load(tuple(round(x, 2) for x in os.getloadavg()), tuple(sorted(busy)))


class LoadWatch:
  """The load before and after a timed section, and whether the machine was quiet for it."""

  def __init__(self, window_s: float = 1.0, start_loadavg: tuple[float, ...] | None = None):
    """`start_loadavg`: the load average taken before the script's own imports (its start-up
    would otherwise count as load; see harness.setup)."""
    self.window_s = window_s
    self.start = sample(window_s)
    if start_loadavg is not None:
      self.start = Load(tuple(round(x, 2) for x in start_loadavg), self.start.busy)
    self.end: Load | None = None

  def finish(self) -> LoadWatch:
    self.end = sample(self.window_s)
    return self

  @property
  def quiet(self) -> bool:
    """Quiet: a low load average at the start and no other busy process at either end (the
    load average at the end includes the benchmark itself, so it does not count)."""
    return (self.start.loadavg[0] < QUIET_LOAD and not self.start.busy
            and not (self.end and self.end.busy))

  def lines(self) -> list[str]:
    end = self.end or self.start
    busy = sorted(set(self.start.busy) | set(end.busy))
    facts = (f'load average (1/5/15 min) {self.start.loadavg} at the start, {end.loadavg} at '
             f'the end; other busy processes: {", ".join(busy) or "none"}')
    if self.quiet:
      return [f'machine: quiet ({facts}).']
    return [f'WARNING: machine NOT quiet ({facts}).',
            'WARNING: the timings above were taken under load: they are not figures. Rerun '
            f'with nothing else running (1-min load average < {QUIET_LOAD}).']

  def mark(self) -> str:
    """A tag for a table title: '' when quiet."""
    return '' if self.quiet else ' [NOT QUIET: not figures]'


def peak_rss_mb() -> float:
  """This process's peak resident memory. VmHWM, not ru_maxrss: a child's ru_maxrss starts at
  its parent's RSS at the fork, so a case measured in a child would report the parent's peak."""
  try:
    with open('/proc/self/status') as f:
      return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')) / 1024
  except (OSError, StopIteration):  # no /proc: the portable figure
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
