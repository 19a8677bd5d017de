"""The text DA shift (bbc_shift/{lead,tail,tail_ocr}) and its configs: the builder is
deterministic, the domains share no article, its counts are the documented ones; every
configs/*_text.py and the DA sweeps load; one text DA config trains 2 steps on a tiny BERT."""

import collections
import pathlib
import re

import numpy as np
import pytest

from cli_helpers import tiny_assets  # noqa: F401 (fixture)
from tl_jax import config as config_lib
from tl_jax.data import sources
from tl_jax.data.builders import bbc_news
from tl_jax.data.builders import bbc_shift

REPO = pathlib.Path(__file__).resolve().parent.parent
TEXT_CONFIGS = ('source_only', 'dann', 'cdan', 'cdan:e', 'mdd', 'coral', 'mmd', 'importance',
                'importance:kmm', 'importance:kliep')
TOPICS = ('business', 'entertainment', 'politics', 'sport', 'tech')


@pytest.fixture(scope='module')
def shift_dir(tmp_path_factory):
  """lead and tail_ocr prepared once (tail is tail_ocr before the noise: checked in memory)."""
  path = tmp_path_factory.mktemp('tfds')
  for domain in ('lead', 'tail_ocr'):
    sources.get_builder(f'bbc_shift/{domain}', str(path))
  return str(path)


