"""Times one MiniLM-L6 forward+backward (batch 16 x 128, jit) for tl_jax's BERT vs HF FlaxBertModel.

  USE_TORCH=0 python experiments/bench_model_forward.py [--repeats 9] [--dtype bfloat16]

Both models get the same weights and inputs (padded batch); the loss is the masked mean-pooled
embedding through a fixed random projection, gradients w.r.t. all params. Five jitted functions
(ours / HF, with dropout 0.1 = train and without = eval; and ours in train mode with flax's
threefry dropout instead of the default counter hash, model.dropout_impl='flax') are called in
turn, so background load hits all alike; prints median and min seconds of `repeats` calls after
a warm-up (compile) call, and CPU seconds per call.
"""

import statistics
import time

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tl_jax.models import load_pretrained  # noqa: E402

flags.DEFINE_integer('repeats', 9, 'timed repeats')
flags.DEFINE_integer('batch', 16, 'batch size')
flags.DEFINE_integer('length', 128, 'tokens per example')
flags.DEFINE_string('dtype', 'float32', 'float32 | bfloat16')


def main(argv) -> None:
  del argv
  args = flags.FLAGS

  module, params = load_pretrained('minilm', pooling='mean', dtype=args.dtype)
  flax_dropout, _ = load_pretrained('minilm', pooling='mean', dtype=args.dtype,
                                    dropout_impl='flax')
  rng = np.random.RandomState(0)
  ids = jnp.asarray(rng.randint(1000, 30000, (args.batch, args.length)), jnp.int32)
  lengths = rng.randint(min(32, args.length), args.length + 1, (args.batch, 1))
  mask = jnp.asarray(np.arange(args.length)[None] < lengths, jnp.int32)
  projection = jnp.asarray(rng.randn(384, 8), jnp.float32)

  def pooled_loss(hidden):
    m = mask[..., None].astype(jnp.float32)
    pooled = (hidden.astype(jnp.float32) * m).sum(1) / m.sum(1)
    return jnp.mean((pooled @ projection) ** 2)

  import transformers
  hf = transformers.FlaxBertModel(transformers.BertConfig(
      vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
      intermediate_size=1536), dtype=jnp.dtype(args.dtype), _do_init=False)

  def ours_hidden(p, key, train, model=module):
    return model.apply({'params': p}, input_ids=ids, attention_mask=mask, train=train,
                       rngs={'dropout': key}).last_hidden_state

  def hf_hidden(p, key, train):
    return hf.module.apply({'params': p}, ids, mask, jnp.zeros_like(ids),
                           jnp.broadcast_to(jnp.arange(args.length), ids.shape), None,
                           deterministic=not train, rngs={'dropout': key})[0]

  def step(hidden_fn, train):
    return jax.jit(lambda p, key: jax.value_and_grad(
        lambda p: pooled_loss(hidden_fn(p, key, train)))(p))

  fns = {f'{name} {"train" if train else "eval"}': step(fn, train)
         for train in (True, False) for name, fn in (('tl_jax', ours_hidden),
                                                     ('HF Flax', hf_hidden))}
  fns['tl_jax train, flax dropout'] = step(
      lambda p, key, train: ours_hidden(p, key, train, flax_dropout), True)
  key = jax.random.key(0)
  losses = {name: float(jax.block_until_ready(fn(params, key))[0]) for name, fn in fns.items()}
  np.testing.assert_allclose(losses['tl_jax eval'], losses['HF Flax eval'], rtol=1e-3)
  times = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  for _ in range(args.repeats):
    for name, fn in fns.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      jax.block_until_ready(fn(params, key))
      times[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  print(f'MiniLM-L6 fwd+bwd, batch {args.batch}x{args.length}, dtype {args.dtype}, '
        f'{jax.devices()[0].platform} x{jax.device_count()}, {args.repeats} calls each:')
  for name, ts in times.items():
    print(f'  {name:27s} median {statistics.median(ts):.3f} s  min {min(ts):.3f} s  '
          f'(CPU {statistics.median(cpu[name]):.2f} s)')
  for mode in ('train', 'eval'):
    ratio = statistics.median(times[f'HF Flax {mode}']) / statistics.median(times[f'tl_jax {mode}'])
    best = min(times[f'HF Flax {mode}']) / min(times[f'tl_jax {mode}'])
    print(f'  speed-up vs HF Flax ({mode}): {ratio:.2f}x by median, {best:.2f}x by min')
  hashed = statistics.median(times['tl_jax train'])
  threefry = statistics.median(times['tl_jax train, flax dropout'])
  no_dropout = statistics.median(times['tl_jax eval'])
  print(f'  dropout cost (train - eval): hash {hashed - no_dropout:.3f} s, flax threefry '
        f'{threefry - no_dropout:.3f} s; hash step {threefry / hashed:.2f}x faster')


if __name__ == '__main__':
  harness.run(main, timed=True)
