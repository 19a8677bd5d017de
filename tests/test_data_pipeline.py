"""grain pipelines: batches, few-shot, paired streams, seeds, exact-once eval, hosts, resume."""

import collections
import json

import numpy as np
import pytest

from fixtures_data import minilm_tokenizer, prepared_data_dir  # noqa: F401 (fixtures)
from tl_jax import data
from tl_jax.config import base_config


@pytest.fixture
def digits_cfg(prepared_data_dir):
  cfg = base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.target.name = 'digits'
  cfg.batch_size = 16
  cfg.eval_batch_size = 64
  cfg.lock()  # a typo in a test is an error, as on the command line
  return cfg


def _pixels(batch, mean=0.5, std=0.5):
  """Normalised 8x8 digits back to their stored uint8 bytes (identifies an example)."""
  u8 = np.round((batch['image'] * std + mean) * 255).astype(np.uint8)
  return [row.tobytes() for row in u8]


def _stored(cfg, name, split):
  return [r['image'].tobytes() for r in data.data_source(name, split, cfg.data_dir)]


def test_text_batches_follow_the_contract(prepared_data_dir, minilm_tokenizer):
  cfg = base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.batch_size = 8
  batch = next(data.build_train_iterator(cfg, tokenizer=minilm_tokenizer, seed=0))
  assert list(batch) == ['target']
  t = batch['target']
  assert {k: (v.dtype, v.shape) for k, v in t.items()} == {
      'input_ids': (np.int32, (8, 128)), 'attention_mask': (np.int32, (8, 128)),
      'token_type_ids': (np.int32, (8, 128)), 'label': (np.int32, (8,))}
  # title [SEP] body: both segments present, the tokenizer's own ids.
  assert (t['token_type_ids'] == 1).any(axis=1).all()
  assert t['input_ids'][0, 0] == minilm_tokenizer.cls_token_id
  assert set(np.unique(t['label'])) <= set(range(5))


def test_image_batches_resized_normalised(digits_cfg):
  digits_cfg.image_channels = 3
  batch = next(data.build_train_iterator(digits_cfg, image_size=16, seed=0))['target']
  assert batch['image'].dtype == np.float32 and batch['image'].shape == (16, 16, 16, 3)
  assert batch['image'].min() >= -1 and batch['image'].max() <= 1 and batch['image'].min() < -0.9
  assert batch['label'].dtype == np.int32


def test_same_seed_same_order_other_seed_other_order(digits_cfg):
  def first(seed, n=3):
    it = data.build_train_iterator(digits_cfg, seed=seed)
    return [_pixels(next(it)['target']) for _ in range(n)]
  assert first(0) == first(0)
  assert first(0) != first(1)
  default = first(0)
  digits_cfg.shuffle_seed = 7
  assert first(0) != default


def test_each_epoch_is_a_new_permutation_of_the_split(digits_cfg):
  digits_cfg.target.few_shot = 2  # 20 examples, batch 4: one epoch = 5 batches
  digits_cfg.batch_size = 4
  it = data.build_train_iterator(digits_cfg, seed=0, num_devices=4)
  epochs = [[p for _ in range(5) for p in _pixels(next(it)['target'])] for _ in range(2)]
  assert collections.Counter(epochs[0]) == collections.Counter(epochs[1])
  assert len(set(epochs[0])) == 20 and epochs[0] != epochs[1]


def test_few_shot_k_per_class_reproducible(digits_cfg):
  digits_cfg.target.few_shot = 3
  digits_cfg.batch_size = 30
  def one_epoch(few_shot_seed):
    digits_cfg.few_shot_seed = few_shot_seed
    batch = next(data.build_train_iterator(digits_cfg, seed=5, num_devices=1))['target']
    return batch, collections.Counter(_pixels(batch))
  batch, seen = one_epoch(0)
  assert np.bincount(batch['label'], minlength=10).tolist() == [3] * 10
  assert len(seen) == 30 and set(seen) <= set(_stored(digits_cfg, 'digits', 'train'))
  assert one_epoch(0)[1] == seen  # same seed, same subset
  assert one_epoch(1)[1] != seen  # other seed, other subset


