"""data.length_buckets: text batches padded to the smallest bucket that fits, never changing the
loss; off = today's batches byte for byte; bounded compiles; tokens_per_sec; bad values."""

import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_helpers import REPO, TINY_CONFIG, WORDS, cli_env, describe, tiny_assets  # noqa: F401
from fixtures_data import minilm_tokenizer, prepared_data_dir  # noqa: F401 (fixtures)
from tl_jax import config as config_lib
from tl_jax import data
from tl_jax.data.text import TokenizeBatch, bucket_for
from tl_jax.methods import objectives
from tl_jax.models import BertConfig, BertModel
from tl_jax.models.forward import forward
from tl_jax.train import parallel
from tl_jax.train.step import TrainCore

BUCKETS, MAX = (8, 16), 32


def _texts(*word_counts):
  # 'a' is one token: n words -> n + 2 tokens with [CLS] and [SEP].
  return [{'text': (' '.join(['a'] * n),)} for n in word_counts]


def _reference(tokenizer, examples, length):
  """What TokenizeBatch did before buckets existed: pad everything to `length`."""
  first = [ex['text'][0] for ex in examples]
  rest = [' '.join(ex['text'][1:]) for ex in examples] if len(examples[0]['text']) > 1 else None
  enc = tokenizer(first, rest, max_length=length, truncation=True, padding='max_length',
                  return_tensors='np', return_token_type_ids=True, return_attention_mask=True)
  return {k: np.asarray(enc[k], np.int32)
          for k in ('input_ids', 'attention_mask', 'token_type_ids')}


def test_bucket_for():
  assert [bucket_for(n, (8, 16, 32)) for n in (1, 8, 9, 16, 17, 32, 40)] == [
      8, 8, 16, 16, 32, 32, 32]


@pytest.mark.parametrize('words,width', [
    ((1, 3), 8),  # longest 5 tokens
    ((6, 2), 8),  # exactly at the bucket: 8 tokens
    ((7,), 16),  # one past it
    ((14, 1), 16),  # exactly 16
    ((15,), 32),  # 17 tokens -> max_length
    ((50, 2), 32),  # longer than max_length: truncated to it
])
def test_padding_goes_to_the_smallest_bucket_that_fits(minilm_tokenizer, words, width):
  examples = _texts(*words)
  batch = TokenizeBatch(minilm_tokenizer, MAX, BUCKETS)(examples)
  assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
      k: (np.int32, (len(words), width)) for k in ('input_ids', 'attention_mask',
                                                   'token_type_ids')}
  # Exactly what padding to that length would give (pad ids, mask 0, truncation, [SEP] last).
  ref = _reference(minilm_tokenizer, examples, width)
  for key in ref:
    np.testing.assert_array_equal(batch[key], ref[key])
  assert batch['attention_mask'].sum(axis=1).tolist() == [min(n + 2, MAX) for n in words]


def test_pairs_are_bucketed_like_single_fields(minilm_tokenizer):
  examples = [{'text': ('a a', 'b b b'), 'label': 1}, {'text': ('a', 'b'), 'label': 0}]
  batch = TokenizeBatch(minilm_tokenizer, MAX, BUCKETS)(examples)
  assert batch['input_ids'].shape == (2, 8)  # [CLS] a a [SEP] b b b [SEP]
  ref = _reference(minilm_tokenizer, examples, 8)
  for key in ref:
    np.testing.assert_array_equal(batch[key], ref[key])
  assert (batch['token_type_ids'] == 1).any(axis=1).all() and batch['label'].tolist() == [1, 0]


def test_buckets_off_is_byte_identical_to_padding_to_max_length(minilm_tokenizer):
  examples = _texts(1, 6, 20, 50)
  ref = _reference(minilm_tokenizer, examples, MAX)
  for buckets in ((), (MAX,)):  # off, or only max_length: the same path
    batch = TokenizeBatch(minilm_tokenizer, MAX, buckets)(examples)
    assert sorted(batch) == sorted(ref)
    assert all(batch[k].dtype == ref[k].dtype and batch[k].tobytes() == ref[k].tobytes()
               for k in ref)