def _read(domain, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = {}
  for split in ('train', 'validation', 'test'):
    ds = tfds.data_source(f'bbc_shift/{domain}', split=split, data_dir=data_dir)
    out[split] = [ds[i] for i in range(len(ds))]
  return out


def _as_str(v):
  return v.decode() if isinstance(v, bytes) else str(v)


def test_domains_are_disjoint_halves_and_splits_partition_each():
  labels = bbc_news.unique_articles().labels
  a, b = bbc_shift.domain_halves(labels)
  assert not set(a) & set(b) and len(a) + len(b) == len(labels) == 2125
  for domain in ('lead', 'tail'):
    parts = bbc_shift.split_indices(domain, labels)
    flat = np.concatenate(list(parts.values()))
    assert len(flat) == len(set(flat.tolist()))  # no article in two splits


def test_counts_match_the_docstring_and_the_data(shift_dir):
  table = re.findall(r'^\s+(lead|tail\*)?\s+(train|validation|test)\s+([\d ]+)$',
                     bbc_shift.__doc__, re.M)
  documented, domain = {}, None
  for name, split, numbers in table:
    domain = name.rstrip('*') or domain
    *per_topic, total = map(int, numbers.split())
    assert sum(per_topic) == total
    documented[(domain, split)] = tuple(per_topic)
  assert documented == {(d, s): c for d in ('lead', 'tail')
                        for s, c in bbc_shift.COUNTS[d].items()}
  for domain in ('lead', 'tail_ocr'):
    for split, rows in _read(domain, shift_dir).items():
      counts = collections.Counter(int(r['label']) for r in rows)
      assert tuple(counts[i] for i in range(5)) == bbc_shift.COUNTS[domain][split]


def test_no_article_shared_between_domains(shift_dir):
  lead, tail = _read('lead', shift_dir), _read('tail_ocr', shift_dir)
  ids = {d: {_as_str(r['id']) for rows in x.values() for r in rows}
         for d, x in (('lead', lead), ('tail', tail))}
  assert not ids['lead'] & ids['tail']
  # Every test example is absent from the other domain's train split, by id and by text.
  for test_rows, other_train in ((lead['test'], tail['train']), (tail['test'], lead['train'])):
    assert not ({_as_str(r['id']) for r in test_rows}
                & {_as_str(r['id']) for r in other_train})
    assert not ({_as_str(r['text']) for r in test_rows}
                & {_as_str(r['text']) for r in other_train})


def test_builder_is_deterministic_and_the_noise_is_what_it_says(shift_dir, tmp_path):
  again = str(tmp_path)
  sources.get_builder('bbc_shift/tail_ocr', again)
  first, second = _read('tail_ocr', shift_dir), _read('tail_ocr', again)
  for split in first:
    assert ([(_as_str(r['id']), _as_str(r['text'])) for r in first[split]]
            == [(_as_str(r['id']), _as_str(r['text'])) for r in second[split]])
  text = ' '.join(_as_str(r['text']) for r in first['test'])
  assert text == text.lower() and not re.search(r'[.,;:!?"()]', text)
  articles = bbc_news.unique_articles()
  title, body = bbc_news.read_article(
      str(pathlib.Path(bbc_news.corpus_dir(), *articles.files[0])))
  lead = bbc_shift.domain_text('lead', 0, title, body)
  assert lead.startswith(title) and lead == bbc_shift.domain_text('lead', 0, title, body)
  clean = ' '.join(bbc_shift.domain_text('tail', 0, title, body).lower().split())
  noisy = bbc_shift.domain_text('tail_ocr', 0, title, body)
  assert noisy == bbc_shift.domain_text('tail_ocr', 0, title, body) and noisy != clean


@pytest.mark.parametrize('name', TEXT_CONFIGS)
def test_text_configs_load_as_unsupervised_da(name):
  file, _, arg = name.partition(':')
  config = config_lib.from_file(str(REPO / 'configs' / f'{file}_text.py') + (f':{arg}'
                                                                             if arg else ''))
  assert config.model.name == 'minilm'
  assert (config.data.source.name, config.data.target.name) == ('bbc_shift/tail_ocr',
                                                                'bbc_shift/lead')
  assert not config.data.target.labeled and config.train.best_metric == ''
  if file == 'cdan':
    assert config.transfer.cdan.entropy == (arg == 'e')
  if file == 'importance':
    assert config.transfer.importance.estimator == (arg or 'classifier')
  if file == 'coral':
    assert config.transfer.coral.normalize == 'source'


def test_da_sweeps_list_every_method_and_the_ceiling():
  from tl_jax import sweep  # pylint: disable=g-import-not-at-top
  path = REPO / 'configs' / 'sweeps' / 'da_text.py'
  base, overrides = sweep.load_sweep_file(str(path))
  runs = sweep.expand(base, overrides)
  assert len(runs) == 33 and len({r.name for r in runs}) == 33
  groups = {r.group for r in runs}
  assert groups == {'source_only', 'dann', 'cdan', 'cdan_e', 'mdd', 'coral', 'mmd',
                    'iw_classifier', 'iw_kmm', 'iw_kliep', 'target_supervised'}
  ceiling = [r for r in runs if r.name.startswith('target_supervised')]
  assert all(r.config.data.target.labeled and not r.config.data.source.name for r in ceiling)
  uda = [r for r in runs if not r.name.startswith('target_supervised')]
  assert all(not r.config.data.target.labeled for r in uda)


def test_the_weight_grid_varies_only_the_weight_on_seeds_the_table_does_not_report():
  from tl_jax import sweep  # pylint: disable=g-import-not-at-top
  from tl_jax.configs.sweeps import da_text, da_text_grid  # pylint: disable=g-import-not-at-top
  spec = sweep.SweepSpec(str(REPO / 'configs' / 'sweeps' / 'da_text_grid.py'))
  runs = spec.runs()
  # Its table.md leads with what the weight is chosen on: source validation, never target test.
  assert spec.table_settings() == {'baseline': 'source_only', 'columns': (
      'source/validation/accuracy', 'target/test/accuracy')}
  assert len(runs) == 2 * (1 + sum(len(g) for g in da_text_grid.GRIDS.values()))
  assert [r.name for r in runs[:2]] == ['source_only,seed=100', 'source_only,seed=101']
  runs = runs[2:]
  table_seeds = {r.config.seed for r in sweep.SweepSpec(
      str(REPO / 'configs' / 'sweeps' / 'da_text.py')).runs()}
  assert table_seeds.isdisjoint({r.config.seed for r in runs})
  rows = {row['name']: row for row in da_text.method_rows()}
  for run in runs:
    method = run.group.split('-weight-')[0]
    section = da_text.METHODS[method][2]
    grid_section = run.config.transfer[section].to_dict()
    assert grid_section['weight'] in da_text_grid.GRIDS[method], run.name
    # Everything but the weight is the table row's setting.
    table_section = dict(rows[method][f'transfer.{section}'])
    assert {**table_section, 'weight': grid_section['weight']} == grid_section, run.name
    assert tuple(run.config.transfer.objectives) == tuple(rows[method]['transfer.objectives'])


def test_a_text_da_config_trains_two_steps_on_a_tiny_bert(shift_dir, tiny_assets,  # noqa: F811
                                                           tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from tl_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = config_lib.from_file(str(REPO / 'configs' / 'dann_text.py'))
  config.model.name = str(tiny_assets.bert_dir)  # 1 layer: bottom:4 does not exist there
  config.transfer.freeze_preset = 'all'
  config.transfer.dann.hidden = (8,)
  config.data.data_dir = shift_dir
  config.data.max_length = 16
  config.data.batch_size = 8  # the tests' 8 CPU devices
  config.data.eval_batch_size = 64
  config.data.source.eval_splits = ()
  config.train.num_steps = 2
  config.optimizer.warmup_steps = 0
  config.train.log_every = 1
  config.train.eval_every = 2
  loop.train(config, str(tmp_path / 'run'))
  lines = [json.loads(l) for l in (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if 'dann/domain_loss' in l] == [1, 2]
  assert 0.0 <= lines[-1]['target/test/accuracy'] <= 1.0