def test_paired_streams_have_own_sizes_and_repeat_independently(digits_cfg):
  digits_cfg.source.name = 'digits'
  digits_cfg.target.name = 'digits/inverted'
  digits_cfg.target.few_shot = 1  # 10 target examples vs 1,258 source examples
  digits_cfg.target.labeled = False
  digits_cfg.batch_size = 8
  it = data.build_train_iterator(digits_cfg, seed=0)
  batches = [next(it) for _ in range(10)]
  assert set(batches[0]) == {'source', 'target'}
  assert 'label' not in batches[0]['target'] and 'label' in batches[0]['source']
  target = [p for b in batches for p in _pixels(b['target'])]
  source = [p for b in batches for p in _pixels(b['source'])]
  # 80 target rows from 10 examples: 8 full epochs, each example 8 times.
  assert len(set(target)) == 10 and set(collections.Counter(target).values()) == {8}
  assert len(set(source)) > 60  # source still in its first epoch
  assert set(target) <= set(_stored(digits_cfg, 'digits/inverted', 'train'))
  assert set(source) <= set(_stored(digits_cfg, 'digits', 'train'))


def test_eval_sees_every_example_once_with_padding(digits_cfg):
  evals = data.build_eval_batches(digits_cfg)
  assert set(evals) == {'target/validation', 'target/test'}
  test = evals['target/test']
  expected = _stored(digits_cfg, 'digits', 'test')
  for _ in range(2):  # restartable: the second eval sees the same
    batches = list(test)
    assert len(batches) == len(test) == 5 and test.num_examples == 270
    assert all(b['image'].shape[0] == 64 and b['mask'].dtype == bool for b in batches)
    seen = [p for b in batches for p, m in zip(_pixels(b), b['mask']) if m]
    assert collections.Counter(seen) == collections.Counter(expected)
    assert sum(int(b['mask'].sum()) for b in batches) == 270
    assert not batches[-1]['mask'][270 - 256:].any()


def test_two_hosts_cover_the_global_batch_without_overlap(digits_cfg):
  digits_cfg.source.name = 'digits/inverted'
  single = data.build_train_iterator(digits_cfg, seed=3, process_index=0, process_count=1,
                                     num_devices=8)
  hosts = [data.build_train_iterator(digits_cfg, seed=3, process_index=i, process_count=2,
                                     num_devices=8) for i in range(2)]
  for _ in range(3):
    whole = next(single)
    parts = [next(h) for h in hosts]
    for role in ('target', 'source'):
      assert parts[0][role]['image'].shape[0] == 8
      joined = np.concatenate([p[role]['image'] for p in parts])
      np.testing.assert_array_equal(joined, whole[role]['image'])
      assert not set(_pixels(parts[0][role])) & set(_pixels(parts[1][role]))
  # Eval: each host a slice; together every example once.
  seen = []
  for i in range(2):
    ev = data.build_eval_batches(digits_cfg, process_index=i, process_count=2, num_devices=8)
    for b in ev['target/validation']:
      assert b['image'].shape[0] == 32
      seen += [p for p, m in zip(_pixels(b), b['mask']) if m]
  assert collections.Counter(seen) == collections.Counter(_stored(digits_cfg, 'digits',
                                                                  'validation'))


def test_resume_from_state_gives_the_same_next_batch(digits_cfg):
  digits_cfg.source.name = 'digits/inverted'
  digits_cfg.augment = True
  digits_cfg.mixup = 0.4
  it = data.build_train_iterator(digits_cfg, seed=1)
  for _ in range(4):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  expected = next(it)
  resumed = data.build_train_iterator(digits_cfg, seed=1)
  resumed.set_state(state)
  got = next(resumed)
  for role in ('target', 'source'):
    for key in ('image', 'label', 'label_probs'):
      np.testing.assert_array_equal(got[role][key], expected[role][key])


