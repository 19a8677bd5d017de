"""train.compilation_cache_dir: a second run of the same config loads its compiled programs from
the persistent cache instead of compiling them again; '' switches it off."""

from cli_helpers import cli_env, describe, run_cli, tiny_args, tiny_assets  # noqa: F401
from tl_jax.train import compile_cache


def _train(assets, workdir, cache: str):
  env = cli_env()
  env.pop(compile_cache.ENV)  # the config decides here, not the test session's shared cache
  args = tiny_args(assets, train__num_steps=2, train__eval_every=2,
                   train__compilation_cache_dir=cache)
  result = run_cli(['train', f'--workdir={workdir}', *args], env=env, timeout=600)
  assert result.returncode == 0, describe(result)


def test_a_second_run_compiles_nothing_new(tiny_assets, tmp_path):
  cache = tmp_path / 'cache'
  _train(tiny_assets, tmp_path / 'a', str(cache))
  first = sorted(p.name for p in cache.iterdir())
  assert first, 'nothing was cached'
  _train(tiny_assets, tmp_path / 'b', str(cache))  # another workdir, the same programs
  assert sorted(p.name for p in cache.iterdir()) == first  # every program came from the cache


def test_the_setting_resolves_auto_off_and_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert compile_cache.resolve('auto') == str(tmp_path / 'tl_jax' / 'jax')
  assert compile_cache.resolve('') == ''
  assert compile_cache.resolve('~/x').endswith('/x') and '~' not in compile_cache.resolve('~/x')
  monkeypatch.setenv(compile_cache.ENV, '/elsewhere')
  assert compile_cache.resolve('') == '/elsewhere'
