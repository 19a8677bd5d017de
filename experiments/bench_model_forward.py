"""Times one MiniLM-L6 forward+backward (batch 16 x 128, jit) for tl_jax's BERT vs HF FlaxBertModel.

  USE_TORCH=0 python experiments/bench_model_forward.py [--repeats 5] [--no-dropout]

Both models get the same weights and inputs; the loss is a masked mean-pooled embedding pushed
through a fixed random projection, gradients w.r.t. all params. Prints the median of `repeats`
timed calls after one warm-up (compile) call.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault('USE_TORCH', '0')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tl_jax.models import load_pretrained  # noqa: E402


def timed(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # compile + warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--length', type=int, default=128)
  parser.add_argument('--no-dropout', action='store_true')
  parser.add_argument('--dtype', default='float32')
  args = parser.parse_args()
  train = not args.no_dropout

  module, params = load_pretrained('minilm', pooling='mean', dtype=args.dtype)
  rng = np.random.RandomState(0)
  ids = jnp.asarray(rng.randint(1000, 30000, (args.batch, args.length)), jnp.int32)
  mask = jnp.asarray(np.arange(args.length)[None] < rng.randint(32, args.length + 1,
                                                                 (args.batch, 1)), jnp.int32)
  projection = jnp.asarray(rng.randn(384, 8), jnp.float32)
  key = jax.random.key(0)

  def pooled_loss(hidden):
    m = mask[..., None].astype(jnp.float32)
    pooled = (hidden.astype(jnp.float32) * m).sum(1) / m.sum(1)
    return jnp.mean((pooled @ projection) ** 2)

  @jax.jit
  def ours(p, key):
    def loss(p):
      out = module.apply({'params': p}, input_ids=ids, attention_mask=mask, train=train,
                         rngs={'dropout': key})
      return pooled_loss(out.last_hidden_state)
    return jax.value_and_grad(loss)(p)

  import transformers
  hf = transformers.FlaxBertModel(transformers.BertConfig(
      vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
      intermediate_size=1536), dtype=jnp.dtype(args.dtype), _do_init=False)

  @jax.jit
  def theirs(p, key):
    def loss(p):
      out = hf.module.apply({'params': p}, ids, mask, jnp.zeros_like(ids),
                            jnp.broadcast_to(jnp.arange(args.length), ids.shape), None,
                            deterministic=not train, rngs={'dropout': key})
      return pooled_loss(out[0])
    return jax.value_and_grad(loss)(p)

  # Same numbers from both when dropout is off.
  if not train:
    np.testing.assert_allclose(ours(params, key)[0], theirs(params, key)[0], rtol=1e-4)
  t_ours = timed(ours, params, key, repeats=args.repeats)
  t_hf = timed(theirs, params, key, repeats=args.repeats)
  print(f'MiniLM-L6 fwd+bwd batch {args.batch}x{args.length} dropout={train} dtype={args.dtype} '
        f'devices={jax.devices()[0].platform}x{jax.device_count()}: tl_jax {t_ours:.3f} s, '
        f'HF Flax {t_hf:.3f} s, speed-up {t_hf / t_ours:.2f}x')


if __name__ == '__main__':
  main()
