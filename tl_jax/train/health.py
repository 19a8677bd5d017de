"""Adversary health: is the transfer term of an adversarial method (DANN, CDAN) teaching anything?

Host side, at each logged step, the loop passes the step's metrics; for every method that logs
`<method>/domain_accuracy` and `<method>/domain_loss` (a balanced binary domain classifier:
chance is accuracy 0.5, BCE ln 2 ≈ 0.693) the monitor classifies the discriminator as

  won:  accuracy >= 0.95 and loss <= 0.15 (it separates the domains almost surely, at ~86%
        confidence or more): the features are not aligned, the reversal is too weak for it;
  lost: accuracy <= 0.25 or loss >= 2 ln 2 (wrong on 3 of 4 examples, or twice a coin flip's
        loss): it is not keeping up with the reversed features, it is not being trained;

and calls it collapsed after PATIENCE consecutive such logs (one batch per log is noisy; 5 in a
row is not chance). Logs in the first WARMUP of the run are skipped: the reversal coefficient
warms up from 0 there, so a winning discriminator is expected. A collapse is warned about once
(one line naming the settings to change) and the final report says whether the term was healthy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

CHANCE_ACCURACY, CHANCE_LOSS = 0.5, math.log(2.0)
WON_ACCURACY, WON_LOSS = 0.95, 0.15
LOST_ACCURACY, LOST_LOSS = 0.25, 2 * math.log(2.0)
PATIENCE = 5  # consecutive logs
WARMUP = 0.2  # fraction of train.num_steps not judged


def classify(accuracy: float, loss: float) -> str:
  """'won' | 'lost' | 'ok' for one logged (domain accuracy, domain loss)."""
  if not (math.isfinite(accuracy) and math.isfinite(loss)):
    return 'ok'  # non-finite steps are the NaN check's business
  if accuracy >= WON_ACCURACY and loss <= WON_LOSS:
    return 'won'
  if accuracy <= LOST_ACCURACY or loss >= LOST_LOSS:
    return 'lost'
  return 'ok'


@dataclasses.dataclass
class _Track:
  method: str
  state: str = 'ok'  # of the last log
  run: int = 0  # consecutive logs in `state`
  run_start: int = 0  # step of the first of them
  collapsed_since: int | None = None  # step the current collapse started (None: not now)
  collapsed_how: str = ''
  warned: bool = False
  last: tuple[float, float] | None = None  # (accuracy, loss) of the last log


class Monitor:
  """Feed `update(step, host_metrics)` at log steps; it returns warning lines (at most one per
  method per run); `report_lines()` is the final verdict (empty when no method is watched)."""

  def __init__(self, transfer: Any, num_steps: int, *, patience: int = PATIENCE,
               warmup: float = WARMUP):
    self.transfer = transfer
    self.start_step = int(warmup * num_steps)
    self.patience = patience
    self.tracks: dict[str, _Track] = {}

  def update(self, step: int, metrics: Mapping[str, float]) -> list[str]:
    warnings = []
    for key in metrics:
      method, _, name = key.partition('/')
      if name != 'domain_accuracy' or f'{method}/domain_loss' not in metrics:
        continue
      track = self.tracks.setdefault(method, _Track(method))
      acc, loss = float(metrics[key]), float(metrics[f'{method}/domain_loss'])
      track.last = (acc, loss)
      if step <= self.start_step:
        continue
      state = classify(acc, loss)
      if state == track.state:
        track.run += 1
      else:
        track.state, track.run, track.run_start = state, 1, step
      if state == 'ok':
        track.collapsed_since = None
      elif track.run >= self.patience and track.collapsed_since is None:
        track.collapsed_since, track.collapsed_how = track.run_start, state
        if not track.warned:
          track.warned = True
          warnings.append(self._warning(track))
    return warnings

  def _setting(self, method: str, key: str) -> str:
    section = self.transfer.get(method)
    value = section.get(key) if section is not None else None
    return f'--config.transfer.{method}.{key}' + (f' (now {value:g})' if isinstance(
        value, (int, float)) else '')

  def _why(self, track: _Track) -> str:
    m = track.method
    if track.collapsed_how == 'won':
      return (f'the discriminator tells the domains apart: the features are not aligned (the '
              f'reversal is too weak); raise {self._setting(m, "weight")} or lower '
              f'{self._setting(m, "lr_multiplier")}')
    return (f'the discriminator is not learning (the reversed features outrun it); raise '
            f'{self._setting(m, "lr_multiplier")} or lower {self._setting(m, "weight")}')

  def _numbers(self, track: _Track) -> str:
    acc, loss = track.last
    return (f'domain accuracy {acc:.2f}, loss {loss:.3f}; chance {CHANCE_ACCURACY:.1f} / '
            f'{CHANCE_LOSS:.3f}')

  def _warning(self, track: _Track) -> str:
    return (f'WARNING: {track.method} discriminator collapsed ({track.collapsed_how}) since '
            f'step {track.collapsed_since}, {self.patience} logs in a row ({self._numbers(track)})'
            f': {self._why(track)}.')

  def collapsed(self) -> dict[str, tuple[int, str]]:
    """{method: (since step, 'won' | 'lost')} for the methods collapsed at the last log."""
    return {m: (t.collapsed_since, t.collapsed_how) for m, t in self.tracks.items()
            if t.collapsed_since is not None}

  def report_lines(self) -> list[str]:
    lines = []
    for m, t in sorted(self.tracks.items()):
      if t.last is None:
        continue
      if t.collapsed_since is not None:
        lines.append(f'  transfer term {m}: COLLAPSED ({t.collapsed_how}) since step '
                     f'{t.collapsed_since} ({self._numbers(t)}): it taught the features nothing '
                     f'at the end; {self._why(t)}.')
      elif t.warned:
        lines.append(f'  transfer term {m}: recovered after a collapse ({self._numbers(t)} at '
                     'the last log).')
      else:
        lines.append(f'  transfer term {m}: healthy ({self._numbers(t)} at the last log).')
    return lines
