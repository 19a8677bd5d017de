"""The main job's config (configs/default.py) end to end, shortened: real MiniLM, real BBC News."""

import json
import pathlib

import jax
import numpy as np
import pytest

import cli_helpers
from cli_helpers import tiny_assets  # noqa: F401 (session fixture)
from fixtures_data import prepared_data_dir  # noqa: F401 (session fixture)
from tl_jax import config as config_lib
from tl_jax import pieces as pieces_lib
from tl_jax import models
from tl_jax import sweep
from tl_jax.train import checkpoint
from tl_jax.train import loop
from tl_jax.train import step as step_lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def default_config():
  return config_lib.from_file(REPO / 'configs/default.py')


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, prepared_data_dir):  # noqa: F811
  config = default_config()
  config.data.data_dir = str(prepared_data_dir)
  config.data.max_length = 16
  config.data.batch_size = 8
  config.data.eval_batch_size = 64
  config.transfer.stages = ((0, 'top:2'), (2, 'bottom:1'))  # the default's shape, shortened
  config.train.num_steps = 3
  config.optimizer.warmup_steps = 1
  config.train.eval_every = 3
  config.train.log_every = 1
  workdir = tmp_path_factory.mktemp('main_job')
  final = loop.train(config, str(workdir))
  return config, workdir, final


@pytest.mark.slow
def test_default_job_logs_the_contract_metrics(finished_run):
  _, workdir, final = finished_run
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in records if 'loss' in r]
  evals = [r for r in records if 'target/test/accuracy' in r]
  assert [r['step'] for r in train] == [1, 2, 3]
  assert all(r['examples_per_sec'] > 0 and np.isfinite(r['loss']) for r in train)
  assert evals and evals[-1]['step'] == 3
  assert {'target/validation/accuracy', 'target/test/accuracy'} <= set(final)
  assert 0.0 <= final['target/test/accuracy'] <= 1.0


def _latest_checkpoint_params(config, workdir):
  pieces = pieces_lib.build(config)
  core = step_lib.TrainCore(config, pieces.module, pieces.params)
  ckpt = checkpoint.Checkpointer.from_config(workdir / 'checkpoints', config.train)
  restored = ckpt.restore_latest(lambda meta: core.abstract_state(meta['step']))
  ckpt.close()
  return restored.state.params


@pytest.mark.slow
def test_export_loads_back_and_matches_the_trained_params(finished_run):
  config, workdir, _ = finished_run
  exported, params = models.load_pretrained(workdir / 'export')
  trained = _latest_checkpoint_params(config, workdir)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert exported.config.num_classes == 5
  # The export is a usable model: tokenizer files travel with it.
  tokenizer = models.load_tokenizer(workdir / 'export')
  batch = tokenizer(['Shares rose as the bank beat forecasts.'], return_tensors='np')
  out = exported.apply({'params': params}, input_ids=batch['input_ids'],
                       attention_mask=batch['attention_mask'], train=False)
  assert out.logits.shape == (1, 5)


@pytest.mark.slow
def test_rerun_of_a_finished_job_resumes_instead_of_retraining(finished_run):
  config, workdir, final = finished_run
  again = loop.train(config, str(workdir))
  assert again == pytest.approx(final)
  steps = [json.loads(l)['step'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert max(steps) == 3


def test_a_run_with_a_best_metric_reports_and_exports_its_best_checkpoint(tiny_assets, tmp_path):
  """Early stopping or not, a run that selects by a validation metric is its best checkpoint:
  `train` returns that step's eval, and the export holds that step's params, not the last's."""
  config = config_lib.from_file(cli_helpers.TINY_CONFIG)
  config.model.name = str(tiny_assets.bert_dir)
  config.data.target.name = tiny_assets.text_dataset
  config.data.data_dir = str(tiny_assets.data_dir)
  config.data.text_fields = ('text',)
  config.data.target.eval_splits = ('validation',)
  config.train.best_metric, config.train.best_mode = 'target/validation/loss', 'min'
  config.optimizer.learning_rate = 0.1  # the loss jumps after the first eval: best is early
  final = loop.train(config, str(tmp_path))

  records = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  evals = {r['step']: r for r in records if 'target/validation/loss' in r}
  best = min(evals, key=lambda s: evals[s]['target/validation/loss'])
  assert best != max(evals), evals  # the case under test: the best is not the last step
  assert final == pytest.approx({k: v for k, v in evals[best].items() if k != 'step'})
  assert sweep.run_result(tmp_path) == evals[best]  # what compare_runs.py and sweeps read

  pieces = pieces_lib.build(config)
  core = step_lib.TrainCore(config, pieces.module, pieces.params)
  ckpt = checkpoint.Checkpointer.from_config(tmp_path / 'checkpoints', config.train)
  saved = {s: ckpt.restore(s, core.abstract_state(s)).params for s in (best, max(evals))}
  ckpt.close()
  _, exported = models.load_pretrained(tmp_path / 'export')
  for got, want in zip(jax.tree.leaves(exported), jax.tree.leaves(saved[best])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(saved[best]), jax.tree.leaves(saved[max(evals)])))
