"""One command to run the moment an accelerator is available: is tl_jax correct and fast on it?

  python experiments/device_check.py [--out=runs/device_check]       (~5 min on one GPU)
  python experiments/device_check.py --smoke      (the script itself, on any machine, ~2 min)

Three checks, each printed as PASS / FAIL / INFO with what was expected:
  1. devices   jax sees an accelerator (not the CPU fallback).
  2. training  the default job (MiniLM -> BBC News) for `--steps` steps on it: the loss falls,
               every step is finite, the export is written.
  3. speed     experiments/bench_step.py on BERT-base, bf16, batch 32 x 512, tl_jax vs HF Flax:
               s/step, peak device memory and MFU (from the chip's dense bf16 peak).
Expected on one H100/H200 (not yet observed: no accelerator has run this script): check 1 and 2
PASS; MFU of the tl_jax bf16 full step above 25 %; tl_jax at least as fast as HF Flax, with its
peak device memory no higher. The figures land in OUT/device_check.txt.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

from absl import flags

from tl_jax import harness

harness.setup()  # before jax is imported

_OUT = harness.define_out('device_check')
_STEPS = flags.DEFINE_integer('steps', 40, 'train steps of the default job')
_SMOKE = flags.DEFINE_bool('smoke', False, 'check the script itself on any machine (the CPU '
                           'counts as a device; 10 steps; the speed check on MiniLM at 2 x 16)')
HERE = pathlib.Path(__file__).resolve().parent


def check_devices(report) -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  ok = devices[0].platform != 'cpu' or _SMOKE.value
  report('PASS' if ok else 'FAIL', 'devices', f'{len(devices)} x {devices[0].device_kind} '
         f'({devices[0].platform}); expected an accelerator, not the CPU'
         + (' (--smoke: the CPU counts)' if _SMOKE.value else ''))
  return ok


def check_training(report) -> None:
  from tl_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from tl_jax.sweep import results  # pylint: disable=g-import-not-at-top
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = config_lib.from_file(harness.config_path('default.py'))
  config.train.num_steps = 10 if _SMOKE.value else _STEPS.value
  config.train.log_every = 1
  config.train.eval_every = config.train.checkpoint_every = config.train.num_steps
  config.transfer.stages = ((0, 'top:2'), (config.train.num_steps // 2, 'bottom:1'))
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, config.train.num_steps - 1)
  workdir = pathlib.Path(tempfile.mkdtemp(prefix='device_check_'))
  final = loop.train(config, str(workdir))
  train, _ = results.read_history(workdir)
  losses = [r['loss'] for r in train if 'loss' in r]
  falls = len(losses) > 1 and losses[-1] < losses[0]
  exported = (workdir / 'export' / 'config.json').exists()
  report('PASS' if falls and exported else 'FAIL', 'training',
         f'loss {losses[0]:.3f} -> {losses[-1]:.3f} over {config.train.num_steps} steps, export '
         f'{"written" if exported else "MISSING"}, test accuracy '
         f'{final.get("target/test/accuracy", float("nan")):.4f}; expected a falling loss and '
         'an export')


def check_speed(report) -> None:
  size = (['--model=minilm', '--batch=2', '--seq=16', '--steps=1', '--rounds=1']
          if _SMOKE.value else
          ['--model=bert-base', '--batch=32', '--seq=512', '--steps=5', '--rounds=3'])
  argv = [sys.executable, str(HERE / 'bench_step.py'), '--frameworks=tl_jax,hf_flax',
          '--dtypes=bfloat16', '--modes=full', '--noideal', *size]
  out = subprocess.run(argv, capture_output=True, text=True, check=False)
  lines = [l for l in out.stdout.splitlines()
           if l.startswith(('|', '  vs ', 'tl_jax ', 'machine', 'WARNING'))]
  report('INFO' if out.returncode == 0 else 'FAIL', 'speed',
         '\n'.join(lines) or out.stderr[-2000:])


def main(argv) -> None:
  del argv
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  lines = []

  def report(verdict: str, name: str, text: str) -> None:
    line = f'[{verdict}] {name}: {text}'
    print(line, flush=True)
    lines.append({'verdict': verdict, 'check': name, 'text': text})

  if check_devices(report):
    check_training(report)
    check_speed(report)
  (out / 'device_check.txt').write_text('\n'.join(f'[{l["verdict"]}] {l["check"]}: {l["text"]}'
                                                  for l in lines) + '\n')
  (out / 'device_check.json').write_text(json.dumps(lines, indent=1))
  if any(l['verdict'] == 'FAIL' for l in lines):
    raise SystemExit(1)


if __name__ == '__main__':
  harness.run(main)
