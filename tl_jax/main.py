"""The `tl-jax` command line.

  tl-jax train [--config=configs/x.py[:arg]] [--config.key=value ...] --workdir=DIR
  tl-jax eval  --workdir=DIR            (evaluate the latest checkpoint of a run)
  tl-jax info  [--config=...]           (print the resolved config and a model summary)
  tl-jax sweep --config=configs/sweeps/x.py --sweepdir=DIR   (one run per override set)

Without --config, the default job (configs/default.py) runs: the packaged MiniLM transferred to
BBC News, offline. `--config=configs/x.py` is read from the working directory, else from the
configs shipped with tl_jax. Errors are one line naming the fix; --debug shows the traceback.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

# Quiet, offline-friendly defaults, set before jax/transformers are imported.
os.environ.setdefault("USE_TORCH", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from tl_jax import config as config_lib  # noqa: E402
from tl_jax import config_overrides  # noqa: E402
from tl_jax import errors  # noqa: E402

COMMANDS = ("train", "eval", "info", "sweep")
DEFAULT_CONFIG = str(config_lib.configs_dir() / "default.py")

class UsageError(errors.TlJaxError, ValueError):
  """A command line that cannot run; the message says how to fix it."""


def _fail(message: str, code: int = 2) -> None:
  one_line = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
  print(f"tl-jax: error: {one_line}", file=sys.stderr)
  sys.exit(code)


def _config_path(argv: list[str]) -> str:
  for arg in argv:
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
  return DEFAULT_CONFIG


def _resolve_config_flag(argv: list[str]) -> list[str]:
  """argv with --config=PATH[:arg] pointing at a file that exists: the shipped config of that
  name when PATH is not there (so `--config=configs/x.py` works from any directory)."""
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      path, sep, rest = arg.split("=", 1)[1].partition(":")
      arg = f"--config={config_lib.resolve_path(path)}{sep}{rest}"
    out.append(arg)
  return out


def _load_config_module(path_with_arg: str):
  path, _, arg = path_with_arg.partition(":")
  return config_lib.call_get_config(config_lib.load_module(config_lib.resolve_path(path)), arg)


def check_overrides(argv: list[str]) -> None:
  """A missing config file, or an unknown `--config.key` (naming the closest valid key)."""
  keys = config_overrides.flag_keys(argv)
  valid = config_overrides.flat_keys(_load_config_module(_config_path(argv)))
  for key in keys:
    if key not in valid:
      hint = config_overrides.key_hint(key, valid, spell=lambda k: f"--config.{k}")
      raise UsageError(f"unknown config key --config.{key}{hint}")


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(_flag_error(str(e).splitlines()[0], argv))


def _flag_error(message: str, argv: list[str]) -> str:
  """A value of the wrong type for --config.KEY: say which type the key takes."""
  match = re.match(r"flag --config\.([\w.]+)=", message)
  if not match:
    return message
  key = match.group(1)
  try:
    value = config_overrides.lookup(_load_config_module(_config_path(argv)), key)
  except Exception:  # the hint is a nicety; the message stands without it
    return message
  return f"{message}; --config.{key} takes a {type(value).__name__} (default {value!r})"


def _command(argv: list[str]) -> str:
  positional = argv[1:]
  if not positional:
    return "train"
  if len(positional) > 1 or positional[0] not in COMMANDS:
    raise UsageError(f"unknown command {' '.join(positional)!r}; commands: {', '.join(COMMANDS)}")
  return positional[0]


class _OwnInfoOnly:
  """Keeps tl_jax's INFO lines (freezing matches, stages, resumes) and drops the INFO chatter of
  the libraries underneath (orbax, tfds, xla_bridge); warnings and errors always pass."""

  def filter(self, record) -> bool:
    return record.levelno > logging.converter.STANDARD_INFO or '/tl_jax/' in record.pathname


def main(argv: list[str]) -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.get_absl_handler().addFilter(_OwnInfoOnly())
  command = _command(argv)
  config = _CONFIG.value
  if command == "info":
    from tl_jax import summary
    summary.print_info(config)
    return
  workdir = _WORKDIR.value
  if not workdir:
    raise UsageError("--workdir=DIR is required (where checkpoints and metrics.jsonl go)")
  from tl_jax.train import loop
  if command == "train":
    loop.train(config, workdir, overwrite=_OVERWRITE.value)
  else:
    loop.evaluate(config, workdir)


def _main_guarded(argv: list[str]) -> None:
  try:
    main(argv)
  except KeyboardInterrupt:
    _fail("interrupted", code=130)
  except Exception as e:  # One line for the user; --debug for the traceback.
    if _DEBUG.value:
      raise
    logging.flush()
    _fail(f"{e}" if isinstance(e, UsageError) else f"{type(e).__name__}: {e}")


def _define_flags() -> None:
  # Defined at run time, not import time: config_flags reads the overrides from sys.argv as
  # soon as the flag exists, and check_overrides must see them first.
  global _CONFIG, _WORKDIR, _DEBUG, _OVERWRITE
  _CONFIG = config_flags.DEFINE_config_file(
      "config", DEFAULT_CONFIG, "Experiment config file, optionally with `:arg`.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, export).")
  _DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")
  _OVERWRITE = flags.DEFINE_bool(
      "overwrite", False, "Move a workdir holding another run's checkpoints aside; start anew.")


def _print_help() -> None:
  """The usage above, then every flag of ours with its help text and default."""
  print(__doc__)
  print("Flags:")
  for flag in flags.FLAGS.get_key_flags_for_module(sys.modules[__name__]):
    default = "" if flag.default is None else f" (default: {flag.default_as_str})"
    print(f"  --{flag.name}: {flag.help}{default}")
  print("  --config.KEY=VALUE: override one config key; `tl-jax info` lists them all")
  print("\n`tl-jax sweep --help` lists the sweep runner's flags.")


def run() -> None:
  """Console-script entry point."""
  argv = sys.argv
  if argv[1:2] == ["sweep"]:  # the sweep runner has flags of its own
    from tl_jax import sweep
    sys.exit(sweep.main(argv[2:], prog="tl-jax sweep"))
  try:
    argv = sys.argv = _resolve_config_flag(argv)
    if "--help" in argv or "-h" in argv or "--helpfull" in argv:
      _define_flags()
      _print_help()
      sys.exit(0)
    check_overrides(argv)
  except Exception as e:
    if "--debug" in argv:
      raise
    _fail(str(e))
  _define_flags()
  app.run(_main_guarded, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