def _bbc_config(prepared_data_dir, buckets):
  cfg = config_lib.base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.max_length = 64
  cfg.length_buckets = buckets
  cfg.batch_size = 8
  cfg.eval_batch_size = 32
  cfg.target.text_fields = ('title',)  # short
  cfg.target.eval_splits = ('validation',)
  cfg.source.name = 'bbc_news'
  cfg.source.text_fields = ('title', 'body')  # long: fills max_length
  cfg.source.eval_splits = ('validation',)
  cfg.lock()
  return cfg


def _minimal(rows, buckets):
  """The width rows must have: the bucket of their longest example."""
  return bucket_for(int(rows['attention_mask'].sum(axis=1).max()), buckets)


def test_pipeline_buckets_each_domain_train_and_eval(prepared_data_dir, minilm_tokenizer):
  on = _bbc_config(prepared_data_dir, (16, 32))
  off = _bbc_config(prepared_data_dir, ())
  kw = dict(tokenizer=minilm_tokenizer, seed=0, num_devices=1)
  it_on, it_off = data.build_train_iterator(on, **kw), data.build_train_iterator(off, **kw)
  for _ in range(3):
    a, b = next(it_on), next(it_off)
    for role in ('target', 'source'):
      width = a[role]['input_ids'].shape[1]
      assert width == _minimal(a[role], (16, 32, 64)), role
      assert b[role]['input_ids'].shape[1] == 64  # off: today's width
      # Same examples; the bucketed rows are the max_length rows cut at the bucket.
      for key in ('input_ids', 'attention_mask', 'token_type_ids'):
        np.testing.assert_array_equal(a[role][key], b[role][key][:, :width])
        assert not b[role][key][:, width:].any()
      np.testing.assert_array_equal(a[role]['label'], b[role]['label'])
    assert a['target']['input_ids'].shape[1] < 64 and a['source']['input_ids'].shape[1] == 64
  evals = data.build_eval_batches(on, tokenizer=minilm_tokenizer, num_devices=1)
  widths = set()
  for name, batches in evals.items():
    for batch in batches:
      assert batch['input_ids'].shape[1] == _minimal(batch, (16, 32, 64)), name
      widths.add(batch['input_ids'].shape[1])
  assert widths <= {16, 32, 64} and len(widths) >= 2


# ------------------------------------------------------------------------------------------
# Padding never changes the loss or the gradients.
# ------------------------------------------------------------------------------------------

def _tiny_bert(pooling):
  module = BertModel(BertConfig(
      vocab_size=50, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
      max_position_embeddings=MAX, num_classes=3, dropout_rate=0.0, attention_dropout_rate=0.0,
      pooling=pooling))
  params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
  return module, params


def _short_batch(width=8, n=8):
  rs = np.random.RandomState(0)
  lengths = rs.randint(2, width + 1, (n, 1))
  mask = (np.arange(width)[None] < lengths).astype(np.int32)
  return {'input_ids': (rs.randint(1, 50, (n, width)) * mask).astype(np.int32),
          'attention_mask': mask, 'token_type_ids': np.zeros((n, width), np.int32),
          'label': rs.randint(0, 3, (n,)).astype(np.int32)}


def _pad(batch, width):
  return {k: (np.pad(v, ((0, 0), (0, width - v.shape[1]))) if v.ndim == 2 else v)
          for k, v in batch.items()}


def _assert_trees_close(a, b, *, rtol: float) -> None:
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize('pooling', ['mean', 'pooler'])
def test_loss_and_gradients_do_not_depend_on_the_padding(pooling):
  module, params = _tiny_bert(pooling)

  def loss_fn(p, batch):
    logits = forward(module, p, batch, train=False).logits
    return jnp.mean(objectives.cross_entropy_terms(logits, batch['label'])[0])

  grad_fn = jax.jit(jax.value_and_grad(loss_fn))
  short = _short_batch()
  loss_b, grads_b = grad_fn(params, short)  # padded to the bucket (8)
  loss_m, grads_m = grad_fn(params, _pad(short, MAX))  # padded to max_length
  np.testing.assert_allclose(float(loss_b), float(loss_m), rtol=1e-5)
  _assert_trees_close(grads_b, grads_m, rtol=1e-4)


