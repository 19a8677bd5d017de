"""Every DA method is reachable from its config and trains end to end: one short run of
loop.train (the `tl-jax train` path) with a tiny random ViT on digits -> digits/rotated
(unlabelled target) and ALL the methods' objectives at once (one compile), then a resume. The
method-owned params (discriminators, adversarial heads) live under `objectives/` in the state
and the checkpoints, train under the freezing presets, and stay out of the HF export."""

import json
import pathlib

import jax
import numpy as np
import pytest

from fixtures_data import prepared_data_dir  # noqa: F401 (fixture)
from tl_jax import config as config_lib
from tl_jax import models
from tl_jax.train import loop
from tl_jax.train.step import TrainCore
from tl_jax.train import freezing
from tl_jax.methods import objectives

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY_VIT = dict(model_type='vit', architectures=['ViTModel'], image_size=8, patch_size=4,
                num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, hidden_act='gelu', layer_norm_eps=1e-12,
                initializer_range=0.02, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, qkv_bias=True)
CONFIGS = {'source_only': (), 'dann': ('dann',), 'mmd': ('mmd',), 'coral': ('coral',),
           'cdan': ('cdan',), 'mdd': ('mdd',), 'importance': ('importance_weighting',)}
METRICS = ('dann/domain_loss', 'mmd/mmd2', 'coral/loss', 'cdan/domain_loss', 'mdd/discrepancy',
           'importance/weighted_source_loss')
OWNERS = ('dann', 'cdan', 'mdd', 'importance_weighting')


def load_config(method):
  return config_lib.from_file(REPO / 'configs' / f'{method}_digits.py')


def write_tiny_vit(directory, seed: int):
  """A random TINY_VIT saved in HF layout in `directory` (what config.model.name points at)."""
  (directory / 'config.json').write_text(json.dumps(TINY_VIT))
  module, params = models.load_pretrained(str(directory), init='random', seed=seed)
  models.save_pretrained(module, params, directory)
  return directory


@pytest.fixture(scope='module')
def vit_dir(tmp_path_factory):
  return write_tiny_vit(tmp_path_factory.mktemp('tiny_vit'), seed=1)


@pytest.mark.parametrize('method', list(CONFIGS))
def test_config_names_registered_objectives_and_its_section(method):
  config = load_config(method)
  names = tuple(config.transfer.objectives)
  assert set(CONFIGS[method]) <= set(names), names
  for name in names:
    objectives.get(name)  # raises for an unknown name
  section = {'importance_weighting': 'importance'}.get(CONFIGS[method][0] if CONFIGS[method]
                                                      else '', CONFIGS[method][0]
                                                      if CONFIGS[method] else '')
  if section:
    assert section in config.transfer, f'{method}: config.transfer.{section} missing'
  assert config.data.target.name == 'digits/rotated' and not config.data.target.labeled


def combined_config(vit_dir, data_dir, steps):
  config = load_config('source_only')
  names = ['cross_entropy']
  for method, objs in CONFIGS.items():
    if objs:
      c = load_config(method)
      names += list(objs)
      section = 'importance' if method == 'importance' else method
      config.transfer[section] = c.transfer[section]
  config.transfer.objectives = tuple(names)
  config.transfer.dann.hidden = config.transfer.cdan.hidden = (8,)
  config.transfer.mdd.hidden = (8,)
  config = shrunk(config, vit_dir, data_dir, steps)
  config.train.checkpoint_every = 1
  return config


def shrunk(config, vit_dir, data_dir, steps):
  """A digits DA config cut down for tests: the tiny ViT, batch 8, `steps` steps, one eval."""
  config.model.name = str(vit_dir)
  config.model.init = 'pretrained'
  config.data.data_dir = data_dir
  config.data.batch_size = 8
  config.data.eval_batch_size = 512
  config.data.read_threads = 1
  config.data.prefetch_batches = 1
  config.train.num_steps = steps
  config.train.log_every = 1
  config.train.eval_every = steps
  config.optimizer.warmup_steps = 0
  return config


def test_all_methods_train_resume_and_stay_out_of_the_export(vit_dir, prepared_data_dir,
                                                             tmp_path):
  from tl_jax.data import sources
  sources.get_builder('digits/rotated', prepared_data_dir)
  workdir = tmp_path / 'run'
  final = loop.train(combined_config(vit_dir, prepared_data_dir, 3), str(workdir))
  assert 0.0 <= final['target/test/accuracy'] <= 1.0
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  train_rows = [r for r in rows if 'loss' in r and 'step' in r]
  assert train_rows and all(np.isfinite(r['loss']) for r in train_rows)
  for key in METRICS:
    assert any(key in r and np.isfinite(r[key]) for r in train_rows), key
  assert all('target/loss' not in r for r in train_rows)  # target labels never used
  exported = models.load_pretrained(str(workdir / 'export'))[1]
  assert 'objectives' not in exported
  from safetensors.numpy import load_file
  assert not [k for k in load_file(workdir / 'export' / 'model.safetensors') if 'objectiv' in k]

  # Resume: the checkpoint holds the objectives' params; two more steps continue from step 3.
  final2 = loop.train(combined_config(vit_dir, prepared_data_dir, 5), str(workdir))
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  steps = [r['step'] for r in rows if 'loss' in r]
  assert steps[-2:] == [4, 5], steps
  assert np.isfinite(final2['target/test/loss'])


def test_method_params_join_the_tree_and_the_presets_train_them(vit_dir):
  config = combined_config(vit_dir, '', 3)
  config.model.num_classes = 10
  module, params = models.load_pretrained(str(vit_dir), num_classes=10)
  for preset in ('head_only', 'bottom:1', 'all'):
    config.transfer.freeze_preset = preset
    core = TrainCore(config, module, params, devices=jax.devices()[:1])
    trainable = core.schedule.trainable(0)
    owned = [n for n in core.schedule.names if n.startswith('objectives/')]
    assert {n.split('/')[1] for n in owned} == set(OWNERS), owned
    assert set(owned) <= trainable, preset
  # Sized from the model: DANN's discriminator reads the 16-wide pooled features, CDAN's the
  # 16 x 10 multilinear map, MDD's head has 10 outputs.
  flat = freezing.flatten(jax.eval_shape(lambda: core.abstract_state()).params)
  assert flat['objectives/dann/layer_0/kernel'].shape == (16, 8)
  assert flat['objectives/cdan/layer_0/kernel'].shape == (160, 8)
  assert flat['objectives/mdd/layer_1/kernel'].shape == (8, 10)
  assert flat['objectives/importance_weighting/layer_0/kernel'].shape == (16, 1)
