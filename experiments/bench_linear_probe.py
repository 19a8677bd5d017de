"""Linear-probe epoch on cached features vs the same epoch recomputing the frozen backbone.

  python experiments/bench_linear_probe.py --config=configs/linear_probe_bbc.py \
      [--examples=256] [--batch_size=32] [--repeats=5]

Both epochs run the same probe math over the same `examples` training rows in minibatches of
`batch_size` (tests/test_features.py checks one step of each gives the same weights):
  cached:   one jitted lax.scan of probe steps over the cached feature matrix;
  backbone: per batch, one jitted call = backbone forward (eval mode) + probe step, on
            pre-tokenised inputs already in memory (tokenising is NOT counted, which favours
            the backbone side).
Prints the median seconds per epoch of each (after a warm-up epoch that compiles) and the ratio.
"""

from __future__ import annotations

import statistics
import time

from absl import app, flags

from tl_jax import harness

harness.setup()  # before jax is imported

_CONFIG = harness.define_config('linear_probe_bbc.py')
_EXAMPLES = flags.DEFINE_integer('examples', 256, 'training rows per epoch')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'probe minibatch (= backbone batch)')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'timed epochs of each kind')


def median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up: compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from tl_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from tl_jax import pieces as pieces_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import features, linear_probe  # pylint: disable=g-import-not-at-top
  from tl_jax.models import forward as forward_lib  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  cfg = config.transfer.linear_probe
  n, bs = _EXAMPLES.value, _BATCH.value
  if n % bs:
    raise app.UsageError(f'--examples={n} must be a multiple of --batch_size={bs}')
  config.data.eval_batch_size = bs
  pieces = pieces_lib.build(config)
  layer = linear_probe.layer_from_config(cfg)
  cached = features.split_features(config, cfg.train_split, cache_dir=cfg.cache_dir or None,
                                   layer=layer, pieces=pieces, limit=n)
  # The same rows, tokenised, in memory (the whole split is read: see features._first_examples).
  evals = data_lib.build_eval_batches(features.eval_data_config(config, cfg.train_split),
                                      tokenizer=pieces.tokenizer, process_index=0,
                                      process_count=1, num_devices=1)
  batches = [(jax.device_put(forward_lib.model_inputs(b)), jnp.asarray(b['label']))
             for b in list(evals[f'target/{cfg.train_split}'])[:n // bs]]

  tx = optax.adam(cfg.learning_rate)
  k = pieces.target_info.num_classes
  wb = (jnp.zeros((cached.x.shape[1], k)), jnp.zeros(k))
  mean, std = linear_probe.standardizer(cached.x)
  x = jax.device_put((jnp.asarray(cached.x) - mean) / std)
  y = jnp.asarray(cached.y)
  epoch = linear_probe.make_epoch_fn(tx, cfg.l2, bs, n)
  key = jax.random.key(0)
  cached_s = median_seconds(lambda: jax.block_until_ready(epoch(wb, tx.init(wb), x, y, key)),
                            _REPEATS.value)
  step = linear_probe.backbone_epoch_fn(features.feature_fn(pieces.module, layer), tx, cfg.l2,
                                        mean, std)
  backbone_s = median_seconds(
      lambda: linear_probe.backbone_epoch(step, pieces.params, wb, tx.init(wb), batches),
      _REPEATS.value)
  print(f'{config.model.name} ({config.model.init}), {config.data.target.name}/'
        f'{cfg.train_split}: {n} examples x {config.data.max_length} tokens, batch {bs}, '
        f'median of {_REPEATS.value}, {jax.devices()[0].platform}')
  print(f'  probe epoch on cached features:       {cached_s * 1e3:10.2f} ms')
  print(f'  probe epoch recomputing the backbone: {backbone_s * 1e3:10.2f} ms')
  print(f'  ratio: {backbone_s / cached_s:.0f}x faster on the cache')


if __name__ == '__main__':
  harness.run(main, timed=True)
