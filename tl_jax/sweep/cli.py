"""The sweep command line: `tl-jax sweep` and `python -m tl_jax.sweep` (also each child run).

`--config.KEY=VALUE` is parsed as for `tl-jax train` (tl_jax.config_overrides) and applied to
get_config() before the sweep's own overrides.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

from tl_jax import config_overrides
from tl_jax.sweep import grid
from tl_jax.sweep import measure
from tl_jax.sweep import runner

DESCRIPTION = 'Sweeps: one base config, a list of overrides, one run (and workdir) per override.'


def _parser(prog: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
  parser.add_argument('--config', required=True, help='sweep file path[:arg]')
  parser.add_argument('--sweepdir', required=True, help='one workdir per run goes under it')
  parser.add_argument('--only', default='', help='K/N: this host runs runs i ≡ K (mod N)')
  parser.add_argument('--runner', default='subprocess', choices=runner.RUNNERS)
  parser.add_argument('--report_only', action='store_true', help='only write the table')
  parser.add_argument('--prune_checkpoints', action='store_true',
                      help='delete the checkpoints of a run once it is finished')
  parser.add_argument('--verbose', action='store_true', help='echo every line of every run')
  parser.add_argument('--run', default='', help=argparse.SUPPRESS)  # a child: this run only
  parser.add_argument('--overrides_json', default='', help=argparse.SUPPRESS)
  return parser


def main(argv: Sequence[str] | None = None, prog: str = 'python -m tl_jax.sweep') -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides, rest = config_overrides.parse_flags(argv)
  args = _parser(prog).parse_args(rest)
  if args.overrides_json:
    overrides = {**json.loads(args.overrides_json), **overrides}
  spec = runner.SweepSpec(args.config, overrides)
  try:
    if args.run:  # the child process of one run
      runs = {r.name: r for r in spec.runs()}
      if args.run not in runs:
        raise grid.SweepError(f'no run named {args.run!r} in {args.config}')
      measure.execute(runs[args.run], pathlib.Path(args.sweepdir) / args.run)
      return 0
    if args.report_only:
      runner.report_only(spec, args.sweepdir, printer=lambda line: print(line, file=sys.stderr))
    else:
      runner.run_sweep(spec, args.sweepdir, only=args.only, runner=args.runner,
                       prune_checkpoints=args.prune_checkpoints, verbose=args.verbose)
    print(f'\n{pathlib.Path(args.sweepdir) / "table.md"}:\n')
    print((pathlib.Path(args.sweepdir) / 'table.md').read_text())
    return 0
  except (ValueError, FileNotFoundError) as e:
    print(f'tl_jax.sweep: error: {e}', file=sys.stderr)
    return 2
