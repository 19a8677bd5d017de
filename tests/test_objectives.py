"""λ schedules, the objective registry, the joint loss (CE with heads and masks), L2-SP."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tl_jax.config import base_config
from tl_jax.train import parallel
from tl_jax.methods import l2sp, lambdas, objectives


def lam_config(**kw):
  lam = base_config().transfer.lam
  for k, v in kw.items():
    lam[k] = v
  return lam


def values_at(fn, steps):
  jitted = jax.jit(fn)  # pure functions of the step inside jit
  return [float(jitted(jnp.int32(s))) for s in steps]


def test_lambda_schedules_exact_values():
  steps = [0, 5, 10, 50, 100, 200]
  assert values_at(lambdas.from_config(lam_config(value=0.3), 100), steps) == pytest.approx(
      [0.3] * 6, abs=1e-7)
  assert values_at(lambdas.from_config(lam_config(kind='linear', value=2.0, ramp_steps=10), 100),
                   steps) == pytest.approx([0, 1, 2, 2, 2, 2], abs=1e-7)
  # ramp_steps 0 = the whole run
  assert values_at(lambdas.from_config(lam_config(kind='linear', value=1.0), 100),
                   [0, 50, 100]) == pytest.approx([0, 0.5, 1.0], abs=1e-7)
  dann = lambda p: 2 / (1 + math.exp(-10 * p)) - 1
  assert values_at(lambdas.from_config(lam_config(kind='dann', value=1.0, gamma=10.0), 100),
                   steps) == pytest.approx([dann(0), dann(.05), dann(.1), dann(.5), dann(1),
                                            dann(1)], rel=1e-6, abs=1e-7)
  assert dann(0.5) == pytest.approx(0.986614, abs=1e-6)
  step = lambdas.from_config(lam_config(kind='step', steps=(10, 20), values=(0.0, 0.5, 1.0)), 100)
  assert values_at(step, [0, 9, 10, 19, 20, 1000]) == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_lambda_config_errors():
  with pytest.raises(lambdas.LambdaConfigError, match='valid: constant, linear, dann, step'):
    lambdas.from_config(lam_config(kind='cosine'), 100)
  with pytest.raises(lambdas.LambdaConfigError, match=r'len\(values\) == len\(steps\) \+ 1'):
    lambdas.from_config(lam_config(kind='step', steps=(10,), values=(1.0,)), 100)
  with pytest.raises(lambdas.LambdaConfigError, match='increase strictly'):
    lambdas.from_config(lam_config(kind='step', steps=(10, 5), values=(0., 1., 2.)), 100)


# ------------------------------------------------------------------------------------------
# Contexts by hand: outputs are anything with `.logits`.
# ------------------------------------------------------------------------------------------

def make_config(source=True, target_labeled=True, target_head='', source_head=''):
  c = base_config()
  c.data.source.name = 'src' if source else ''
  c.data.target.labeled = target_labeled
  c.data.target.head = target_head
  c.data.source.head = source_head
  return c


def make_ctx(config, outputs, batches, lam=0.5, trainable=None, pretrained=None):
  return objectives.Context(outputs=outputs, batches=batches, params={},
                            trainable=trainable or {}, pretrained=pretrained, step=jnp.int32(3),
                            lam=jnp.float32(lam), config=config, axis_name=None)


def out(logits):
  return types.SimpleNamespace(logits=logits)


RS = np.random.RandomState(0)
T_LOGITS = RS.randn(6, 3).astype(np.float32)
S_LOGITS = RS.randn(4, 5).astype(np.float32)
T_LABELS = np.array([0, 1, 2, 1, -1, 0], np.int32)  # -1: unlabelled example
T_MASK = np.array([1, 1, 1, 0, 1, 1], bool)  # row 3 is padding
S_LABELS = np.array([4, 0, 3, 1], np.int32)


def ce_ref(logits, labels, keep):
  lp = jax.nn.log_softmax(logits)
  return float(-np.mean(np.asarray(lp)[np.arange(len(labels)), labels][keep]))


def test_cross_entropy_is_target_plus_lambda_source_with_masks_and_heads():
  batches = {'target': {'label': T_LABELS, 'mask': T_MASK}, 'source': {'label': S_LABELS}}
  outputs = {'target': out({'topic': T_LOGITS, 'digit': S_LOGITS[:1]}),
             'source': out({'topic': T_LOGITS[:4], 'digit': S_LOGITS})}
  ctx = make_ctx(make_config(target_head='topic', source_head='digit'), outputs, batches)
  loss, metrics = objectives.JointObjective(('cross_entropy',))(ctx)
  keep = T_MASK & (T_LABELS >= 0)
  lt = ce_ref(T_LOGITS, np.maximum(T_LABELS, 0), keep)
  ls = ce_ref(S_LOGITS, S_LABELS, np.ones(4, bool))
  np.testing.assert_allclose(metrics['target/loss'], lt, rtol=1e-6)
  np.testing.assert_allclose(metrics['source/loss'], ls, rtol=1e-6)
  np.testing.assert_allclose(loss, lt + 0.5 * ls, rtol=1e-6)
  np.testing.assert_allclose(metrics['loss/cross_entropy'], loss)
  acc = (T_LOGITS.argmax(-1) == T_LABELS)[keep].mean()
  np.testing.assert_allclose(metrics['target/accuracy'], acc, rtol=1e-6)

  # Unlabelled target (UDA): the L_T term is absent, only λ·L_S remains.
  ctx = make_ctx(make_config(target_labeled=False, target_head='topic', source_head='digit'),
                 outputs, batches)
  loss, metrics = objectives.JointObjective(('cross_entropy',))(ctx)
  assert 'target/loss' not in metrics
  np.testing.assert_allclose(loss, 0.5 * ls, rtol=1e-6)

  # A shared single head; no source domain at all.
  ctx = make_ctx(make_config(source=False), {'target': out(T_LOGITS)},
                 {'target': batches['target']})
  loss, metrics = objectives.JointObjective(('cross_entropy',))(ctx)
  np.testing.assert_allclose(loss, lt, rtol=1e-6)
  assert 'source/loss' not in metrics


def test_head_selection_errors():
  two = {'a': T_LOGITS, 'b': T_LOGITS}
  with pytest.raises(objectives.ObjectiveError, match=r"not one of the model heads \['a', 'b'\]"):
    objectives.select_logits(two, '', 'target')
  with pytest.raises(objectives.ObjectiveError, match="head='c' is not one of"):
    objectives.select_logits(two, 'c', 'source')
  with pytest.raises(objectives.ObjectiveError, match='single head'):
    objectives.select_logits(T_LOGITS, 'a', 'target')
  with pytest.raises(objectives.ObjectiveError, match='no classification head'):
    objectives.select_logits(None, '', 'target')
  np.testing.assert_array_equal(objectives.select_logits({'a': T_LOGITS}, '', 'target'), T_LOGITS)


def test_registry_names_errors_and_custom_objectives():
  assert {'cross_entropy', 'l2sp'} <= set(objectives.names())
  with pytest.raises(objectives.ObjectiveError, match='valid: .*cross_entropy, .*l2sp'):
    objectives.get('dan')
  with pytest.raises(objectives.ObjectiveError, match='non-empty tuple'):
    objectives.JointObjective(())

  @objectives.register('test_entropy_min')
  def entropy(ctx):  # a method term: target prediction entropy, weighted by λ
    p = jax.nn.softmax(ctx.logits('target'))
    h = ctx.mean(-jnp.sum(p * jnp.log(p), -1))
    return ctx.lam * h, {'target/entropy': h}

  with pytest.raises(objectives.ObjectiveError, match='already registered'):
    objectives.register('test_entropy_min')(lambda ctx: (0.0, {}))
  with pytest.raises(objectives.ObjectiveError, match='unknown needs'):
    objectives.register('x', needs=('features',))
  ctx = make_ctx(make_config(source=False), {'target': out(T_LOGITS)},
                 {'target': {'label': T_LABELS}}, lam=2.0)
  joint = objectives.JointObjective(('cross_entropy', 'test_entropy_min'))
  loss, metrics = joint(ctx)
  np.testing.assert_allclose(loss, metrics['loss/cross_entropy'] + 2.0 * metrics['target/entropy'],
                             rtol=1e-6)
  assert joint.needs == frozenset()
  assert objectives.JointObjective(('l2sp',)).needs == {'pretrained'}


def test_mean_is_the_global_mean_on_any_device_count():
  """ctx.mean per device, then the step's pmean, gives the global weighted mean."""
  values = RS.randn(16).astype(np.float32)
  weights = np.ones(16, np.float32)
  weights[[0, 1, 2, 5]] = 0  # uneven padding: device 0 has almost no real rows
  want = (values * weights).sum() / weights.sum()
  for n in (1, 4):
    launcher = parallel.make_launcher('shard_map', jax.devices()[:n])

    def per_device(v, w):
      ctx = make_ctx(make_config(), {}, {})
      ctx = objectives.Context(**{**ctx.__dict__, 'axis_name': 'data'})
      return jax.lax.pmean(ctx.mean(v, w), 'data')
    fn = launcher.compile(per_device, sharded_args=(0, 1), num_args=2)
    np.testing.assert_allclose(fn(values, weights), want, rtol=1e-6)


