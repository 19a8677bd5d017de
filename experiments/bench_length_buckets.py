"""Short texts: every batch padded to data.max_length vs to the smallest data.length_buckets length.

MiniLM-L6 (real weights) fine-tuned on BBC News titles only (`data.text_fields=('title',)`, a few
to a dozen words), batch 16, max_length 128: the trainer's pipeline and TrainCore step (AdamW,
clipping, dropout 0.1), full fine-tune. Two runs, `off` (length_buckets=()) and `on`
(`--buckets`), each with its own data stream and state, timed alternately `--repeats` times for
`--steps` steps each, so machine load hits both alike. A step that meets a new batch shape
compiles: it is timed apart (the first one is `first step s`) and left out of the rates.
Columns: examples/s, real (attention_mask == 1) tokens/s, the fraction of pad tokens in the
batches, train-step shapes compiled, first-step seconds. The harness prints the load before
and its verdict after (tl_jax/machine_load.py): take figures only when it says quiet.

  python experiments/bench_length_buckets.py --steps=50 --repeats=3
  python experiments/bench_length_buckets.py --steps=2 --repeats=1 --batch=4 \
      --max_length=32 --buckets=8,16          # smoke run (seconds of training)
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

from tl_jax import data as data_lib  # noqa: E402
from tl_jax import pieces as pieces_lib  # noqa: E402
from tl_jax.config import base_config, validate  # noqa: E402
from tl_jax.train.step import TrainCore  # noqa: E402

flags.DEFINE_integer('steps', 50, 'timed steps per run and repeat')
flags.DEFINE_integer('repeats', 3, 'alternations of off and on')
flags.DEFINE_integer('batch', 16, 'batch size')
flags.DEFINE_integer('max_length', 128, 'data.max_length')
flags.DEFINE_list('buckets', ['16', '32', '64'], 'data.length_buckets of the `on` run')
flags.DEFINE_string('model', 'minilm', 'model.name')
flags.DEFINE_string('field', 'title', 'the text field to train on (bbc_news: title | body)')
flags.DEFINE_string('data_dir', '', "TFDS data_dir ('' = TFDS default); prepared if needed")


def make_config(buckets: tuple[int, ...]):
  args = flags.FLAGS
  config = base_config()
  config.model.name = args.model
  config.data.target.name = 'bbc_news'
  config.data.data_dir = args.data_dir
  config.data.text_fields = (args.field,)
  config.data.max_length = args.max_length
  config.data.length_buckets = buckets
  config.data.batch_size = args.batch
  config.train.num_steps = 100_000  # a flat schedule over the timed steps
  validate(config)
  return config


class Run:
  """One setting's stream, TrainCore and state, stepped on in timed segments."""

  def __init__(self, name, config, pieces):
    self.name = name
    self.core = TrainCore(config, pieces.module, pieces.params, pretrained_params=pieces.params)
    self.state = self.core.init_state(pieces.params, config.seed)
    self.batches = data_lib.build_train_iterator(
        config.data, tokenizer=pieces.tokenizer, seed=config.seed,
        num_devices=self.core.launcher.num_devices)
    self.metrics = None
    self.seconds, self.examples, self.real = [], 0, 0  # timed steps
    self.all_real, self.all_padded = 0, 0  # every step: the pad fraction
    self.compile_s = []  # steps that met a new shape (compile included)
    self.seen = set()
    self.device_real = 0.0

  def segment(self, steps: int) -> None:
    wall, excluded, examples, real = time.perf_counter(), 0.0, 0, 0
    for _ in range(steps):
      batch = next(self.batches)
      mask = batch['target']['attention_mask']
      self.all_real += int(mask.sum())
      self.all_padded += mask.size
      shape = tuple((role, key, x.shape) for role in sorted(batch)
                    for key, x in sorted(batch[role].items()))
      if shape in self.seen:  # dispatched asynchronously, as the trainer does
        self.state, self.metrics = self.core.train_step(self.state, batch)
      else:  # a new shape compiles: timed alone, left out of the rates
        self.seen.add(shape)
        if self.metrics is not None:
          jax.block_until_ready(self.metrics)
        start = time.perf_counter()
        self.state, self.metrics = self.core.train_step(self.state, batch)
        jax.block_until_ready(self.metrics)
        self.compile_s.append(time.perf_counter() - start)
        excluded += self.compile_s[-1]
        continue
      examples += mask.shape[0]
      real += int(mask.sum())
    jax.block_until_ready(self.metrics)
    self.seconds.append(time.perf_counter() - wall - excluded)
    self.examples += examples
    self.real += real
    self.device_real += self.core.host_metrics(self.metrics)['real_tokens']

  def row(self) -> str:
    seconds = sum(self.seconds)
    rate = (lambda n: n / seconds) if seconds > 0 else (lambda n: float('nan'))
    pad = 1 - self.all_real / self.all_padded if self.all_padded else float('nan')
    first = f'{self.compile_s[0]:.2f}' if self.compile_s else '?'
    return (f'| {self.name} | {rate(self.examples):.1f} | {rate(self.real):.0f} | {pad:.3f} | '
            f'{len(self.core.train_shapes)} | {first} |')


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  buckets = tuple(int(b) for b in args.buckets)
  configs = {'off': make_config(()), 'on': make_config(buckets)}
  pieces = pieces_lib.build(configs['off'])
  runs = {name: Run(name, config, pieces) for name, config in configs.items()}
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} devices); '
        f'{os.cpu_count()} CPUs; {args.model} on bbc_news {args.field!r}, batch {args.batch}, '
        f'max_length {args.max_length}, buckets {buckets}; {args.repeats} x {args.steps} steps '
        'each', flush=True)
  for r in range(args.repeats):
    for run in runs.values():
      run.segment(args.steps)
    print(f'  repeat {r + 1}: ' + ', '.join(f'{run.name} {run.seconds[-1]:.2f} s'
                                             for run in runs.values()) +
          f'; load average {os.getloadavg()}', flush=True)
  print('\n| buckets | examples/s | real tokens/s | pad fraction | compiled shapes | '
        'first step s |')
  print('|---|---|---|---|---|---|')
  for run in runs.values():
    print(run.row())
  if all(len(run.seconds) > 1 for run in runs.values()):
    med = {name: statistics.median(run.seconds) for name, run in runs.items()}
    print('median segment s: ' + ', '.join(f'{k} {v:.2f}' for k, v in med.items()))
  print('real tokens per run (device metric, all steps): ' + ', '.join(
      f'{run.name} {run.device_real:.0f}' for run in runs.values()))


if __name__ == '__main__':
  harness.run(main, timed=True)