def test_train_step_compiles_once_per_width_and_counts_real_tokens():
  module, params = _tiny_bert('mean')
  c = config_lib.base_config()
  c.train.num_steps = 10
  c.optimizer.name, c.optimizer.momentum, c.optimizer.learning_rate = 'sgd', 0.0, 0.1
  core = TrainCore(c, module, params, launcher=parallel.make_launcher('shard_map',
                                                                       jax.devices()[:2]))
  short = _short_batch()
  out = {}
  for width in (8, MAX, 8, MAX):
    state = core.init_state(params, rng=0)
    state, m = core.train_step(state, {'target': _pad(short, width)})
    out[width] = (core.host_metrics(m), jax.device_get(core.to_host(state).params))
  assert len(core.train_shapes) == 2 and core.train_fn(0)._cache_size() == 2  # no recompile
  (m8, p8), (m32, p32) = out[8], out[MAX]
  assert m8['real_tokens'] == m32['real_tokens'] == float(short['attention_mask'].sum())
  np.testing.assert_allclose(m8['loss'], m32['loss'], rtol=1e-5)
  np.testing.assert_allclose(m8['grad_norm'], m32['grad_norm'], rtol=1e-4)
  _assert_trees_close(p8, p32, rtol=1e-5)


def test_host_metrics_sums_real_tokens_since_the_last_read():
  module, params = _tiny_bert('mean')
  c = config_lib.base_config()
  c.train.num_steps = 10
  core = TrainCore(c, module, params, launcher=parallel.make_launcher('pmap', jax.devices()[:1]))
  state = core.init_state(params, rng=0)
  batch = _short_batch()
  for _ in range(3):  # three steps, one read: the tokens of all three
    state, m = core.train_step(state, {'target': batch, 'source': batch})
  assert core.host_metrics(m)['real_tokens'] == 3 * 2 * float(batch['attention_mask'].sum())
  state, m = core.train_step(state, {'target': batch, 'source': batch})
  assert core.host_metrics(m)['real_tokens'] == 2 * float(batch['attention_mask'].sum())


# ------------------------------------------------------------------------------------------
# Config.
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('buckets', [(16, 8), (8, 8), (8, 64), (0, 8), (-4,), (8.5,)])
def test_bad_buckets_are_one_clear_error(buckets):
  c = config_lib.base_config()
  c.data.max_length = 32
  c.data.length_buckets = buckets
  with pytest.raises(config_lib.ConfigValueError) as e:
    config_lib.validate(c)
  message = str(e.value)
  assert message.startswith('data.length_buckets=') and 'increasing positive ints' in message
  assert '<= data.max_length=32' in message


def test_buckets_and_prefix_cache_are_refused_together():
  c = config_lib.base_config()
  c.data.length_buckets = (32, 64)
  config_lib.validate(c)  # fine alone
  c.transfer.cache_frozen_prefix = True
  with pytest.raises(config_lib.ConfigValueError,
                     match=r'data.length_buckets and transfer.cache_frozen_prefix=True'):
    config_lib.validate(c)


def test_length_buckets_helper():
  c = config_lib.base_config().data
  assert config_lib.length_buckets(c) == (128,)
  c.length_buckets = (32, 64)
  assert config_lib.length_buckets(c) == (32, 64, 128)
  c.length_buckets = (32, 128)  # max_length given explicitly: not twice
  assert config_lib.length_buckets(c) == (32, 128)


# ------------------------------------------------------------------------------------------
# End to end: loop.train on 2 devices, buckets on vs off.
# ------------------------------------------------------------------------------------------

