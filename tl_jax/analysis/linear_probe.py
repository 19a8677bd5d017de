"""Linear probe: softmax regression with L2 on (cached) frozen-backbone features, trained by optax.

  probe = train_probe(train.x, train.y, num_classes, l2=1e-3, num_steps=300)
  accuracy(probe, test.x, test.y)

Features are standardised with the training mean/std (stored in the probe). One "epoch" is one
jitted `lax.scan` over minibatches (batch_size 0 = full batch, one step per epoch); the bench
(experiments/bench_linear_probe.py) times `epoch_fn` on the cache against the same epoch with the
backbone forward in it (`backbone_epoch`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax


def default_config() -> mlc.ConfigDict:
  """config.transfer.linear_probe: features (what to cache) and the probe's optimisation."""
  return mlc.ConfigDict(dict(
      cache_dir='runs/feature_cache',  # '' = memory only
      layer=-100,  # -100 = the model's pooled output; k = hidden state k (0 = embeddings)
      train_split='train',
      eval_split='test',
      train_limit=0,  # first N training examples only (0 = all)
      l2=1e-3,  # on the weights, not the bias
      learning_rate=0.05,
      num_steps=300,  # epochs; full batch: one step each
      batch_size=0,  # 0 = full batch
      seed=0,
      inits=('pretrained', 'random'),  # experiments/linear_probe.py: backbones to compare
  ))


def layer_from_config(cfg) -> int | None:
  return None if cfg.layer == -100 else int(cfg.layer)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Probe:
  w: jax.Array  # [D, C]
  b: jax.Array  # [C]
  mean: jax.Array  # [D] standardisation
  std: jax.Array


def logits(probe: Probe, x: jax.Array) -> jax.Array:
  return ((x - probe.mean) / probe.std) @ probe.w + probe.b


def loss_fn(wb, x, y, l2: float, weights: jax.Array | None = None) -> jax.Array:
  """Mean cross-entropy (weighted by `weights` when given) + ½·l2·‖W‖²."""
  w, b = wb
  ce = optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y)
  ce = ce.mean() if weights is None else jnp.sum(weights * ce) / jnp.sum(weights)
  return ce + 0.5 * l2 * jnp.sum(w * w)


def make_epoch_fn(tx: optax.GradientTransformation, l2: float, batch_size: int,
                  num_examples: int) -> Callable:
  """Jitted `(wb, opt_state, x, y, key) -> (wb, opt_state, mean loss)`: one pass over the data
  (standardised x) in shuffled minibatches (the last partial batch dropped), or one full-batch
  step when batch_size is 0 or >= num_examples."""
  full = batch_size <= 0 or batch_size >= num_examples
  steps = 1 if full else num_examples // batch_size

  def step(carry, idx):
    wb, opt_state, x, y = carry
    xb, yb = (x, y) if full else (x[idx], y[idx])
    loss, grads = jax.value_and_grad(loss_fn)(wb, xb, yb, l2)
    updates, opt_state = tx.update(grads, opt_state, wb)
    return (optax.apply_updates(wb, updates), opt_state, x, y), loss

  @jax.jit
  def epoch(wb, opt_state, x, y, key):
    if full:
      order = jnp.zeros((1, 1), jnp.int32)
    else:
      order = jax.random.permutation(key, num_examples)[:steps * batch_size]
      order = order.reshape(steps, batch_size)
    (wb, opt_state, _, _), losses = jax.lax.scan(step, (wb, opt_state, x, y), order)
    return wb, opt_state, losses.mean()

  return epoch


@functools.partial(jax.jit, static_argnames=('num_epochs', 'epoch'))
def _train(wb, opt_state, x, y, key, *, num_epochs: int, epoch: Callable):
  def body(carry, k):
    wb, opt_state = carry
    wb, opt_state, loss = epoch(wb, opt_state, x, y, k)
    return (wb, opt_state), loss
  (wb, _), losses = jax.lax.scan(body, (wb, opt_state), jax.random.split(key, num_epochs))
  return wb, losses


def standardizer(x: np.ndarray) -> tuple[jax.Array, jax.Array]:
  x = jnp.asarray(x, jnp.float32)
  return x.mean(0), x.std(0) + 1e-6


