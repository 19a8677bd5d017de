"""The package's layers: no module imports from a higher layer, and no import cycle.

Read statically (every `import` in a module, inside functions too), so a lazy import cannot hide
an upward dependency. The layer list is the README's layout section in executable form.
"""

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'tl_jax'

# Lowest first. A module may import its own unit or a unit of a lower layer; units on one layer
# do not import each other.
LAYERS = (
    ('tl_jax.errors', 'tl_jax.machine_load'),
    ('tl_jax.config', 'tl_jax.config_overrides', 'tl_jax.extras'),
    ('tl_jax.data', 'tl_jax.models', 'tl_jax.report'),
    ('tl_jax.pieces',),
    ('tl_jax.methods',),
    ('tl_jax.train',),
    ('tl_jax.analysis',),
    ('tl_jax.sweep', 'tl_jax.summary'),
    ('tl_jax.harness',),  # runs sweeps for experiments/
    ('tl_jax.main',),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in PACKAGE.rglob('*.py')
          if 'configs' not in p.relative_to(PACKAGE).parts}


MODULES = _modules()


def _unit(module: str) -> str:
  return '.'.join(module.split('.')[:2])


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
  """The tl_jax modules `path` imports (a `from pkg import name` of a submodule counts as it)."""
  tree = ast.parse(path.read_text())
  nodes = tree.body if top_level_only else ast.walk(tree)
  found = set()
  for node in nodes:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('tl_jax'):
      for alias in node.names:
        sub = f'{node.module}.{alias.name}'
        found.add(sub if sub in MODULES else node.module)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith('tl_jax'))
  return found


def test_every_unit_has_a_layer():
  units = {_unit(m) for m in MODULES} - {'tl_jax'}
  assert units <= set(LAYER), f'place {sorted(units - set(LAYER))} in LAYERS (and the README)'


def test_no_module_imports_from_a_higher_layer():
  wrong = []
  for module, path in sorted(MODULES.items()):
    if module == 'tl_jax':
      continue
    for target in _imports(path, top_level_only=False):
      src, dst = _unit(module), _unit(target)
      if dst == 'tl_jax' or src == dst:
        continue
      if LAYER[dst] >= LAYER[src]:
        wrong.append(f'{module} imports {target}')
  assert not wrong, '\n'.join(wrong)


def test_no_import_cycle_between_modules():
  graph = {m: {t for t in _imports(p, top_level_only=True) if t in MODULES}
           for m, p in MODULES.items()}
  state: dict[str, int] = collections.defaultdict(int)  # 0 new, 1 on the stack, 2 done
  stack: list[str] = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for t in sorted(graph[m]):
      if state[t] == 1:
        pytest.fail('import cycle: ' + ' -> '.join(stack[stack.index(t):] + [t]))
      if state[t] == 0:
        visit(t)
    stack.pop()
    state[m] = 2

  for m in sorted(graph):
    if state[m] == 0:
      visit(m)


def test_the_objective_registry_discovers_only_methods():
  from tl_jax.methods import objectives  # pylint: disable=g-import-not-at-top
  for name in objectives.names():
    assert objectives.get(name).fn.__module__.startswith('tl_jax.methods.'), name
