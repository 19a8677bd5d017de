"""Meta-learning for few-shot tasks: MAML (second- and first-order, Finn et al. 2017) and Reptile
(Nichol et al. 2018), over any `loss_fn(params, x, y) -> scalar` (a small MLP, a head on frozen
backbone features, ...).

  meta = MetaLearner(loss_fn, inner_lr=0.01, inner_steps=5, method='maml')  # fomaml | reptile
  params, opt_state = meta.init(params, optax.adam(1e-3))
  params, opt_state, loss = meta.step(params, opt_state, tasks)   # jitted; tasks: Tasks [T, ...]
  adapted = meta.adapt(params, support_x, support_y)              # k inner SGD steps (lax.scan)

A task batch is support (x, y) and query (x, y), each with a leading task axis; the meta step
vmaps over tasks. MAML differentiates through the inner loop; first-order MAML stops the
gradient through the inner updates (so d adapted / d params = I); Reptile moves params toward
the adapted ones: g = params − adapted, fed to the outer optax optimizer as a gradient.

Task samplers: `sinusoid_tasks` (the paper's regression family) and `class_episodes` (N-way
K-shot episodes from a dataset's classes, on features).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

METHODS = ('maml', 'fomaml', 'reptile')


def default_config() -> mlc.ConfigDict:
  """config.transfer.maml (experiments/meta.py)."""
  return mlc.ConfigDict(dict(
      task='sinusoid',  # sinusoid | digits (N-way episodes of 8×8 digit classes)
      train_classes=(0, 1, 2, 3, 4), test_classes=(5, 6, 7, 8, 9),  # classification tasks
      methods=('maml', 'fomaml', 'reptile'),
      hidden=(40, 40),  # MLP widths
      k_shot=10, n_query=10, n_way=5,  # n_way: classification tasks only
      inner_lr=0.02, inner_steps=1, outer_lr=3e-3, meta_steps=2000, tasks_per_step=10,
      reptile_inner_steps=5, reptile_outer_lr=3e-3,
      # Baselines: the same MLP trained jointly on all tasks' examples (same step count), and
      # the random init; each fine-tuned at its best of these learning rates.
      baseline_lrs=(0.02, 0.005, 0.001),
      eval_steps=(1, 5, 10), eval_tasks=200,
      seeds=(0, 1, 2),
  ))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Tasks:
  support_x: jax.Array
  support_y: jax.Array
  query_x: jax.Array
  query_y: jax.Array


def sgd_adapt(loss_fn: Callable, params: Any, x, y, *, lr: float, steps: int,
              first_order: bool = False) -> Any:
  """`steps` SGD steps on loss_fn(params, x, y) in a lax.scan; first_order stops the gradient
  through each inner gradient (FOMAML)."""
  def body(p, _):
    g = jax.grad(loss_fn)(p, x, y)
    if first_order:
      g = jax.lax.stop_gradient(g)
    return jax.tree.map(lambda a, b: a - lr * b, p, g), None
  params, _ = jax.lax.scan(body, params, None, length=steps)
  return params


def maml_loss(loss_fn: Callable, params, tasks: Tasks, *, inner_lr: float, inner_steps: int,
              first_order: bool) -> jax.Array:
  """Mean over tasks of the query loss after adapting on the support set."""
  def one(sx, sy, qx, qy):
    adapted = sgd_adapt(loss_fn, params, sx, sy, lr=inner_lr, steps=inner_steps,
                        first_order=first_order)
    return loss_fn(adapted, qx, qy)
  return jnp.mean(jax.vmap(one)(tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y))


@dataclasses.dataclass
class MetaLearner:
  loss_fn: Callable
  inner_lr: float = 0.01
  inner_steps: int = 5
  method: str = 'maml'

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f'method={self.method!r}; choose one of {METHODS}')

  def meta_grad(self, params, tasks: Tasks) -> tuple[jax.Array, Any]:
    """(meta loss, gradient-like update direction) for one task batch."""
    if self.method == 'reptile':
      # Reptile adapts on support + query; the loss reported is the query loss after it.
      x = jnp.concatenate([tasks.support_x, tasks.query_x], axis=1)
      y = jnp.concatenate([tasks.support_y, tasks.query_y], axis=1)
      adapted = jax.vmap(lambda a, b: sgd_adapt(self.loss_fn, params, a, b, lr=self.inner_lr,
                                                steps=self.inner_steps))(x, y)
      mean_adapted = jax.tree.map(lambda a: a.mean(0), adapted)
      grads = jax.tree.map(lambda p, a: p - a, params, mean_adapted)
      loss = jnp.mean(jax.vmap(self.loss_fn, in_axes=(0, 0, 0))(adapted, tasks.query_x,
                                                                  tasks.query_y))
      return loss, grads
    return jax.value_and_grad(maml_loss, argnums=1)(
        self.loss_fn, params, tasks, inner_lr=self.inner_lr, inner_steps=self.inner_steps,
        first_order=self.method == 'fomaml')

  def init(self, params, tx: optax.GradientTransformation):
    """Sets the outer optimizer; returns (params, its state)."""
    self._tx = tx
    self._step = jax.jit(self.step_fn)
    return params, tx.init(params)

  def step_fn(self, params, opt_state, tasks: Tasks):
    """The outer step, unjitted (for use inside a larger jit); call init first."""
    loss, grads = self.meta_grad(params, tasks)
    updates, opt_state = self._tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def step(self, params, opt_state, tasks: Tasks):
    """One jitted outer step (call init first)."""
    return self._step(params, opt_state, tasks)

  def adapt(self, params, x, y, steps: int | None = None):
    return sgd_adapt(self.loss_fn, params, x, y, lr=self.inner_lr,
                     steps=self.inner_steps if steps is None else steps)


def meta_train(meta: MetaLearner, params, sample_tasks: Callable[[np.random.Generator], Tasks],
               *, outer_lr: float, meta_steps: int, seed: int = 0,
               chunk: int = 100) -> tuple[Any, list[float]]:
  """Outer loop: Adam on the meta gradient over `meta_steps` task batches from the sampler,
  `chunk` steps per jitted lax.scan (task batches sampled ahead for each chunk)."""
  params, opt_state = meta.init(params, optax.adam(outer_lr))
  rng = np.random.default_rng(seed)

  @jax.jit
  def run(params, opt_state, tasks):
    def body(carry, t):
      params, opt_state, loss = meta.step_fn(*carry, t)
      return (params, opt_state), loss
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), tasks)
    return params, opt_state, losses

  losses = []
  for start in range(0, meta_steps, chunk):
    n = min(chunk, meta_steps - start)
    tasks = jax.tree.map(lambda *a: jnp.stack(a), *[sample_tasks(rng) for _ in range(n)])
    params, opt_state, chunk_losses = run(params, opt_state, tasks)
    losses.append(chunk_losses)
  return params, [float(l) for l in np.concatenate(jax.device_get(losses))]


def joint_train(loss_fn: Callable, params, sample_tasks: Callable[[np.random.Generator], Tasks],
                *, lr: float, steps: int, seed: int = 0) -> Any:
  """The baseline init: ordinary training on the pooled examples of all tasks."""
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, tasks):
    x = jnp.concatenate([tasks.support_x, tasks.query_x], 1).reshape(-1, *tasks.query_x.shape[2:])
    y = jnp.concatenate([tasks.support_y, tasks.query_y], 1).reshape(-1, *tasks.query_y.shape[2:])
    grads = jax.grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    params, opt_state = step(params, opt_state, sample_tasks(rng))
  return params


def adapted_query_loss(loss_fn: Callable, params, tasks: Tasks, *, lr: float,
                       steps: int, metric: Callable | None = None) -> float:
  """Mean query loss (or `metric(params, x, y)`) after `steps` inner SGD steps, over tasks."""
  return float(_adapted_query_loss(loss_fn, metric or loss_fn, steps, params, tasks,
                                   jnp.float32(lr)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _adapted_query_loss(loss_fn, metric, steps, params, tasks, lr):
  def one(sx, sy, qx, qy):
    return metric(sgd_adapt(loss_fn, params, sx, sy, lr=lr, steps=steps), qx, qy)
  return jnp.mean(jax.vmap(one)(tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y))


# -------------------------------------------------------------------------------------------
# Models and task families.
# -------------------------------------------------------------------------------------------

def mlp_init(key: jax.Array, sizes: tuple[int, ...],
             scale: float = 1.0) -> list[tuple[jax.Array, jax.Array]]:
  """Lecun-normal weights times `scale`, zero biases."""
  keys = jax.random.split(key, len(sizes) - 1)
  return [(jax.random.normal(k, (a, b)) * scale / jnp.sqrt(a), jnp.zeros(b))
          for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp_apply(params, x: jax.Array) -> jax.Array:
  for w, b in params[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = params[-1]
  return x @ w + b


def mse_loss(params, x, y) -> jax.Array:
  return jnp.mean((mlp_apply(params, x) - y) ** 2)


def ce_loss(params, x, y) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(params, x), y).mean()


def accuracy(params, x, y) -> jax.Array:
  return jnp.mean(jnp.argmax(mlp_apply(params, x), -1) == y)


def sinusoid_tasks(rng: np.random.Generator, num_tasks: int, k_shot: int = 10,
                   n_query: int = 10) -> Tasks:
  """Finn et al.'s family: y = A sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π], x ∈ [−5, 5]."""
  amp = rng.uniform(0.1, 5.0, (num_tasks, 1, 1))
  phase = rng.uniform(0.0, np.pi, (num_tasks, 1, 1))
  x = rng.uniform(-5.0, 5.0, (num_tasks, k_shot + n_query, 1))
  y = amp * np.sin(x - phase)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  return Tasks(f32(x[:, :k_shot]), f32(y[:, :k_shot]), f32(x[:, k_shot:]), f32(y[:, k_shot:]))


