"""Train batches reach the devices ahead of the step that consumes them, a checkpoint records the
consumed batch's data position (not the prefetched ones'), and the loop reads the devices once
per step (the finiteness flag of the previous step) between logs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import TINY_CONFIG, tiny_assets  # noqa: F401 (session fixture)
from tl_jax import config as config_lib
from tl_jax.models import BertConfig, BertModel
from tl_jax.train import loop, parallel, prefetch
from tl_jax.train import metrics as metrics_lib
from tl_jax.train import step as step_lib


class _Batches:
  """A host batch iterator with grain's get_state(): the state is the number of batches read."""

  def __init__(self):
    self.read = 0

  def __next__(self):
    self.read += 1
    ids = np.full((4, 8), self.read, np.int32)
    return {'target': {'input_ids': ids, 'attention_mask': np.ones_like(ids),
                       'label': np.zeros(4, np.int32)}}

  def get_state(self):
    return {'read': self.read}


@pytest.mark.parametrize('depth', [0, 1, 2])
def test_the_next_batches_are_on_the_devices_before_the_step_runs(depth):
  config = config_lib.base_config()
  module = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2,
                                intermediate_size=32, max_position_embeddings=8,
                                num_classes=2))
  params = jax.jit(module.init)(jax.random.key(0), jnp.ones((1, 8), jnp.int32))['params']
  core = step_lib.TrainCore(config, module, params,
                            launcher=parallel.make_launcher('shard_map', jax.devices()[:1]))
  events = []
  put = core.put
  core.put = lambda batch, data_state=None: (
      events.append(('put', int(batch['target']['input_ids'][0, 0]))) or put(batch, data_state))
  state = core.init_state(params, rng=0)
  batches = prefetch.device_batches(core, _Batches(), depth=depth)
  for k in range(1, 5):
    batch = next(batches)
    assert isinstance(batch, step_lib.DeviceBatch)
    assert batch.data_state == {'read': k}  # where a resume after step k starts
    assert int(batch.arrays['target']['input_ids'][0, 0]) == k
    events.append(('step', k))
    state, _ = core.train_step(state, batch)
  for k in range(1, 5):  # every batch up to k + depth was put before step k ran
    ran = events.index(('step', k))
    assert ('put', k + depth) in events[:ran], events


def test_the_loop_reads_the_devices_once_per_step_between_logs(tiny_assets, tmp_path,  # noqa: F811
                                                               monkeypatch):
  reads, inside = [], []  # top-level reads only (to_host_floats reads through scalar)
  scalar, to_host = metrics_lib.scalar, metrics_lib.to_host_floats

  def counted_scalar(*args, **kwargs):
    if not inside and isinstance(args[0], jax.Array):  # python floats are not device reads
      reads.append('scalar')
    return scalar(*args, **kwargs)

  def counted_to_host(*args, **kwargs):
    reads.append('floats')
    inside.append(1)
    try:
      return to_host(*args, **kwargs)
    finally:
      inside.pop()
  monkeypatch.setattr(metrics_lib, 'scalar', counted_scalar)
  monkeypatch.setattr(metrics_lib, 'to_host_floats', counted_to_host)
  config = config_lib.from_file(TINY_CONFIG)
  config.model.name = str(tiny_assets.bert_dir)
  config.data.target.name = tiny_assets.text_dataset
  config.data.data_dir = str(tiny_assets.data_dir)
  config.data.text_fields = ('text',)
  config.data.target.eval_splits = ()
  config.train.best_metric = ''
  config.train.num_steps = config.train.log_every = 8
  config.train.eval_every = config.train.checkpoint_every = 0
  config.train.export_hf = False
  loop.train(config, str(tmp_path))
  # One finiteness read per step (each read after the next step is dispatched), and at the one
  # log step the metrics in one transfer plus the real-token sum of the 8 steps.
  assert reads.count('scalar') == 8, reads
  assert reads.count('floats') <= 2, reads
