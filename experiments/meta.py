"""Meta-learning table (tl_jax/analysis/maml.py): MAML, first-order MAML and Reptile vs a jointly
trained init and a random init, each fine-tuned on NEW tasks for k SGD steps.

  python experiments/meta.py --config=configs/maml_sinusoid.py [--out=runs/meta_sinusoid]
  python experiments/meta.py --config=configs/maml_digits.py   [--out=runs/meta_digits]

sinusoid: 10-shot regression, metric = query MSE after k steps (lower is better).
digits:   N-way 1-shot episodes of 8×8 digits (pixels / 16 as features), meta-trained on
          transfer.maml.train_classes, tested on the unseen test_classes; metric = query
          accuracy.
Every init is fine-tuned at its best of {inner_lr} ∪ baseline_lrs, per k (chosen on the test
tasks: the same generous protocol for all; an init whose fine-tuning diverges at the meta-training
lr for more steps than it was trained for still gets a stable lr). Seeds set the init, the
training tasks and the test tasks. Writes table.md, results.json and meta.png into --out.
"""

from __future__ import annotations

import pathlib

from absl import app, flags

from tl_jax import harness

harness.setup()  # before jax is imported

from tl_jax import report  # noqa: E402

_CONFIG = harness.define_config('maml_sinusoid.py')
_OUT = flags.DEFINE_string('out', '', 'output folder (default runs/meta_<task>)')


def digits_features(config):
  """(pixels [N, 64] in 0..1, labels) of the digits train split through the TFDS source."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tl_jax.data import sources  # pylint: disable=g-import-not-at-top
  info = sources.info(config.data.target.name, config.data.data_dir)
  source = sources.data_source(info.name, 'train', config.data.data_dir)
  records = source.__getitems__(list(range(len(source))))
  x = np.stack([np.asarray(r[info.image_key], np.float32).reshape(-1) for r in records])
  y = np.asarray([int(r[info.label_key]) for r in records])
  return x / max(float(x.max()), 1.0), y


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tl_jax.analysis import maml  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  m = config.transfer.maml
  out = pathlib.Path(_OUT.value or f'runs/meta_{m.task}')
  out.mkdir(parents=True, exist_ok=True)

  if m.task == 'sinusoid':
    sizes = (1, *m.hidden, 1)
    loss_fn, metric, metric_name, better = maml.mse_loss, maml.mse_loss, 'query MSE', min
    train_tasks = lambda rng: maml.sinusoid_tasks(rng, m.tasks_per_step, m.k_shot, m.n_query)
    test_tasks = lambda rng: maml.sinusoid_tasks(rng, m.eval_tasks, m.k_shot, m.n_query)
  elif m.task == 'digits':
    x, y = digits_features(config)
    sizes = (x.shape[1], *m.hidden, m.n_way)
    loss_fn, metric, metric_name, better = maml.ce_loss, maml.accuracy, 'query accuracy', max
    episodes = lambda classes, n: lambda rng: maml.class_episodes(
        x, y, classes, rng, n, n_way=m.n_way, k_shot=m.k_shot, n_query=m.n_query)
    train_tasks = episodes(m.train_classes, m.tasks_per_step)
    test_tasks = episodes(m.test_classes, m.eval_tasks)
  else:
    raise app.UsageError(f'transfer.maml.task={m.task!r}; choose sinusoid or digits')

  results = {}  # name -> {k: [per seed]}
  for seed in m.seeds:
    init = maml.mlp_init(jax.random.key(seed), sizes)
    inits = {}
    for method in m.methods:
      reptile = method == 'reptile'
      meta = maml.MetaLearner(loss_fn, inner_lr=m.inner_lr,
                              inner_steps=m.reptile_inner_steps if reptile else m.inner_steps,
                              method=method)
      inits[method], _ = maml.meta_train(
          meta, init, train_tasks, outer_lr=m.reptile_outer_lr if reptile else m.outer_lr,
          meta_steps=m.meta_steps, seed=seed)
    inits['joint training'] = maml.joint_train(loss_fn, init, train_tasks, lr=m.outer_lr,
                                               steps=m.meta_steps, seed=seed)
    inits['random init'] = init
    tasks = test_tasks(np.random.default_rng(10_000 + seed))
    for name, params in inits.items():
      lrs = sorted({m.inner_lr, *m.baseline_lrs})
      for k in m.eval_steps:
        values = [maml.adapted_query_loss(loss_fn, params, tasks, lr=lr, steps=k, metric=metric)
                  for lr in lrs]
        values = [v for v in values if np.isfinite(v)] or [float('nan')]
        results.setdefault(name, {}).setdefault(str(k), []).append(better(values))
    print(f'seed {seed}:', {n: {k: round(v[-1], 4) for k, v in r.items()}
                            for n, r in results.items()}, flush=True)

  ks = [str(k) for k in m.eval_steps]
  rows = ['| init | ' + ' | '.join(f'{k} step{"s" * (k != "1")}' for k in ks) + ' |',
          '|---' * (len(ks) + 1) + '|']
  for name, r in results.items():
    rows.append(f'| {name} | ' + ' | '.join(
        f'{np.mean(r[k]):.4f} ± {np.std(r[k]):.4f}' for k in ks) + ' |')
  table = (f'{m.task}: {metric_name} on {m.eval_tasks} new tasks after k fine-tuning steps, '
           f'mean ± std over seeds {tuple(m.seeds)}\n\n' + '\n'.join(rows))
  harness.write(out, table, results, figure='meta.png',
                plot=lambda r, path: plot(r, path, ks, metric_name, m.task))


def plot(results: dict, path: pathlib.Path, ks, metric_name: str, title: str) -> None:
  """The metric on new tasks vs fine-tuning steps, one line per init."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with report.figure(path, figsize=(5, 3.5), dpi=100) as (_, ax):
    for name, r in results.items():
      ax.errorbar([int(k) for k in ks], [np.mean(r[k]) for k in ks],
                  yerr=[np.std(r[k]) for k in ks], label=name, marker='o', capsize=3)
    ax.set_xlabel('fine-tuning steps on the new task')
    ax.set_ylabel(metric_name)
    ax.set_title(title)
    ax.legend(fontsize=8)


if __name__ == '__main__':
  harness.run(main)