def test_augment_changes_images_but_not_labels(digits_cfg):
  plain = next(data.build_train_iterator(digits_cfg, seed=0))['target']
  digits_cfg.augment = True
  digits_cfg.augment_flip = False
  aug = next(data.build_train_iterator(digits_cfg, seed=0))['target']
  np.testing.assert_array_equal(plain['label'], aug['label'])
  assert not np.allclose(plain['image'], aug['image'])
  assert aug['image'].shape == plain['image'].shape


def test_split_for_devices_lays_out_local_devices(digits_cfg):
  batch = next(data.build_train_iterator(digits_cfg, seed=0))['target']
  split = data.split_for_devices(batch, 8)
  assert split['image'].shape == (8, 2, 8, 8, 1) and split['label'].shape == (8, 2)
  np.testing.assert_array_equal(split['label'].reshape(-1), batch['label'])


def test_worker_processes_give_the_same_batches(digits_cfg):
  digits_cfg.source.name = 'digits/inverted'
  digits_cfg.augment = True
  threads = data.build_train_iterator(digits_cfg, seed=2)
  expected = [next(threads) for _ in range(3)]
  digits_cfg.worker_count = 1
  workers = data.build_train_iterator(digits_cfg, seed=2)
  for want in expected:
    got = next(workers)
    for role in ('target', 'source'):
      np.testing.assert_array_equal(got[role]['image'], want[role]['image'])


def test_finish_images_equals_resize_then_normalise():
  from tl_jax.data import image as image_lib
  from tl_jax.data import pipeline
  x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
  finish = pipeline.FinishImages(where='x', image_size=(20, 20), channels=3, mean=(0.5,),
                                 std=(0.25,))
  reference = np.repeat((image_lib.resize(x, (20, 20)) - 0.5) / 0.25, 3, axis=-1)
  np.testing.assert_allclose(finish({'image': x})['image'], reference, atol=1e-5)
  per_channel = pipeline.FinishImages(where='x', image_size=(20, 20), channels=3,
                                      mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
  reference = (np.repeat(image_lib.resize(x, (20, 20)), 3, -1) - [0.4, 0.5, 0.6]) / [.2, .25, .3]
  np.testing.assert_allclose(per_channel({'image': x})['image'], reference, atol=1e-5)


def test_folder_images_of_varying_sizes_batch_at_the_model_size(tmp_path):
  for label, shapes in (('a', [(6, 6), (9, 7)]), ('b', [(5, 8), (6, 6)])):
    (tmp_path / 'imgs' / 'train' / label).mkdir(parents=True)
    for i, shape in enumerate(shapes):
      np.save(tmp_path / 'imgs' / 'train' / label / f'{i}.npy', np.full(shape, 200, np.uint8))
  cfg = base_config().data
  cfg.data_dir = str(tmp_path / 'tfds')
  cfg.target.name = f'folder:{tmp_path / "imgs"}'
  cfg.batch_size = 4
  batch = next(data.build_train_iterator(cfg, image_size=12, num_devices=4))['target']
  assert batch['image'].shape == (4, 12, 12, 1)
  np.testing.assert_allclose(batch['image'], (200 / 255 - 0.5) / 0.5, atol=1e-5)
  assert sorted(batch['label']) == [0, 0, 1, 1]


def test_to_global_arrays_shards_rows_over_the_mesh(digits_cfg):
  import jax
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  batch = next(data.build_train_iterator(digits_cfg, seed=0))['target']
  arrays = data.to_global_arrays(batch, mesh)
  assert arrays['image'].shape == batch['image'].shape
  assert len(arrays['image'].addressable_shards) == jax.device_count() == 8
  shard = arrays['label'].addressable_shards[1]
  np.testing.assert_array_equal(np.asarray(shard.data), batch['label'][shard.index])
