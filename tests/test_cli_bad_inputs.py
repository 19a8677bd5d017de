"""Bad input through the real CLI: each case exits non-zero with ONE line naming the problem and
the fix, no traceback (unless --debug), and leaves every file of the user as it was (a workdir
that did not exist is not created).

Most cases run in one worker process (tl_jax.main.run() per case, see cli_helpers.run_cli_batch)
to save the start-up per case; the cases marked `subprocess` run as separate `tl-jax` processes.
The worker has 8 simulated devices; the tiny config's batch of 8 divides over them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Callable

import numpy as np
import pytest

from cli_helpers import (describe, error_lines, run_cli, run_cli_batch, snapshot, tiny_args,
                         tiny_assets)  # noqa: F401 (fixture)

DEVICES = 8


@dataclasses.dataclass(frozen=True)
class Ctx:
  assets: object
  dir: pathlib.Path  # this case's own directory (user files it needs live here)

  @property
  def workdir(self) -> pathlib.Path:
    return self.dir / 'run'

  @property
  def model(self) -> pathlib.Path:
    return self.dir / 'model'


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  expect: tuple[str, ...]  # substrings of the error line: the problem, then the fix
  overrides: dict = dataclasses.field(default_factory=dict)  # config overrides (a__b = a.b)
  setup: Callable[[Ctx], None] | None = None
  argv: Callable[[Ctx], list[str]] | None = None  # instead of `train --workdir ... overrides`
  workdir: Callable[[Ctx], pathlib.Path] | None = None
  subprocess: bool = False

  def command(self, ctx: Ctx) -> list[str]:
    if self.argv is not None:
      return self.argv(ctx)
    workdir = self.workdir(ctx) if self.workdir else ctx.workdir
    overrides = {k: (v(ctx) if callable(v) else v) for k, v in self.overrides.items()}
    return ['train', f'--workdir={workdir}', *tiny_args(ctx.assets, **overrides)]


# ---------------------------------------------------------------------------------------------
# User files the cases need (each in the case's own directory).

def _copy_model(ctx: Ctx) -> pathlib.Path:
  shutil.copytree(ctx.assets.bert_dir, ctx.model)
  return ctx.model


def _config_only(ctx):
  _copy_model(ctx)
  (ctx.model / 'model.safetensors').unlink()


def _garbage_weights(ctx):
  _copy_model(ctx)
  (ctx.model / 'model.safetensors').write_bytes(np.random.default_rng(0).bytes(4096))


def _truncated_weights(ctx):
  path = _copy_model(ctx) / 'model.safetensors'
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _vit_weights_in_bert_dir(ctx):
  _copy_model(ctx)
  shutil.copy(ctx.assets.vit_dir / 'model.safetensors', ctx.model / 'model.safetensors')


def _edit_config(**changes):
  def setup(ctx):
    _copy_model(ctx)
    config = json.loads((ctx.model / 'config.json').read_text())
    config.update(changes)
    (ctx.model / 'config.json').write_text(json.dumps(config))
  return setup


def _pickled_weights(ctx):
  torch = pytest.importorskip('torch')
  from safetensors.numpy import load_file
  _copy_model(ctx)
  state = load_file(ctx.model / 'model.safetensors')
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, ctx.model / 'pytorch_model.bin')
  (ctx.model / 'model.safetensors').unlink()


def _empty_folder(ctx):
  for label in ('a', 'b'):
    (ctx.dir / 'empty' / label).mkdir(parents=True)


def _regular_file(ctx):
  (ctx.dir / 'a_file').write_text('not a directory\n')


def _other_models_run(ctx):
  (ctx.workdir / 'checkpoints' / '100').mkdir(parents=True)
  (ctx.workdir / 'checkpoints' / '100' / 'commit_success.txt').write_text('ok')
  fingerprint = {'model': {'name': 'bert-base-uncased', 'init': 'pretrained', 'num_classes': 0,
                           'image_size': 0, 'param_dtype': 'float32', 'pooling': 'mean'},
                 'data': {'target': {'name': 'bbc_news', 'head': ''},
                          'source': {'name': '', 'head': ''}}}
  (ctx.workdir / 'run.json').write_text(json.dumps({'fingerprint': fingerprint}))
  (ctx.workdir / 'metrics.jsonl').write_text('{"step": 100, "loss": 0.5}\n')


def _users_files(ctx):
  ctx.workdir.mkdir(parents=True)
  (ctx.workdir / 'thesis.tex').write_text('\\documentclass{article}\n')


# Security: a file that would leave ctx.dir/PWNED behind if it ever ran (the snapshot catches it).
def _code(ctx) -> str:
  return f"import pathlib\npathlib.Path({str(ctx.dir / 'PWNED')!r}).write_text('ran')\n"


def _python_file(ctx):
  (ctx.dir / 'evil.py').write_text(_code(ctx))


def _folder_of_python_files(ctx):
  for label in ('a', 'b'):
    (ctx.dir / 'data' / label).mkdir(parents=True)
    (ctx.dir / 'data' / label / 'evil.py').write_text(_code(ctx))


def _tokenizer_wanting_remote_code(ctx):
  _copy_model(ctx)
  (ctx.model / 'evil_tokenizer.py').write_text(
      _code(ctx) + 'from transformers import BertTokenizerFast as EvilTokenizer\n')
  config = json.loads((ctx.model / 'tokenizer_config.json').read_text())
  config.update(tokenizer_class='EvilTokenizer',
                auto_map={'AutoTokenizer': ['evil_tokenizer.EvilTokenizer'] * 2})
  (ctx.model / 'tokenizer_config.json').write_text(json.dumps(config))


def _syntax_error_config(ctx):
  ctx.dir.mkdir(parents=True, exist_ok=True)
  (ctx.dir / 'broken.py').write_text('def get_config(:\n')


def _config_file(ctx, name: str, text: str):
  (ctx.dir / name).write_text(text)


# ---------------------------------------------------------------------------------------------
# The matrix.

def _model(ctx):
  return str(ctx.model)


CASES = [
    # The command line and the config.
    Case('unknown_config_key', ('unknown config key --config.train.num_stepz',
                                'did you mean --config.train.num_steps'),
         overrides={'train__num_stepz': 4}, subprocess=True),
    Case('wrong_type_for_key', ('--config.train.num_steps=abc', 'takes a int (default 6)'),
         overrides={'train__num_steps': 'abc'}, subprocess=True),
    Case('unknown_command', ("unknown command 'trian'", 'commands: train, eval, info'),
         argv=lambda ctx: ['trian', f'--workdir={ctx.workdir}'], subprocess=True),
    Case('unknown_flag', ("Unknown command line flag 'wrokdir'", 'workdir'),
         argv=lambda ctx: ['train', f'--wrokdir={ctx.workdir}']),
    Case('missing_config_file', ("config file 'configs/nope.py' not found", 'configs live in'),
         argv=lambda ctx: ['train', '--config=configs/nope.py', f'--workdir={ctx.workdir}']),
    Case('config_file_with_syntax_error', ('broken.py', 'invalid syntax'),
         setup=_syntax_error_config,
         argv=lambda ctx: ['train', f'--config={ctx.dir / "broken.py"}',
                           f'--workdir={ctx.workdir}']),
    Case('no_workdir', ('--workdir=DIR is required',),
         argv=lambda ctx: ['train', *tiny_args(ctx.assets)]),
    # Steps, learning rate and the other numbers.
    Case('zero_steps', ('train.num_steps=0', 'must be > 0'), overrides={'train__num_steps': 0},
         subprocess=True),
    Case('negative_steps', ('train.num_steps=-5', 'must be > 0'),
         overrides={'train__num_steps': -5}),
    Case('negative_learning_rate', ('optimizer.learning_rate=-0.001', 'must be > 0'),
         overrides={'optimizer__learning_rate': -1e-3}),
    Case('zero_learning_rate', ('optimizer.learning_rate=0', 'must be > 0'),
         overrides={'optimizer__learning_rate': 0.0}),
    Case('negative_eval_every', ('train.eval_every=-1', 'must be >= 0'),
         overrides={'train__eval_every': -1}),
    Case('warmup_longer_than_run', ('optimizer.warmup_steps=10', 'must be in [0, num_steps=6)'),
         overrides={'optimizer__schedule': 'warmup_cosine', 'optimizer__warmup_steps': 10}),
    # Every value is checked before anything is built (tl_jax.config.validate).
    Case('nan_learning_rate', ('optimizer.learning_rate=nan', 'finite'),
         overrides={'optimizer__learning_rate': 'nan'}),
    Case('inf_learning_rate', ('optimizer.learning_rate=inf', 'finite'),
         overrides={'optimizer__learning_rate': 'inf'}),
    Case('keep_no_checkpoints', ('train.keep_checkpoints=0', '>= 1'),
         overrides={'train__keep_checkpoints': 0}),
    Case('negative_patience', ('train.early_stopping_patience=-2', '>= 0'),
         overrides={'train__early_stopping_patience': -2}, subprocess=True),
    Case('best_mode_typo', ("train.best_mode='maximum'", "'max' (accuracy) or 'min'"),
         overrides={'train__best_mode': 'maximum'}),
    Case('negative_lr_multiplier', ("optimizer.lr_multipliers factor for 'head/.*'=-1.0",
                                    'would stop or reverse training'),
         overrides={'optimizer__lr_multipliers': "(('head/.*', -1.0),)"}),
    Case('infinite_group_lr_multiplier', ("optimizer.group_lr_multipliers factor for 'train'=inf",
                                     'a finite number > 0'),
         overrides={'optimizer__group_lr_multipliers': "(('train', 1e999),)"}),
    Case('integer_param_dtype', ("model.param_dtype='int32'", "'float32', 'bfloat16'"),
         overrides={'model__param_dtype': 'int32'}),
    Case('dropout_rate_of_one', ('model.dropout_rate=1.0', 'in [0, 1)'),
         overrides={'model__dropout_rate': 1.0}),
    # Sizes that cannot work.
    Case('batch_larger_than_the_data', ('data.batch_size=4096 is larger than the', 'training '
                                        'examples', '--config.data.batch_size<='),
         overrides={'data__batch_size': 4096}),
    Case('eval_batch_beyond_memory', ('the eval step needs about', 'is free',
                                      'lower --config.data.eval_batch_size'),
         overrides={'data__eval_batch_size': 80_000_000}),
    # The user's own config file.
    Case('get_config_raising', ('raising.py, line 4', "KeyError: 'data'", 'get_config'),
         setup=lambda ctx: _config_file(ctx, 'raising.py', 'def get_config():\n  settings = {}\n'
                                        '  # the line below raises\n  return settings["data"]\n'),
         argv=lambda ctx: ['train', f'--config={ctx.dir / "raising.py"}',
                           f'--workdir={ctx.workdir}']),
    Case('get_config_returning_a_dict', ('returned a dict, not an ml_collections.ConfigDict',
                                         'base_config()'),
         setup=lambda ctx: _config_file(ctx, 'as_dict.py', 'def get_config():\n  return {}\n'),
         argv=lambda ctx: ['train', f'--config={ctx.dir / "as_dict.py"}',
                           f'--workdir={ctx.workdir}']),
    # Names from registries.
    Case('unknown_optimizer', ("unknown optimizer 'adamx'", 'valid: adamw, sgd, adafactor'),
         overrides={'optimizer__name': 'adamx'}),
    Case('unknown_schedule', ("unknown LR schedule 'cosinus'", 'valid:'),
         overrides={'optimizer__schedule': 'cosinus'}),
    Case('unknown_objective', ("unknown objective 'cross_entropi'", 'valid: ', 'cross_entropy'),
         overrides={'transfer__objectives': "('cross_entropi',)"}),
    Case('unknown_importance_estimator', ("transfer.importance.estimator 'kmx' is unknown",
                                          'valid: classifier, kmm, kliep'),
         argv=lambda ctx: ['train', '--config=configs/importance_digits.py:kmx',
                           f'--workdir={ctx.workdir}']),
    Case('unknown_parallel_mode', ("unknown parallel.mode='pmapp'", 'valid: pmap, shard_map'),
         overrides={'parallel__mode': 'pmapp'}),
    Case('unknown_init', ("init='scratch'", "choose one of ('pretrained', 'random')"),
         overrides={'model__init': 'scratch'}),
    # Freezing rules.
    Case('freezing_rule_matching_nothing', ("freezing rule 'encoder/nope.*' matches no parameter",
                                            'first match wins'),
         overrides={'transfer__freeze': "(('encoder/nope.*', None), ('.*', 'train'))"}),
    Case('freezing_rules_leaving_leaves_uncovered', ('parameters uncovered', 'embeddings/',
                                                     'add a rule for them'),
         overrides={'transfer__freeze': "(('encoder/.*', 'train'),)"}),
    Case('unknown_freezing_preset', ("unknown freezing preset 'middle'", 'valid:'),
         overrides={'transfer__freeze_preset': 'middle'}),
    Case('freezing_preset_out_of_range', ("freezing preset 'bottom:7'",
                                          'K must be an integer in [0, 2]'),
         overrides={'transfer__freeze_preset': 'bottom:7'}),
    Case('freezing_preset_beside_stages', ("freeze_preset='head_only' would be ignored",
                                           '--config.transfer.stages=()'),
         overrides={'transfer__freeze_preset': 'head_only',
                    'transfer__stages': "((0, 'all'),)"}),
    Case('lora_preset_without_adapters', ("freezing preset 'lora' needs LoRA adapters",
                                          'config.model.lora_rank > 0'),
         overrides={'transfer__freeze_preset': 'lora'}),
    Case('unknown_lora_target', ("lora_targets ['dense'] unknown", "('query', 'key', 'value')"),
         overrides={'model__lora_rank': 4, 'model__lora_targets': "('dense',)"}),
    # The model.
    Case('unknown_model_name', ("'no-such-model' is not in the Hugging Face cache",
                                'pass a local directory'),
         overrides={'model__name': 'no-such-model'}),
    Case('hub_id_unavailable_offline', ("'google/vit-base-patch16-224' is not in the Hugging Face"
                                        ' cache', 'huggingface-cli download'),
         overrides={'model__name': 'google/vit-base-patch16-224'}),
    Case('missing_model_directory', ('does/not/exist', 'config.json'),
         overrides={'model__name': lambda ctx: str(ctx.dir / 'does/not/exist')}),
    Case('missing_weights_file', ('has no weights', 'expected one of model.safetensors'),
         setup=_config_only, overrides={'model__name': _model}),
    Case('corrupted_weights_file', ('model.safetensors cannot be read', 'download or export it '
                                    'again'),
         setup=_garbage_weights, overrides={'model__name': _model}),
    Case('truncated_weights_file', ('model.safetensors cannot be read', 'truncated or corrupted'),
         setup=_truncated_weights, overrides={'model__name': _model}),
    Case('weights_of_another_architecture', ('does not fit the bert config',
                                             'missing in the checkpoint'),
         setup=_vit_weights_in_bert_dir, overrides={'model__name': _model}),
    Case('unsupported_architecture', ("model_type='gpt2' is not supported", "tl_jax builds"),
         setup=_edit_config(model_type='gpt2'), overrides={'model__name': _model}),
    Case('shape_mismatch', ('shape mismatch', 'intermediate/dense/kernel'),
         setup=_edit_config(intermediate_size=128), overrides={'model__name': _model}),
    Case('pickle_without_allow_pickle', ('pytorch_model.bin is a pickle',
                                         '--config.model.allow_pickle=True'),
         setup=_pickled_weights, overrides={'model__name': _model}),
    Case('max_length_over_positions', ('data.max_length=128', "over the model's 64 positions"),
         overrides={'data__max_length': 128}),
    Case('image_size_not_divisible_by_patch', ('image_size 10 is not a multiple of patch_size 4',),
         overrides={'model__name': lambda ctx: str(ctx.assets.vit_dir),
                    'data__target__name': lambda ctx: ctx.assets.image_dataset,
                    'model__image_size': 10}),
    Case('text_data_for_an_image_model', ('holds text but model is a image model',
                                          'pick a BERT checkpoint'),
         overrides={'model__name': lambda ctx: str(ctx.assets.vit_dir)}),
    # The data.
    Case('unknown_dataset', ("unknown dataset 'bbc_newz'", 'close matches: bbc_news'),
         overrides={'data__target__name': 'bbc_newz'}),
    Case('unknown_dataset_config', ("unknown dataset config 'digits/rotatd'", 'digits/rotated'),
         overrides={'data__target__name': 'digits/rotatd'}),
    Case('missing_split', ("has no split 'dev'", 'its splits: test, train, validation'),
         overrides={'data__target__eval_splits': "('validation', 'dev')"}),
    Case('empty_dataset', ('has no files', '<label>/<file>'), setup=_empty_folder,
         overrides={'data__target__name': lambda ctx: f'folder:{ctx.dir / "empty"}'}),
    Case('labels_out_of_range', ('labels out of range', 'has 3 classes but its head has 2',
                                 '--config.model.num_classes=0'),
         overrides={'model__num_classes': 2}),
    Case('batch_not_divisible_by_devices', ('data.batch_size=6 does not divide by the 8 devices',
                                            'multiple of 8'),
         overrides={'data__batch_size': 6}),
    Case('zero_batch_size', ('data.batch_size=0 must be positive',),
         overrides={'data__batch_size': 0}),
    Case('micro_batches_not_dividing', ('accumulate_steps=3', 'multiple of 3'),
         overrides={'data__batch_size': 16, 'optimizer__accumulate_steps': 3}),
    Case('unknown_best_metric', ("train.best_metric='target/val/accuracy'",
                                 'target/validation/accuracy'),
         overrides={'train__best_metric': 'target/val/accuracy'}),
    # Security: values and paths from the config are data, never code.
    Case('config_value_that_looks_like_code', ('has no text field', 'set data.text_fields'),
         setup=lambda ctx: None,
         overrides={'data__text_fields':
                    lambda ctx: f"__import__('os').system('touch {ctx.dir / 'PWNED'}')"}),
    Case('model_name_is_a_python_file', ('evil.py', 'is not a directory with config.json'),
         setup=_python_file, overrides={'model__name': lambda ctx: str(ctx.dir / 'evil.py')}),
    Case('dataset_folder_of_python_files', ('has no files', '.txt'),
         setup=_folder_of_python_files,
         overrides={'data__target__name': lambda ctx: f'folder:{ctx.dir / "data"}'}),
    Case('tokenizer_wanting_remote_code', ('wants custom code', 'never runs code from a model '
                                           'repository'),
         setup=_tokenizer_wanting_remote_code, overrides={'model__name': _model}),
    # The workdir.
    Case('workdir_not_writable', ('a_file', 'choose a writable --workdir'), setup=_regular_file,
         workdir=lambda ctx: ctx.dir / 'a_file' / 'run', subprocess=True),
    Case('workdir_holding_another_models_checkpoint', ('holds a checkpoint of a different model',
                                                       '--overwrite'),
         setup=_other_models_run),
    Case('workdir_holding_the_users_files', ('is not a tl_jax run directory', 'thesis.tex',
                                             'choose a new or empty --workdir'),
         setup=_users_files),
]


# Folder datasets, vocabulary and config.json (issue #12 items 3 and 6).
def _folder_copy(ctx, kind='text') -> pathlib.Path:
  src = ctx.assets.text_folder if kind == 'text' else ctx.assets.image_folder
  shutil.copytree(src, ctx.dir / 'data')
  return ctx.dir / 'data'


def _folder_with_empty_class(ctx):
  (_folder_copy(ctx) / 'politics').mkdir()


def _folder_with_one_class(ctx):
  root = _folder_copy(ctx)
  for label in ('sport', 'tech'):
    shutil.rmtree(root / label)
  (root / '__MACOSX' / 'sport').mkdir(parents=True)  # junk is no second class


def _folder_with_zero_byte_image(ctx):
  (_folder_copy(ctx, 'image') / 'sport' / '003.npy').write_bytes(b'')


def _folder_mixing_channels(ctx):
  root = _folder_copy(ctx, 'image')
  np.save(root / 'tech' / 'rgb.npy', np.zeros((8, 8, 3), np.uint8))


def _smaller_vocab(ctx):
  from safetensors.numpy import load_file, save_file
  _edit_config(vocab_size=1000)(ctx)
  state = load_file(ctx.model / 'model.safetensors')
  key = next(k for k in state if k.endswith('word_embeddings.weight'))
  state[key] = state[key][:1000]
  save_file(state, ctx.model / 'model.safetensors', metadata={'format': 'pt'})


def _config_json_not_json(ctx):
  _copy_model(ctx)
  (ctx.model / 'config.json').write_text('{"model_type": "bert", "hidden_size": 32,\n')


def _data(ctx):
  return f'folder:{ctx.dir / "data"}'


def _vit(ctx):
  return str(ctx.assets.vit_dir)


CASES += [
    Case('folder_with_an_empty_class', ('class folder politics holds no', 'remove the folder'),
         setup=_folder_with_empty_class, overrides={'data__target__name': _data}),
    Case('folder_with_one_class', ('has 1 class (business)', 'needs at least two'),
         setup=_folder_with_one_class, overrides={'data__target__name': _data}),
    Case('folder_with_a_zero_byte_image', ('sport/003.npy is empty (0 bytes)',
                                           'replace or remove the file'),
         setup=_folder_with_zero_byte_image,
         overrides={'model__name': _vit, 'data__target__name': _data}),
    Case('folder_mixing_channel_counts', ('mixes images with 1', '3 (e.g. tech/rgb.npy)',
                                          '--config.data.image_channels=3'),
         setup=_folder_mixing_channels,
         overrides={'model__name': _vit, 'data__target__name': _data}),
    Case('vocab_smaller_than_tokenizer', ('tokenizer has 30522 tokens', "vocab_size is 1000",
                                          'would give NaN'),
         setup=_smaller_vocab, overrides={'model__name': _model}),
    Case('config_json_not_json', ('model/config.json is not valid JSON', 'line 2'),
         setup=_config_json_not_json, overrides={'model__name': _model}),
    # Per-method sections (config.transfer.<method>, in every config): a typo is matched
    # inside its section, a key another method has is answered with this section's keys.
    Case('typo_under_a_method_section', ('unknown config key --config.transfer.coral.wieght',
                                         'did you mean --config.transfer.coral.weight?'),
         overrides={'transfer__coral__wieght': 0.5}),
    Case('key_of_another_method', ('unknown config key --config.transfer.coral.lr_multiplier',
                                   'config.transfer.coral has: normalize, weight'),
         overrides={'transfer__coral__lr_multiplier': 10.0}),
    Case('zero_discriminator_lr_multiplier', ('transfer.dann.lr_multiplier=0.0',
                                              'a finite number > 0'),
         overrides={'transfer__objectives': "('cross_entropy', 'dann')",
                    'transfer__dann__lr_multiplier': 0.0}),
    Case('unknown_discriminator_optimizer', ("transfer.dann.optimizer='adamx'",
                                             'adamw, sgd, adafactor'),
         overrides={'transfer__objectives': "('cross_entropy', 'dann')",
                    'transfer__dann__optimizer': 'adamx'}),
]
assert len({c.id for c in CASES}) == len(CASES) >= 20


@pytest.fixture(scope='module')
def outcomes(tiny_assets, tmp_path_factory):
  """Every case run once: {id: (result dict, snapshot before, snapshot after)}."""
  root = tmp_path_factory.mktemp('bad_inputs')
  shared = [tiny_assets.bert_dir, tiny_assets.vit_dir, tiny_assets.data_dir]
  shared_before = [snapshot(p) for p in shared]
  commands, before = {}, {}
  for case in CASES:
    ctx = Ctx(tiny_assets, root / case.id)
    if case.setup:
      ctx.dir.mkdir(parents=True, exist_ok=True)
      case.setup(ctx)
    commands[case.id] = case.command(ctx)
    before[case.id] = snapshot(ctx.dir)
  results = run_cli_batch({c.id: commands[c.id] for c in CASES if not c.subprocess},
                          devices=DEVICES)
  for case in CASES:
    if case.subprocess:
      done = run_cli(commands[case.id], devices=DEVICES)
      results[case.id] = {'code': done.returncode, 'stdout': done.stdout, 'stderr': done.stderr}
  out = {c.id: (results[c.id], before[c.id], snapshot(root / c.id)) for c in CASES}
  out['__shared__'] = (shared_before, [snapshot(p) for p in shared])
  return out


def _show(result: dict) -> str:
  return (f"exit {result['code']}\n--- stdout ---\n{result['stdout'][-2000:]}\n"
          f"--- stderr ---\n{result['stderr'][-4000:]}")


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_touches_nothing(case, outcomes):
  result, before, after = outcomes[case.id]
  assert result['code'] not in (0, None), _show(result)
  lines = error_lines(result['stderr'])
  assert len(lines) == 1, _show(result)
  last = [l for l in result['stderr'].splitlines() if l.strip()][-1]
  assert last == lines[0], 'the error is the last thing on stderr\n' + _show(result)
  for part in case.expect:
    assert part in lines[0], f'{part!r} not in the error line\n{lines[0]}'
  assert 'Traceback' not in result['stderr'] + result['stdout'], _show(result)
  assert after == before, f'files changed: {sorted(set(after or {}) ^ set(before or {}))}'


def test_bad_inputs_leave_the_shared_model_and_data_as_they_were(outcomes):
  before, after = outcomes['__shared__']
  assert after == before


def test_debug_shows_the_traceback(tiny_assets, tmp_path):
  done = run_cli(['train', f'--workdir={tmp_path / "run"}', '--debug',
                  *tiny_args(tiny_assets, train__num_steps=0)])
  assert done.returncode != 0, describe(done)
  assert 'Traceback (most recent call last)' in done.stderr, describe(done)
  assert 'train.num_steps=0: must be > 0' in done.stderr
  assert not (tmp_path / 'run').exists()
