"""Seeds mean what users think: config.seed alone changes the few-shot draw, the order and the
init; data.few_shot_seed / shuffle_seed pin them; a run prints and records what it drew and,
with a source domain, whether the target labels are used."""

import collections
import json

import numpy as np
import pytest

from cli_helpers import TINY_CONFIG, tiny_assets  # noqa: F401 (fixture)
from fixtures_data import prepared_data_dir  # noqa: F401 (fixture)
from tl_jax import config as config_lib
from tl_jax import data
from tl_jax.config import base_config


@pytest.fixture
def digits_cfg(prepared_data_dir):  # noqa: F811
  cfg = base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.target.name = 'digits'
  cfg.target.few_shot = 3
  cfg.batch_size = 30  # one batch = one epoch of the 30 drawn examples
  cfg.lock()
  return cfg


def _batch(cfg, seed):
  return next(data.build_train_iterator(cfg, seed=seed, num_devices=1))['target']


def _subset(cfg, seed):
  """The drawn examples (as stored bytes, order-free) and the order they came in."""
  u8 = np.round((_batch(cfg, seed)['image'] * 0.5 + 0.5) * 255).astype(np.uint8)
  rows = [r.tobytes() for r in u8]
  return collections.Counter(rows), rows


def _draw(cfg, seed):
  (draw,) = data.few_shot_draws(cfg, seed)
  return draw


def test_config_seed_alone_changes_the_draw_and_the_draw_is_reported(digits_cfg):
  assert digits_cfg.few_shot_seed == -1 and digits_cfg.shuffle_seed == -1  # the defaults
  subsets = [_subset(digits_cfg, s)[0] for s in (0, 1, 2)]
  assert subsets[0] == _subset(digits_cfg, 0)[0]  # reproducible
  assert subsets[0] != subsets[1] and subsets[1] != subsets[2] and subsets[0] != subsets[2]
  draws = [_draw(digits_cfg, s) for s in (0, 1, 2)]
  assert [d.seed for d in draws] == [0, 1, 2]
  assert {d.seed_from for d in draws} == {'config.seed'}
  assert len({d.digest for d in draws}) == 3 and all(len(d.digest) == 8 for d in draws)
  assert draws[0].digest == _draw(digits_cfg, 0).digest
  line = draws[1].line()
  assert line.startswith('few-shot target digits/train: 3 per class x 10 = 30 of ')
  assert f'seed 1 (config.seed), ids sha1 {draws[1].digest}' in line


def test_pinned_few_shot_seed_keeps_the_draw_while_the_order_follows_config_seed(digits_cfg):
  digits_cfg.few_shot_seed = 4
  (a, order_a), (b, order_b) = _subset(digits_cfg, 0), _subset(digits_cfg, 1)
  assert a == b and order_a != order_b  # same 30 examples, another order
  assert _draw(digits_cfg, 0).digest == _draw(digits_cfg, 1).digest
  assert _draw(digits_cfg, 0).seed_from == 'data.few_shot_seed'
  # A pinned value draws what that config.seed draws by default.
  pinned = _draw(digits_cfg, 0)
  digits_cfg.few_shot_seed = -1
  assert _draw(digits_cfg, 4).digest == pinned.digest and _subset(digits_cfg, 4)[0] == a
  assert _draw(digits_cfg, 4).seed_from == 'config.seed'  # the same subset, said as this run set it


def test_pinned_shuffle_seed_keeps_the_order(digits_cfg):
  digits_cfg.few_shot_seed = 0
  digits_cfg.shuffle_seed = 7
  assert _subset(digits_cfg, 0)[1] == _subset(digits_cfg, 5)[1]
  digits_cfg.shuffle_seed = -1  # the default: the order follows config.seed
  assert _subset(digits_cfg, 0)[1] != _subset(digits_cfg, 5)[1]


