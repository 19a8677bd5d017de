"""Epoch time: full fine-tune vs bottom-4-of-6 frozen, uncached vs frozen-prefix cached.

MiniLM-L6 (real weights), batch 16 x 128, the trainer's TrainCore step (AdamW, clipping, dropout
0.1 where it runs). Three epochs over the same shuffled examples, alternated `--repeats` times:
  full      freeze_preset 'all'
  frozen    'bottom:4', the whole model runs every step (no backward below layer 4)
  cached    'bottom:4' on PrefixCache boundary states: only layers 4-5 + pooler + head run
The one-off cache build (the prefix's forward once per example, train=False) is timed apart and
also shown amortised over `--epochs_per_run`. Wall medians and process CPU seconds (the CPU
figure is steadier on a shared machine).

  python experiments/bench_prefix_cache.py                   # 256 examples, 3 repeats
  python experiments/bench_prefix_cache.py --examples=1781   # a BBC News train split's size
"""

from __future__ import annotations

import os
import statistics
import time

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tl_jax.config import base_config  # noqa: E402
from tl_jax.models import load_pretrained  # noqa: E402
from tl_jax.train import parallel, prefix_cache  # noqa: E402
from tl_jax.train.step import TrainCore  # noqa: E402

flags.DEFINE_integer('examples', 256, 'training examples')
flags.DEFINE_integer('batch', 16, 'batch size')
flags.DEFINE_integer('seq', 128, 'tokens per example')
flags.DEFINE_integer('repeats', 3, 'timed repeats')
flags.DEFINE_integer('epochs_per_run', 3, 'for the amortised figure')
flags.DEFINE_string('cache_dtype', 'float32', 'float32 | bfloat16')


FROZEN = 4


def timed(fn):
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


def main(argv) -> None:
  del argv
  args = flags.FLAGS

  module, params = load_pretrained('minilm', num_classes=5, pooling='pooler')
  rs = np.random.RandomState(0)
  n, seq = args.examples - args.examples % args.batch, args.seq
  lengths = rs.randint(seq // 2, seq + 1, (n, 1))
  examples = {'input_ids': rs.randint(1000, 30000, (n, seq)).astype(np.int32),
              'attention_mask': (np.arange(seq)[None] < lengths).astype(np.int32),
              'label': rs.randint(0, 5, (n,)).astype(np.int32)}
  order = rs.permutation(n).reshape(-1, args.batch)
  launcher = parallel.make_launcher('pmap', jax.devices()[:1])

  def core_for(preset, model):
    config = base_config()
    config.train.num_steps = 100_000
    config.transfer.freeze_preset = preset
    core = TrainCore(config, model, params, launcher=launcher)
    return core, [core.init_state(params, rng=0)]

  cache_holder = {}

  def build():
    cache_holder['cache'] = prefix_cache.PrefixCache.build(
        module, params, examples, start_layer=FROZEN, batch_size=args.batch,
        dtype=args.cache_dtype)
  timed(lambda: prefix_cache.PrefixCache.build(  # compile the prefix program
      module, params, {k: v[:args.batch] for k, v in examples.items()}, start_layer=FROZEN,
      batch_size=args.batch))
  build_wall, build_cpu = timed(build)
  cache = cache_holder['cache']

  runs = {'full': (core_for('all', module),
                   lambda idx: {k: v[idx] for k, v in examples.items()}),
          'frozen': (core_for(f'bottom:{FROZEN}', module),
                     lambda idx: {k: v[idx] for k, v in examples.items()}),
          'cached': (core_for(f'bottom:{FROZEN}', prefix_cache.PrefixTop(module, FROZEN)),
                     cache.batch)}

  def epoch(name):
    (core, carry), make_batch = runs[name]
    metrics = None
    for idx in order:
      carry[0], metrics = core.train_step(carry[0], {'target': make_batch(idx)})
    jax.block_until_ready(metrics)

  print(f'jax {jax.__version__} on {jax.devices()[0].platform}; {os.cpu_count()} CPUs; MiniLM-L6 '
        f'{n} examples, batch {args.batch} x {seq} ({len(order)} steps/epoch); cache '
        f'{cache.nbytes / 2**20:.0f} MB {args.cache_dtype}, built in {build_wall:.1f} s '
        f'({build_cpu:.1f} CPU s); load average {os.getloadavg()}', flush=True)
  for name in runs:  # compile + warm up
    (core, carry), make_batch = runs[name]
    carry[0], m = core.train_step(carry[0], {'target': make_batch(order[0])})
    jax.block_until_ready(m)
  wall = {name: [] for name in runs}
  cpu = {name: [] for name in runs}
  for r in range(args.repeats):
    for name in runs:
      w, c = timed(lambda: epoch(name))
      wall[name].append(w)
      cpu[name].append(c)
    print(f'  repeat {r + 1}: ' + ', '.join(f'{k} {v[-1]:.1f} s' for k, v in wall.items()) +
          f'; load average {os.getloadavg()}', flush=True)

  med = {k: statistics.median(v) for k, v in wall.items()}
  med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
  e = args.epochs_per_run
  print(f'\n| epoch | wall s (median of {args.repeats}) | / full | CPU s | / full |')
  print('|---|---|---|---|---|')
  for name in runs:
    print(f'| {name} | {med[name]:.2f} | {med[name] / med["full"]:.3f} | {med_cpu[name]:.2f} | '
          f'{med_cpu[name] / med_cpu["full"]:.3f} |')
  amort = med['cached'] + build_wall / e
  amort_cpu = med_cpu['cached'] + build_cpu / e
  print(f'| cached + build/{e} | {amort:.2f} | {amort / med["full"]:.3f} | {amort_cpu:.2f} | '
        f'{amort_cpu / med_cpu["full"]:.3f} |')


if __name__ == '__main__':
  harness.run(main, timed=True)