def test_l2sp_value_and_gradient_match_the_closed_form():
  rs = np.random.RandomState(1)
  w, w0 = rs.randn(4, 3).astype(np.float32), rs.randn(4, 3).astype(np.float32)
  b, b0 = rs.randn(3).astype(np.float32), rs.randn(3).astype(np.float32)
  head = rs.randn(3, 2).astype(np.float32)
  resized = rs.randn(5).astype(np.float32)  # same name as a pretrained leaf, other shape: new
  pretrained = {'encoder/w': w0, 'encoder/b': b0, 'resized': np.zeros(7, np.float32)}
  config = make_config(source=False)
  config.transfer.l2sp_alpha, config.transfer.l2sp_beta = 0.3, 0.07

  def value(trainable):
    ctx = make_ctx(config, {}, {}, trainable=trainable, pretrained=pretrained)
    return l2sp.l2sp(ctx)[0]

  trainable = {'encoder/w': w, 'encoder/b': b, 'head/kernel': head, 'resized': resized}
  v, grads = jax.value_and_grad(value)(trainable)
  alpha, beta = 0.3, 0.07
  shared = np.sum((w - w0) ** 2) + np.sum((b - b0) ** 2)
  new = np.sum(head ** 2) + np.sum(resized ** 2)
  np.testing.assert_allclose(v, alpha / 2 * shared + beta / 2 * new, rtol=1e-5)
  np.testing.assert_allclose(grads['encoder/w'], alpha * (w - w0), rtol=1e-5)
  np.testing.assert_allclose(grads['encoder/b'], alpha * (b - b0), rtol=1e-5)
  np.testing.assert_allclose(grads['head/kernel'], beta * head, rtol=1e-5)
  np.testing.assert_allclose(grads['resized'], beta * resized, rtol=1e-5)
  # Only trainable leaves count: a frozen leaf (absent from `trainable`) adds nothing.
  assert float(value({'encoder/w': w})) == pytest.approx(alpha / 2 * np.sum((w - w0) ** 2),
                                                         rel=1e-5)