def test_digest_is_over_the_example_ids(prepared_data_dir):  # noqa: F811
  cfg = base_config().data
  cfg.data_dir = prepared_data_dir
  cfg.target.few_shot = 2
  draw = data.few_shot_draws(cfg, 3)[0]
  # Recompute from the records: the bbc ids '<topic>/NNN' of the drawn articles.
  from tl_jax.data import fewshot  # pylint: disable=g-import-not-at-top
  source = data.data_source('bbc_news', 'train', prepared_data_dir)
  labels = fewshot.read_labels(source, 'label')
  idx = fewshot.few_shot_indices(labels, 2, 3, ['a'] * 5)
  ids = [source[int(i)]['id'].decode() for i in idx]
  assert len(ids) == 10 and all('/' in i for i in ids)
  assert draw.digest == fewshot.digest(ids) == fewshot.digest(ids[::-1])
  assert draw.of == 1699 and draw.per_class == 2 and draw.num_classes == 5


def test_seed_keys_accept_minus_one_only_as_from_config_seed():
  config = base_config()
  config_lib.validate(config)  # the defaults (-1) pass
  for key, value in (('few_shot_seed', 3), ('shuffle_seed', 0)):
    config.data[key] = value
    config_lib.validate(config)
  for key in ('few_shot_seed', 'shuffle_seed'):
    config = base_config()
    config.data[key] = -2
    with pytest.raises(config_lib.ConfigValueError, match=rf'data\.{key}=-2: must be an integer '
                                                          r'>= -1'):
      config_lib.validate(config)


def test_a_source_domain_says_whether_target_labels_are_used():
  cfg = base_config().data
  assert data.start_lines(cfg, []) == []  # no source: nothing to say
  cfg.source.name = 'digits'
  (line,) = data.start_lines(cfg, [])
  assert line.startswith('target labels ARE used (data.target.labeled=True): this is supervised '
                         'fine-tuning on the target plus a source term')
  assert '--config.data.target.labeled=False' in line
  cfg.target.labeled = False
  (line,) = data.start_lines(cfg, [])
  assert line.startswith('target labels are NOT used (data.target.labeled=False): unsupervised')
  assert '--config.data.target.labeled=True' in line


def test_uda_configs_leave_target_labels_out():
  import pathlib  # pylint: disable=g-import-not-at-top
  repo = pathlib.Path(__file__).resolve().parent.parent
  configs = {p.name: config_lib.from_file(str(p))
             for p in sorted((repo / 'configs').glob('*_digits.py'))}
  da = {n: c for n, c in configs.items() if 'data' in c and c.data.source.name}
  assert {'dann_digits.py', 'mmd_digits.py', 'coral_digits.py', 'source_only_digits.py'} <= set(da)
  for name, config in da.items():
    # Only TrAdaBoost (labelled k-shot target, by design) uses the target labels.
    want = 'ARE' if name == 'tradaboost_digits.py' else 'are NOT'
    assert data.start_lines(config.data, [])[-1].startswith(f'target labels {want} used'), name


@pytest.mark.slow
def test_train_prints_and_records_the_draw(tiny_assets, tmp_path, capsys):  # noqa: F811
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  def run(seed, name):
    config = config_lib.from_file(str(TINY_CONFIG))
    config.model.name = str(tiny_assets.bert_dir)
    config.data.target.name = tiny_assets.text_dataset
    config.data.data_dir = str(tiny_assets.data_dir)
    config.data.text_fields = ('text',)
    config.data.target.eval_splits = ('validation',)
    config.data.target.few_shot = 3  # 9 examples, batch 8
    config.train.num_steps = 1
    config.train.eval_every = config.train.checkpoint_every = 0
    config.train.best_metric = ''
    config.train.export_hf = False
    config.seed = seed
    workdir = tmp_path / name
    loop.train(config, str(workdir))
    recorded = json.loads((workdir / 'config.json').read_text())['few_shot_draws']['target']
    printed = [l for l in capsys.readouterr().out.splitlines() if l.startswith('few-shot')]
    return recorded, printed, workdir
  first, printed, workdir = run(0, 'a')
  assert len(printed) == 1 and f'ids sha1 {first["digest"]}' in printed[0]
  assert first['seed'] == 0 and first['seed_from'] == 'config.seed' and first['per_class'] == 3
  assert run(1, 'b')[0]['digest'] != first['digest']  # config.seed alone draws another subset
  # The recorded draw does not stop the run's config from loading again (tl-jax eval).
  assert loop.saved_config(workdir).data.target.few_shot == 3
