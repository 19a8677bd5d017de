"""Shared helpers for the end-to-end CLI tests: tiny assets, and the CLI in a subprocess.

  from cli_helpers import tiny_assets  # noqa: F401 (session fixture)
  result = run_cli(['train', f'--workdir={wd}', *tiny_args(tiny_assets)])

`tiny_assets` writes, once per session: a tiny random BERT in HF layout (with the real MiniLM
tokenizer files, so tokenisation is the real one), a tiny random ViT, a folder of short texts in
three classes, and a TFDS data_dir with that folder already prepared. A run of the tiny config
takes a few seconds, so crashes, resumes and bad inputs can be exercised through the real CLI.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / 'configs' / 'tiny_test.py'

TINY_BERT = dict(model_type='bert', architectures=['BertModel'], vocab_size=30522,
                 hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                 hidden_act='gelu', layer_norm_eps=1e-12, initializer_range=0.02,
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 position_embedding_type='absolute', pad_token_id=0)
TINY_VIT = dict(model_type='vit', architectures=['ViTModel'], image_size=8, patch_size=4,
                num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, hidden_act='gelu', layer_norm_eps=1e-12,
                initializer_range=0.02, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, qkv_bias=True)
CLASSES = ('business', 'sport', 'tech')
WORDS = {
    'business': 'market shares profit bank economy trade price investor company growth',
    'sport': 'match goal team player season coach win league cup score',
    'tech': 'software phone computer internet chip data network user digital game',
}


@dataclasses.dataclass(frozen=True)
class TinyAssets:
  root: pathlib.Path
  bert_dir: pathlib.Path  # tiny random BERT, HF layout, MiniLM tokenizer files
  vit_dir: pathlib.Path  # tiny random ViT (8x8 grayscale, patch 4), HF layout
  text_folder: pathlib.Path  # <label>/<n>.txt, three classes
  image_folder: pathlib.Path  # <label>/<n>.npy, 8x8 grayscale, three classes
  data_dir: pathlib.Path  # TFDS data_dir with both folders prepared

  @property
  def text_dataset(self) -> str:
    return f'folder:{self.text_folder}'

  @property
  def image_dataset(self) -> str:
    return f'folder:{self.image_folder}'


def _write_text_folder(root: pathlib.Path, per_class: int = 20) -> None:
  rng = np.random.default_rng(0)
  for label in CLASSES:
    (root / label).mkdir(parents=True)
    words = WORDS[label].split()
    for i in range(per_class):
      text = ' '.join(rng.choice(words, size=12))
      (root / label / f'{i:03d}.txt').write_text(text + '\n')


def _write_image_folder(root: pathlib.Path, per_class: int = 10) -> None:
  rng = np.random.default_rng(0)
  for k, label in enumerate(CLASSES):
    (root / label).mkdir(parents=True)
    for i in range(per_class):
      image = rng.integers(0, 64, size=(8, 8), dtype=np.uint8)
      image[:, 2 * k:2 * k + 3] = 255  # a bar whose place is the class
      np.save(root / label / f'{i:03d}.npy', image)


def _write_random_model(hf_config: dict[str, Any], directory: pathlib.Path,
                        tokenizer_from: str | None) -> None:
  from tl_jax import models  # pylint: disable=g-import-not-at-top
  directory.mkdir(parents=True)
  (directory / 'config.json').write_text(json.dumps(hf_config))
  module, params = models.load_pretrained(str(directory), init='random', seed=1)
  models.save_pretrained(module, params, directory, tokenizer_from=tokenizer_from)


def make_tiny_assets(root: pathlib.Path) -> TinyAssets:
  from tl_jax.data import sources  # pylint: disable=g-import-not-at-top
  assets = TinyAssets(root=root, bert_dir=root / 'tiny_bert', vit_dir=root / 'tiny_vit',
                      text_folder=root / 'texts', image_folder=root / 'images',
                      data_dir=root / 'tfds')
  _write_random_model(TINY_BERT, assets.bert_dir, tokenizer_from='minilm')
  _write_random_model(TINY_VIT, assets.vit_dir, tokenizer_from=None)
  _write_text_folder(assets.text_folder)
  _write_image_folder(assets.image_folder)
  assets.data_dir.mkdir()
  for name in (assets.text_dataset, assets.image_dataset):  # prepared once, here
    sources.get_builder(name, str(assets.data_dir))
  return assets


@functools.lru_cache(maxsize=None)
def _tiny_assets() -> TinyAssets:
  # Once per process: a fixture imported into several modules is set up once per module.
  root = pathlib.Path(tempfile.mkdtemp(prefix='tl_jax_tiny_'))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return make_tiny_assets(root)


@pytest.fixture(scope='session')
def tiny_assets() -> TinyAssets:
  return _tiny_assets()


def tiny_args(assets: TinyAssets, **overrides: Any) -> list[str]:
  """--config=configs/tiny_test.py pointed at the tiny BERT and text folder, plus overrides
  given as keyword arguments with '__' for '.', e.g. train__num_steps=4."""
  values = {'model.name': str(assets.bert_dir), 'data.target.name': assets.text_dataset,
            'data.data_dir': str(assets.data_dir), 'data.text_fields': 'text',
            'data.target.eval_splits': 'validation',
            'train.best_metric': 'target/validation/accuracy'}
  values.update({k.replace('__', '.'): v for k, v in overrides.items()})
  return [f'--config={TINY_CONFIG}'] + [f'--config.{k}={v}' for k, v in values.items()]


@functools.lru_cache(maxsize=None)
def _compile_cache_dir() -> str:
  path = tempfile.mkdtemp(prefix='tl_jax_test_jit_cache_')
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


def cli_env(devices: int = 1, **extra: str) -> dict[str, str]:
  """The environment of a CLI subprocess: `devices` simulated CPU devices, offline, and a
  compilation cache shared by the session's runs (same programs: compiled once)."""
  env = dict(os.environ)
  env.update(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
             USE_TORCH='0', TF_CPP_MIN_LOG_LEVEL='3', TOKENIZERS_PARALLELISM='false',
             PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=_compile_cache_dir(),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
  for key in ('TL_JAX_TEST_KILL_AT', 'JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES',
              'JAX_PROCESS_ID'):
    env.pop(key, None)
  env.update(extra)
  return env


def cli_command(args: Sequence[str]) -> list[str]:
  return [sys.executable, '-m', 'tl_jax.main', *args]


def run_cli(args: Sequence[str], *, devices: int = 1, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
  """`tl-jax ARGS` in a fresh process; stdout/stderr captured as text."""
  return subprocess.run(cli_command(args), cwd=REPO, env=env or cli_env(devices),
                        capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith('tl-jax: error:')]


def describe(result: subprocess.CompletedProcess) -> str:
  """For assertion messages: exit code and the tail of both streams."""
  return (f'exit {result.returncode}\n--- stdout ---\n{result.stdout[-3000:]}\n'
          f'--- stderr ---\n{result.stderr[-5000:]}')


def read_metrics(workdir: pathlib.Path,
                 drop: Sequence[str] = ('examples_per_sec', 'tokens_per_sec')) -> list:
  lines = (workdir / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def exported_params(workdir: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  return load_file(workdir / 'export' / 'model.safetensors')


def assert_params_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
  """Bit-identical."""
  assert sorted(a) == sorted(b)
  different = [k for k in a if a[k].tobytes() != b[k].tobytes()]
  assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


def assert_params_close(a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                        atol: float = 1e-5) -> None:
  assert sorted(a) == sorted(b)
  worst = max((float(np.max(np.abs(a[k] - b[k]))), k) for k in a)
  assert worst[0] <= atol, f'max |a - b| = {worst[0]:.3g} at {worst[1]}'


def complete_steps(workdir: pathlib.Path) -> list[int]:
  """Checkpoint steps that orbax finished (renamed into place, commit marker inside)."""
  ckpt = workdir / 'checkpoints'
  if not ckpt.is_dir():
    return []
  return sorted(int(p.name) for p in ckpt.iterdir()
                if p.name.isdigit() and (p / 'commit_success.txt').exists())


def partial_writes(workdir: pathlib.Path) -> list[str]:
  """Checkpoint directories of writes that never finished."""
  ckpt = workdir / 'checkpoints'
  return sorted(p.name for p in ckpt.iterdir() if 'tmp' in p.name) if ckpt.is_dir() else []


def resumed_step(stdout: str) -> int | None:
  """The step a run says it resumed from (None: started fresh)."""
  match = re.search(r'^Resuming .* at step (\d+)/', stdout, re.MULTILINE)
  return int(match.group(1)) if match else None


# Without dropout, and with shard_map (the launcher multi-process runs use): one device, eight
# devices and two processes of four see the same global batches and must agree to ~1e-7.
NO_DROPOUT_SHARD_MAP = dict(parallel__mode='shard_map', model__dropout_rate=0.0,
                            model__attention_dropout_rate=0.0)


@functools.lru_cache(maxsize=None)
def _eight_device_run() -> pathlib.Path:
  workdir = _tiny_assets().root / 'eight_devices'
  done = run_cli(['train', f'--workdir={workdir}',
                  *tiny_args(_tiny_assets(), **NO_DROPOUT_SHARD_MAP)], devices=8)
  assert done.returncode == 0, describe(done)
  return workdir


@pytest.fixture(scope='session')
def eight_device_run() -> pathlib.Path:
  """The workdir of a finished tiny run on 8 simulated devices (NO_DROPOUT_SHARD_MAP), shared by
  the modules that compare against it."""
  return _eight_device_run()


def snapshot(path: pathlib.Path) -> dict[str, tuple[int, int]] | None:
  """{relative path: (size, mtime_ns)} of every file under `path`; None when absent."""
  if not path.exists():
    return None
  if path.is_file():
    st = path.stat()
    return {'.': (st.st_size, st.st_mtime_ns)}
  out = {}
  for p in sorted(path.rglob('*')):
    st = p.lstat()
    out[str(p.relative_to(path))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
  return out


# ---------------------------------------------------------------------------------------------
# Many CLI invocations in one process: `tl_jax.main.run()` with a patched sys.argv, each with
# its stdout/stderr captured at the file-descriptor level (so absl logs and C++ output are
# caught too). Saves the ~3 s start-up per invocation; a worker subprocess keeps the state
# (absl flags, jax) away from the test process.

def run_cli_batch(cases: dict[str, Sequence[str]], *, devices: int = 1,
                  env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, dict]:
  """{case id: argv} -> {case id: {'code', 'stdout', 'stderr'}}, all in one worker process."""
  with tempfile.TemporaryDirectory(prefix='tl_jax_cli_batch_') as tmp:
    spec, results = pathlib.Path(tmp) / 'cases.json', pathlib.Path(tmp) / 'results.json'
    spec.write_text(json.dumps({k: list(v) for k, v in cases.items()}))
    done = subprocess.run([sys.executable, __file__, str(spec), str(results)], cwd=REPO,
                          env=env or cli_env(devices), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0 or not results.exists():
      raise RuntimeError(f'CLI batch worker failed:\n{describe(done)}')
    return json.loads(results.read_text())


def _run_in_process(argv: Sequence[str], capture_dir: pathlib.Path) -> dict[str, Any]:
  import traceback  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tl_jax import main as main_lib  # pylint: disable=g-import-not-at-top
  for name in list(flags.FLAGS):  # run() defines them anew (with one flag per override)
    if name in ('config', 'workdir', 'debug', 'overwrite') or name.startswith('config.'):
      delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  sys.argv = ['tl-jax', *argv]
  out_path, err_path = capture_dir / 'stdout', capture_dir / 'stderr'
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(1), os.dup(2)
  with open(out_path, 'w') as out, open(err_path, 'w') as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      main_lib.run()
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()  # what the interpreter would print for an uncaught exception
      code = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      os.close(saved[0])
      os.close(saved[1])
  return {'code': code, 'stdout': out_path.read_text(), 'stderr': err_path.read_text()}


def _batch_worker(spec: str, results: str) -> None:
  sys.path.insert(0, str(REPO))
  cases = json.loads(pathlib.Path(spec).read_text())
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    for case_id, argv in cases.items():
      out[case_id] = _run_in_process(argv, pathlib.Path(tmp))
  pathlib.Path(results).write_text(json.dumps(out))


if __name__ == '__main__':
  _batch_worker(sys.argv[1], sys.argv[2])
