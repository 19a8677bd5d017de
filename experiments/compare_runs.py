"""Side-by-side final eval metrics of finished runs, read from their metrics.jsonl.

  python experiments/compare_runs.py runs/default runs/default-random
"""

from __future__ import annotations

import pathlib

from tl_jax import harness

harness.setup()  # before jax is imported

from tl_jax import sweep  # noqa: E402


def final_eval(workdir: str | pathlib.Path) -> dict[str, float]:
  """A run's result: its best eval by the run's best_metric, else its last (as `Done:`)."""
  if not (pathlib.Path(workdir) / 'metrics.jsonl').exists():
    raise SystemExit(f'{workdir}/metrics.jsonl not found: is {workdir} a finished tl-jax run?')
  return sweep.run_result(workdir)


def markdown_table(workdirs: list[str]) -> str:
  finals = {w: final_eval(w) for w in workdirs}
  keys = sorted({k for f in finals.values() for k in f if k.endswith('/accuracy')})
  rows = ['| run | step | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 2) + '|']
  for w, f in finals.items():
    cells = [f'{f[k]:.4f}' if k in f else '—' for k in keys]
    rows.append(f'| {w} | {f.get("step", "—")} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)


def main(argv) -> None:
  if len(argv) < 2:
    raise SystemExit(__doc__)
  print(markdown_table(argv[1:]))


if __name__ == '__main__':
  harness.run(main)