def class_episodes(features: np.ndarray, labels: np.ndarray, classes, rng: np.random.Generator,
                   num_tasks: int, *, n_way: int, k_shot: int, n_query: int) -> Tasks:
  """N-way K-shot episodes over `classes` of a dataset (features [N, D]), labels 0..N−1 in a
  fresh random order per task (so no class owns an output unit)."""
  classes = np.asarray(classes)
  members = {int(c): np.flatnonzero(labels == c) for c in classes}
  sx, sy, qx, qy = [], [], [], []
  for _ in range(num_tasks):
    chosen = rng.choice(classes, n_way, replace=False)
    s_idx, q_idx = [], []
    for c in chosen:
      pick = rng.choice(members[int(c)], k_shot + n_query, replace=False)
      s_idx.append(pick[:k_shot])
      q_idx.append(pick[k_shot:])
    sx.append(features[np.concatenate(s_idx)])
    qx.append(features[np.concatenate(q_idx)])
    sy.append(np.repeat(np.arange(n_way), k_shot))
    qy.append(np.repeat(np.arange(n_way), n_query))
  return Tasks(jnp.asarray(np.stack(sx), jnp.float32), jnp.asarray(np.stack(sy), jnp.int32),
               jnp.asarray(np.stack(qx), jnp.float32), jnp.asarray(np.stack(qy), jnp.int32))