def train_probe(x: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = 1e-3,
                learning_rate: float = 0.05, num_steps: int = 300, batch_size: int = 0,
                seed: int = 0) -> Probe:
  """A trained softmax-regression probe (Adam; `num_steps` epochs) on features x [N, D]."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.int32)
  if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
    raise ValueError(f'train_probe needs x [N, D] and y [N] with N > 0, got {x.shape}, {y.shape}')
  mean, std = standardizer(x)
  tx = optax.adam(learning_rate)
  wb = (jnp.zeros((x.shape[1], num_classes), jnp.float32), jnp.zeros((num_classes,), jnp.float32))
  epoch = make_epoch_fn(tx, float(l2), int(batch_size), len(x))
  wb, _ = _train(wb, tx.init(wb), (x - mean) / std, y, jax.random.key(seed),
                 num_epochs=int(num_steps), epoch=epoch)
  return Probe(wb[0], wb[1], mean, std)


def train_from_config(x, y, num_classes: int, cfg) -> Probe:
  return train_probe(x, y, num_classes, l2=cfg.l2, learning_rate=cfg.learning_rate,
                     num_steps=cfg.num_steps, batch_size=cfg.batch_size, seed=cfg.seed)


def predict_proba(probe: Probe, x: np.ndarray) -> np.ndarray:
  return np.asarray(jax.nn.softmax(logits(probe, jnp.asarray(x, jnp.float32)), -1))


def accuracy(probe: Probe, x: np.ndarray, y: np.ndarray) -> float:
  pred = np.asarray(jnp.argmax(logits(probe, jnp.asarray(x, jnp.float32)), -1))
  return float(np.mean(pred == np.asarray(y)))


# -------------------------------------------------------------------------------------------
# For the benchmark: the same epoch, with the backbone recomputed for every batch.
# -------------------------------------------------------------------------------------------

def backbone_epoch_fn(feature_fn: Callable, tx: optax.GradientTransformation, l2: float,
                      mean: jax.Array, std: jax.Array) -> Callable:
  """Jitted `(params, wb, opt_state, batch) -> (wb, opt_state, loss)`: backbone forward on one
  batch of inputs, then one probe step; a Python loop over batches makes an epoch."""

  @jax.jit
  def step(params, wb, opt_state, inputs, labels):
    x = (feature_fn(params, inputs) - mean) / std
    loss, grads = jax.value_and_grad(loss_fn)(wb, x, labels, l2)
    updates, opt_state = tx.update(grads, opt_state, wb)
    return optax.apply_updates(wb, updates), opt_state, loss

  return step


def backbone_epoch(step: Callable, params: Any, wb, opt_state,
                   batches: Sequence[tuple[dict[str, Any], Any]]):
  """One epoch over pre-tokenised (inputs, labels) batches; blocks until done."""
  for inputs, labels in batches:
    wb, opt_state, loss = step(params, wb, opt_state, inputs, labels)
  jax.block_until_ready(wb)
  return wb, opt_state, loss


def fit_full_batch(x: jax.Array, y: jax.Array, num_classes: int, *, l2: float = 1e-3,
                   learning_rate: float = 0.05, num_steps: int = 100,
                   weights: jax.Array | None = None, standardize: bool = True) -> Probe:
  """Pure full-batch fit (jit- and vmap-able, e.g. over few-shot episodes); `weights` weight the
  examples' cross-entropy (TrAdaBoost's base learner); standardize=False fits x as given."""
  if standardize:
    mean, std = standardizer(x)
  else:
    mean, std = jnp.zeros(x.shape[-1], jnp.float32), jnp.ones(x.shape[-1], jnp.float32)
  xs = (x - mean) / std
  tx = optax.adam(learning_rate)
  wb = (jnp.zeros((x.shape[-1], num_classes), jnp.float32), jnp.zeros((num_classes,), jnp.float32))

  def body(_, carry):
    wb, opt_state = carry
    grads = jax.grad(loss_fn)(wb, xs, y, l2, weights)
    updates, opt_state = tx.update(grads, opt_state, wb)
    return optax.apply_updates(wb, updates), opt_state

  wb, _ = jax.lax.fori_loop(0, num_steps, body, (wb, tx.init(wb)))
  return Probe(wb[0], wb[1], mean, std)


# fit_full_batch compiled once per shape (host loops such as TrAdaBoost's rounds call it often).
fit_full_batch_jit = jax.jit(fit_full_batch,
                             static_argnames=('num_classes', 'num_steps', 'standardize'))
