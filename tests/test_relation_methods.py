"""Relation-based transfer: relational KD (distance and angle relations) against numpy loops,
hidden-state and attention distillation from the frozen pretrained model, all through
TrainCore from configs/distill_bbc.py."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.config import base_config
from tl_jax.models.forward import forward
from tl_jax.methods import distill, objectives
from tl_jax.train import freezing

from test_param_methods import load_config, synthetic_batch, tiny_model, train_tiny


def huber_np(x):
  return np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)


def rkd_reference(s, t):
  """Park et al. 2019 by hand: loops over pairs i≠j and triplets of distinct i, j, k."""
  n = len(s)
  pairs = [(i, j) for i in range(n) for j in range(n) if i != j]

  def psi_d(x):
    d = {p: np.linalg.norm(x[p[0]] - x[p[1]]) for p in pairs}
    mu = np.mean(list(d.values()))
    return {p: v / mu for p, v in d.items()}

  def psi_a(x, i, j, k):
    e1 = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
    e2 = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
    return e1 @ e2

  ds, dt = psi_d(s), psi_d(t)
  dist = np.mean([huber_np(ds[p] - dt[p]) for p in pairs])
  triplets = list(itertools.permutations(range(n), 3))
  angle = np.mean([huber_np(psi_a(s, *c) - psi_a(t, *c)) for c in triplets])
  return dist, angle


def test_rkd_distance_and_angle_losses_match_the_hand_computed_ones():
  rs = np.random.RandomState(0)
  s = rs.randn(5, 3)
  t = rs.randn(5, 3) * 2.0  # distances of a different scale: ψ_D normalises it away
  dist, angle = distill.rkd_losses(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32))
  ref_dist, ref_angle = rkd_reference(s, t)
  np.testing.assert_allclose(dist, ref_dist, rtol=1e-5)
  np.testing.assert_allclose(angle, ref_angle, rtol=1e-5)
  assert ref_dist > 0.01 and ref_angle > 0.01

  # Padding rows (valid False) are left out: the same as the loss on the real rows only.
  valid = np.array([1, 1, 0, 1, 1], bool)
  junk = s.copy()
  junk[2] = 1e3
  masked = distill.rkd_losses(jnp.asarray(junk, jnp.float32), jnp.asarray(t, jnp.float32),
                              jnp.asarray(valid))
  np.testing.assert_allclose(masked, rkd_reference(s[valid], t[valid]), rtol=1e-5)

  # Zero (and a finite, zero gradient) when the student equals the teacher; scale-invariant.
  same, grad = jax.value_and_grad(lambda x: sum(distill.rkd_losses(x, jnp.asarray(t) * 3.0)))(
      jnp.asarray(t, jnp.float32))
  assert float(same) == pytest.approx(0.0, abs=1e-7)
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() < 1e-4


def test_hidden_state_distillation_is_zero_at_init_and_grows_with_a_perturbation():
  module, params = tiny_model(output_hidden_states=True)
  batch = synthetic_batch(n=4)
  batch['attention_mask'][:, -2:] = 0  # padded tokens do not count
  config = base_config()
  config.transfer.distill = distill.default_config()
  pretrained = freezing.flatten(params)

  def loss(student_params):
    out = forward(module, student_params, batch, train=False)
    ctx = objectives.Context(
        outputs={'target': out}, batches={'target': batch}, params=student_params,
        trainable={}, pretrained=pretrained, step=jnp.int32(0), lam=jnp.float32(1.0),
        config=config, axis_name=None, forward=lambda p, b: forward(module, p, b, train=False))
    return distill.hidden_distill(ctx)[0]

  eager_loss, loss = loss, jax.jit(loss)  # eager flax is slow
  hidden = jax.jit(lambda p: forward(module, p, batch, train=False).hidden_states[-1])
  assert float(loss(params)) == pytest.approx(0.0, abs=1e-10)  # student and teacher agree
  flat = dict(pretrained)
  name = 'encoder/layer/1/output/dense/kernel'
  flat[name] = flat[name] + 0.1
  perturbed = freezing.unflatten(flat)
  value = float(loss(perturbed))
  # Only the last hidden state moved: the mean over the 3 states is a third of its masked MSE.
  s, t = hidden(perturbed), hidden(params)
  err = np.mean((np.asarray(s) - np.asarray(t)) ** 2, -1)[:, :-2]
  assert value > 0 and value == pytest.approx(err.mean() / 3, rel=1e-4)
  grads = jax.grad(loss)(perturbed)
  assert np.abs(freezing.flatten(grads)[name]).max() > 0

  config.transfer.distill.layers = (7,)
  with pytest.raises(objectives.ObjectiveError, match=r'layers \[7\] out of range'):
    eager_loss(params)


def test_distill_configs_train_through_the_core():
  model = tiny_model()  # no hidden_states asked: the step asks for them itself
  batches = [{'target': synthetic_batch(seed=i)} for i in range(3)]
  _, _, metrics = train_tiny(load_config('distill_bbc.py:hidden'), model, batches)
  assert metrics[0]['distill/hidden_mse'] == pytest.approx(0.0, abs=1e-10)  # starts as teacher
  assert metrics[-1]['distill/hidden_mse'] > 0
  _, _, metrics = train_tiny(load_config('distill_bbc.py:rkd'), model, batches)
  assert metrics[0]['rkd/distance'] == pytest.approx(0.0, abs=1e-6)
  assert metrics[-1]['rkd/distance'] > 0 and metrics[-1]['rkd/angle'] > 0
  assert all(m['is_finite'] == 1 for m in metrics)
  _, _, metrics = train_tiny(load_config('distill_bbc.py:attention'), model, batches)
  assert metrics[0]['distill/attention_kl'] == pytest.approx(0.0, abs=1e-7)
  assert metrics[-1]['distill/attention_kl'] > 0
  assert all(m['is_finite'] == 1 for m in metrics)
  with pytest.raises(ValueError, match='choose one of'):
    load_config('distill_bbc.py:bogus')


def test_attention_kl_matches_numpy_with_padding_and_has_finite_gradients():
  rs = np.random.RandomState(0)
  shape = (3, 2, 5, 5)  # (B, heads, L, L)
  mask = np.ones((3, 5), np.float32)
  mask[1, 3:] = 0  # padded keys: zero probability in both, padded queries: left out

  def probs(scale):
    logits = rs.randn(*shape) * scale + np.where(mask[:, None, None, :] > 0, 0, -1e9)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)
  s, t = [probs(1.0), probs(0.5)], [probs(2.0), probs(1.0)]
  ref = []
  for si, ti in zip(s, t):
    rows = []
    for b in range(3):
      for q in range(5):
        if mask[b, q]:
          keys = mask[b] > 0
          rows.append(np.mean([np.sum(ti[b, h, q, keys] * np.log(ti[b, h, q, keys]
                                                                 / si[b, h, q, keys]))
                               for h in range(2)]))
    ref.append(np.mean(rows))
  as_jnp = lambda xs: tuple(jnp.asarray(x, jnp.float32) for x in xs)
  value = distill.attention_kl(as_jnp(s), as_jnp(t), jnp.asarray(mask))
  np.testing.assert_allclose(value, np.mean(ref), rtol=1e-5)
  np.testing.assert_allclose(distill.attention_kl(as_jnp(s), as_jnp(t), jnp.asarray(mask),
                                                  layers=(1,)), ref[1], rtol=1e-5)
  assert min(ref) > 0.01
  # The student's gradient is finite even where it puts zero mass (the padded keys).
  grad = jax.grad(lambda x: distill.attention_kl((x, x), as_jnp(t), jnp.asarray(mask)))(
      as_jnp(s)[0])
  assert np.all(np.isfinite(grad))


def test_attention_distillation_keeps_attention_closer_to_the_teacher_than_fine_tuning():
  """The same fine-tuning run with and without the attention term: the term must keep every
  layer's attention maps closer to the pretrained model's (the effect it exists for)."""
  module, params = model = tiny_model()
  batches = [{'target': synthetic_batch(seed=i, position=3)} for i in range(8)]
  watch = tiny_model(output_attentions=True)[0]
  teacher = watch.apply({'params': params}, batches[0]['target']['input_ids']).attentions

  def attention_drift(config):
    _, final, _ = train_tiny(config, model, batches)
    student = watch.apply({'params': freezing.unflatten(final)},
                          batches[0]['target']['input_ids']).attentions
    return float(distill.attention_kl(student, teacher, None))

  plain = load_config('finetune_bbc.py', steps=8, lr=3e-2)
  distilled = load_config('distill_bbc.py:attention', steps=8, lr=3e-2)
  distilled.transfer.distill.attention_weight = 10.0
  drift_plain, drift_distilled = attention_drift(plain), attention_drift(distilled)
  assert drift_plain > 1e-3
  assert drift_distilled < 0.5 * drift_plain, (drift_distilled, drift_plain)