def test_l2sp_leaves_method_owned_weights_alone():
  w, w0 = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
  config = make_config(source=False)
  config.transfer.l2sp_alpha, config.transfer.l2sp_beta = 1.0, 1.0
  discriminator = {'objectives/dann/dense/kernel': np.full((2, 1), 3.0, np.float32)}
  ctx = make_ctx(config, {}, {}, trainable={'encoder/w': w, **discriminator},
                 pretrained={'encoder/w': w0})
  assert float(l2sp.l2sp(ctx)[0]) == pytest.approx(0.5 * 4.0)  # the discriminator adds nothing


def test_method_settings_default_or_one_error_naming_a_config_that_exists():
  import pathlib
  from tl_jax.methods import bss, distill, multitask, penalties
  # base_config has every section now (issue #11); a config without one (built by hand, or a
  # run saved before) still gets the default or the one error.
  def without(section):
    config = base_config()
    del config.transfer[section]
    return config
  config = without('coral')
  assert objectives.method_settings(config, 'coral', {'weight': 1.0}) == {'weight': 1.0}
  config.transfer.bss = bss.default_config()
  assert objectives.method_settings(config, 'bss') is config.transfer.bss
  assert objectives.method_settings(base_config(), 'bss') == bss.default_config()
  repo = pathlib.Path(__file__).resolve().parent.parent
  for module in (bss, distill, multitask, penalties):
    section = module.__name__.rsplit('.', 1)[1]
    ctx = types.SimpleNamespace(config=without(section))
    with pytest.raises(objectives.ObjectiveError, match='is missing: add `config.transfer') as e:
      module.settings(ctx)
    example = str(e.value).rsplit('(see ', 1)[1].rstrip(')')
    assert (repo / example).is_file(), example


