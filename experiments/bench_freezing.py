"""Does freezing save the backward pass? Train-step time, frozen vs full fine-tune, vs the ideal.

For each freezing preset the real train step (TrainCore, one device) is timed, and compared with
  full   the full fine-tune step, and
  ideal  forward of the whole model + (step − forward) of a separate program that holds ONLY the
         trainable top (BertLayers + pooler + head, plain jax.grad + optax, no freezing code) and
         starts from the frozen part's output: forward everywhere, backward where something trains.
  by-hand  the same single program written by hand (jax.grad w.r.t. the trainable subtree, optax
         clip + adamw): what TrainCore adds on top of the one-program approach.
A step within a few % of `ideal` means XLA does no backward work for the frozen layers. The same
ratio is also given in FLOPs from XLA's cost analysis of the compiled programs, which does not
depend on what else the machine is doing.

Measured (2026-11, jax 0.10.2, 2 shared CPU cores, MiniLM-L6 shape, random weights):
  FLOP step/ideal 1.001 (bottom:3), 1.000 (bottom:5), 1.000 (head_only): no frozen backward.
  wall step/ideal over 5 runs 0.97-1.11, 0.91-1.02, 0.94-1.00 (± the machine's load noise);
  wall step/full ~0.56-0.67, ~0.32-0.44, ~0.19-0.27 (ideal/full ~0.57-0.77, ~0.35-0.43, ~0.21-0.28).

Run:  python experiments/bench_freezing.py                     (MiniLM-L6 shape, batch 16 × 128)
      python experiments/bench_freezing.py --hidden=128 --layers=4 --heads=4 --vocab=2000 \\
          --batch=8 --seq=64 --steps=5                          (quick)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from tl_jax.config import base_config  # noqa: E402
from tl_jax.models import BertConfig, BertModel  # noqa: E402
from tl_jax.models.bert import BertLayer  # noqa: E402
from tl_jax.models import layers as layers_lib  # noqa: E402
from tl_jax.train import parallel  # noqa: E402
from tl_jax.train.step import TrainCore  # noqa: E402
from tl_jax.train import freezing  # noqa: E402

flags.DEFINE_integer('hidden', 384, 'hidden size')
flags.DEFINE_integer('layers', 6, 'encoder layers')
flags.DEFINE_integer('heads', 12, 'attention heads')
flags.DEFINE_integer('vocab', 30522, 'vocabulary size')
flags.DEFINE_integer('batch', 16, 'batch size')
flags.DEFINE_integer('seq', 128, 'tokens per example')
flags.DEFINE_integer('steps', 10, 'timing rounds')


def best_times(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
  """Best seconds per call of each zero-argument function, measured round-robin: on a shared
  machine other work only ever adds time, and interleaving spreads it over all candidates."""
  for fn in calls.values():  # compile and warm up
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
  best = {name: float('inf') for name in calls}
  for _ in range(rounds):
    for name, fn in calls.items():
      t = time.perf_counter()
      jax.block_until_ready(fn())
      best[name] = min(best[name], time.perf_counter() - t)
  return best


def cost(fn, *args) -> float:
  """FLOPs of the compiled program (XLA cost analysis): deterministic, unlike wall time."""
  analysis = fn.lower(*args).compile().cost_analysis()
  return float((analysis[0] if isinstance(analysis, list) else analysis)['flops'])


class Top(nn.Module):
  """The trainable top alone: `n` BertLayers (none for head_only) + pooler + head."""
  config: BertConfig
  n: int
  pooler: bool

  @nn.compact
  def __call__(self, x, bias):
    for i in range(self.n):
      x, _ = BertLayer(self.config, name=f'layer_{i}')(x, bias, False)
    pooled = x[:, 0]
    if self.pooler:
      pooled = jnp.tanh(nn.Dense(self.config.hidden_size, name='pooler')(pooled))
    return nn.Dense(self.config.num_classes, name='head')(pooled).astype(jnp.float32)


def top_only(cfg: BertConfig, n_top: int, pooler: bool, inputs, labels, opt):
  """(train step call, forward call, step − forward FLOPs) of the trainable top on its own, fed
  the frozen part's output."""
  top = Top(cfg, n_top, pooler)
  params = jax.jit(top.init)(jax.random.key(1), *inputs)['params']
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(opt.learning_rate,
                                                               weight_decay=opt.weight_decay))
  carry = [params, tx.init(params)]

  def loss(p):
    logits = top.apply({'params': p}, *inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(p, s):
    g = jax.grad(loss)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  def train():
    carry[:] = step(*carry)
    return carry[0]
  fwd = jax.jit(loss)
  backward_flops = cost(step, *carry) - cost(fwd, carry[0])
  return train, lambda: fwd(carry[0]), backward_flops


def main(argv) -> None:
  del argv
  args = flags.FLAGS

  L = args.layers
  cfg = BertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_layers=L,
                   num_heads=args.heads, intermediate_size=4 * args.hidden, num_classes=5,
                   dropout_rate=0.0, attention_dropout_rate=0.0, pooling='pooler',
                   max_position_embeddings=max(512, args.seq))
  module = BertModel(cfg)
  rs = np.random.RandomState(0)
  ids = rs.randint(1, args.vocab, (args.batch, args.seq)).astype(np.int32)
  mask = np.ones_like(ids)
  labels = rs.randint(0, 5, (args.batch,)).astype(np.int32)
  batch = {'target': {'input_ids': ids, 'attention_mask': mask, 'label': labels}}
  params = jax.jit(module.init)(jax.random.key(0), ids[:1])['params']
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s) '
        f'visible, using 1); BERT {L} layers, hidden {args.hidden}, {n_params / 1e6:.1f}M '
        f'params; batch {args.batch} x {args.seq}; best of {args.steps} steps')

  config = base_config()
  config.train.num_steps = 1000
  launcher = parallel.make_launcher('shard_map', jax.devices()[:1])

  flops = {}

  def train_step(preset: str) -> Callable[[], Any]:
    config.transfer.freeze_preset = preset
    core = TrainCore(config, module, params, launcher=launcher)
    carry = [core.init_state(params, rng=0)]
    flops[preset] = cost(core.train_fn(0), carry[0], launcher.put_batch(batch), None)

    def one():
      carry[0], m = core.train_step(carry[0], batch)
      return m['loss']
    return one, core.schedule.trainable(0)

  def by_hand(trainable) -> Callable[[], Any]:
    """The same single program written by hand: jax.grad w.r.t. the trainable subtree only,
    optax clip + adamw. Separates what the one-program approach costs from what TrainCore adds."""
    train, frozen = freezing.split_trainable(params, trainable)
    train = jax.tree.map(jnp.copy, train)  # donated below: not the shared params' buffers
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(1e-5, weight_decay=config.optimizer.weight_decay))
    carry = [train, tx.init(train)]

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(t, s, frozen, ids, mask, labels):
      def loss(t):
        out = module.apply({'params': freezing.merge(t, frozen)}, input_ids=ids,
                           attention_mask=mask)
        return optax.softmax_cross_entropy_with_integer_labels(out.logits, labels).mean()
      u, s = tx.update(jax.grad(loss)(t), s, t)
      return optax.apply_updates(t, u), s

    def one():
      carry[:] = step(*carry, frozen, ids, mask, labels)
      return carry[0]
    return one

  # Forward of the whole model: the frozen part's cost in any freezing plan.
  @jax.jit
  def forward_loss(p, ids, mask, labels):
    logits = module.apply({'params': p}, input_ids=ids, attention_mask=mask).logits
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  x = jax.random.normal(jax.random.key(2), (args.batch, args.seq, args.hidden))
  bias = layers_lib.attention_bias(jnp.asarray(mask))
  pooled = jax.random.normal(jax.random.key(3), (args.batch, args.hidden))

  flops['forward'] = cost(forward_loss, params, ids, mask, labels)
  calls = {'forward': lambda: forward_loss(params, ids, mask, labels),
           'all': train_step('all')[0]}
  cases = [f'bottom:{k}' for k in (L // 2, L - 1)] + ['head_only']
  for preset in cases:
    calls[preset], trainable = train_step(preset)
    calls[f'{preset}/by_hand'] = by_hand(trainable)
    if preset == 'head_only':  # the top is the head alone, on the pooled output
      top = top_only(cfg, 0, False, (pooled[:, None, :], None), labels, config.optimizer)
    else:
      top = top_only(cfg, L - int(preset.split(':')[1]), True, (x, bias), labels,
                     config.optimizer)
    calls[f'{preset}/top_step'], calls[f'{preset}/top_forward'], top_flops = top
    flops[f'{preset}/ideal'] = flops['forward'] + top_flops
  t = best_times(calls, args.steps)

  t_fwd, t_full = t['forward'], t['all']
  print(f'forward only: {t_fwd * 1e3:7.1f} ms {flops["forward"] / 1e9:6.2f} GFLOP   '
        f'full fine-tune step: {t_full * 1e3:7.1f} ms {flops["all"] / 1e9:6.2f} GFLOP')
  print(f'{"freezing":>12} {"step ms":>9} {"ideal ms":>9} {"step/full":>10} {"ideal/full":>11} '
        f'{"step/ideal":>11} {"step/by-hand":>13} {"GFLOP":>7} {"ideal":>7} '
        f'{"FLOP step/ideal":>16}')
  for preset in cases:
    ideal = t_fwd + t[f'{preset}/top_step'] - t[f'{preset}/top_forward']
    step = t[preset]
    f_step, f_ideal = flops[preset], flops[f'{preset}/ideal']
    print(f'{preset:>12} {step * 1e3:9.1f} {ideal * 1e3:9.1f} {step / t_full:10.3f} '
          f'{ideal / t_full:11.3f} {step / ideal:11.3f} {step / t[f"{preset}/by_hand"]:13.3f} '
          f'{f_step / 1e9:7.2f} {f_ideal / 1e9:7.2f} {f_step / f_ideal:16.3f}')


if __name__ == '__main__':
  harness.run(main, timed=True)
