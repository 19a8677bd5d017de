"""`python -m tl_jax.sweep`: the sweep command line (and how the runner starts each child)."""

import sys

from tl_jax.sweep import cli

if __name__ == '__main__':
  sys.exit(cli.main())