# ------------------------------------------------------------------------------------------
# Method sections in base_config (issue #11): equal to each method's own default_config().
# ------------------------------------------------------------------------------------------

METHOD_SECTIONS = {'dann': 'dann', 'cdan': 'cdan', 'mdd': 'mdd', 'coral': 'coral', 'mmd': 'mmd',
                   'importance': 'importance', 'bss': 'bss', 'distill': 'distill',
                   'multitask': 'multitask', 'penalties': 'penalties'}


@pytest.mark.parametrize('section', sorted(METHOD_SECTIONS))
def test_base_config_holds_each_methods_defaults(section):
  import importlib
  module = importlib.import_module(f'tl_jax.methods.{METHOD_SECTIONS[section]}')
  assert base_config().transfer[section].to_dict() == module.default_config().to_dict()


def test_every_objective_reading_settings_has_a_section():
  """An objective whose file has a default_config() (its settings) finds them in base_config."""
  import inspect
  transfer = base_config().transfer
  for name in objectives.names():
    module = inspect.getmodule(objectives.get(name).fn)
    if hasattr(module, 'default_config') and 'method_settings' in inspect.getsource(module):
      section = module.__name__.rsplit('.', 1)[1]
      assert section in transfer, f'objective {name!r}: config.transfer.{section} missing'


def test_coral_source_normalisation_is_scale_free():
  from tl_jax.methods import coral
  rs = np.random.RandomState(0)
  x_s, x_t = rs.randn(16, 6).astype(np.float32), 2 * rs.randn(16, 6).astype(np.float32)
  c_s, c_t = np.cov(x_s, rowvar=False), np.cov(x_t, rowvar=False)
  d2 = float(coral.coral_loss(x_s, x_t))
  np.testing.assert_allclose(d2, np.sum((c_s - c_t) ** 2) / (4 * 36), rtol=1e-4)
  src = float(coral.coral_loss(x_s, x_t, normalize='source'))
  np.testing.assert_allclose(src, np.sum((c_s - c_t) ** 2) / np.sum(c_s ** 2), rtol=1e-4)
  # Features 100x larger: the paper's value grows 1e8-fold, the normalised one not at all.
  np.testing.assert_allclose(float(coral.coral_loss(100 * x_s, 100 * x_t)), 1e8 * d2, rtol=1e-3)
  np.testing.assert_allclose(float(coral.coral_loss(100 * x_s, 100 * x_t, normalize='source')),
                             src, rtol=1e-4)
  # The denominator is a constant to the gradient (the source covariance cannot be inflated).
  g = jax.grad(lambda a: coral.coral_loss(a, x_t, normalize='source'))(jnp.asarray(x_s))
  plain = jax.grad(lambda a: jnp.sum(jnp.square(coral.covariance(a) - coral.covariance(x_t))))
  np.testing.assert_allclose(g, plain(jnp.asarray(x_s)) / np.sum(c_s ** 2), rtol=1e-3,
                             atol=1e-6)
  with pytest.raises(objectives.ObjectiveError, match="normalize='fro'.*valid: d2, source"):
    coral.coral_loss(x_s, x_t, normalize='fro')