def _varied_text_folder(root: pathlib.Path) -> pathlib.Path:
  """Three classes of mostly short texts, some medium, a few long (beyond 16 tokens)."""
  rng = np.random.default_rng(0)
  for label, words in WORDS.items():
    (root / label).mkdir(parents=True)
    for i in range(20):
      n = int(rng.choice([rng.integers(1, 5), rng.integers(8, 13), rng.integers(20, 29)],
                         p=[0.7, 0.2, 0.1]))
      (root / label / f'{i:03d}.txt').write_text(' '.join(rng.choice(words.split(), n)) + '\n')
  return root


RUN = textwrap.dedent('''
  import json, sys
  from absl import logging
  from tl_jax import config as config_lib
  from tl_jax.train import loop, step as step_lib
  logging.set_verbosity(logging.INFO)
  args = json.loads(sys.argv[1])
  cores = []
  init = step_lib.TrainCore.__init__
  def capture(self, *a, **k):
    init(self, *a, **k)
    cores.append(self)
  step_lib.TrainCore.__init__ = capture
  out = {}
  for name, buckets in (('on', (8, 16)), ('off', ())):
    c = config_lib.from_file(args['config'])
    c.model.name = args['bert']
    c.model.dropout_rate = c.model.attention_dropout_rate = 0.0
    c.data.target.name, c.data.data_dir = args['dataset'], args['data_dir']
    c.data.text_fields, c.data.target.eval_splits = ('text',), ('validation',)
    c.data.max_length, c.data.length_buckets = 32, buckets
    c.data.batch_size = c.data.eval_batch_size = 4
    c.train.num_steps, c.train.log_every, c.train.eval_every = 8, 2, 4
    c.train.best_metric, c.train.export_hf = '', False
    cores.clear()
    final = loop.train(c, args['workdir'] + '/' + name)
    core = cores[-1]
    out[name] = dict(final=final, shapes=len(core.train_shapes),
                     jit_cache=core.train_fn(core.stage)._cache_size(),
                     devices=core.launcher.num_devices)
  print('RESULT ' + json.dumps(out))
''')


def test_two_device_run_with_buckets_bounded_compiles_and_tokens_per_sec(tiny_assets, tmp_path):
  from tl_jax.data import sources  # pylint: disable=g-import-not-at-top
  folder = _varied_text_folder(tmp_path / 'texts')
  dataset = f'folder:{folder}'
  sources.get_builder(dataset, str(tiny_assets.data_dir))  # prepared here, once
  args = dict(config=str(TINY_CONFIG), bert=str(tiny_assets.bert_dir), dataset=dataset,
              data_dir=str(tiny_assets.data_dir), workdir=str(tmp_path))
  done = subprocess.run([sys.executable, '-c', RUN, json.dumps(args)], cwd=REPO,
                        env=cli_env(devices=2), capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, describe(done)
  result = json.loads(done.stdout.split('RESULT ', 1)[1])
  on, off = result['on'], result['off']
  assert on['devices'] == off['devices'] == 2
  # At most one shape per bucket (one domain), each compiled once; several actually used.
  assert 2 <= on['shapes'] <= 3 and on['jit_cache'] == on['shapes']
  assert off['shapes'] == off['jit_cache'] == 1
  assert done.stderr.count('batch shape') == on['shapes'] + off['shapes']
  # Same training either way (no dropout): padding is masked out.
  assert on['final'].keys() == off['final'].keys()
  for key in on['final']:
    np.testing.assert_allclose(on['final'][key], off['final'][key], rtol=1e-4, atol=1e-6)
  records = {name: [json.loads(line) for line in
                    (tmp_path / name / 'metrics.jsonl').read_text().splitlines()]
             for name in ('on', 'off')}
  train = {name: [r for r in recs if 'loss' in r] for name, recs in records.items()}
  assert [r['step'] for r in train['on']] == [2, 4, 6, 8]
  for a, b in zip(train['on'], train['off']):
    assert a['tokens_per_sec'] > 0 and b['tokens_per_sec'] > 0
    assert a['real_tokens'] == b['real_tokens'] > 0  # two steps' real tokens, either way
    np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-4)
