"""grain pipelines: per-domain train streams, paired {source, target} batches, padded eval.

Train, per domain (all random-access until the end, so the iterator state is one index):
  source [few-shot subset] -> shuffle(seed, new order each epoch) -> repeat forever
  -> this host's rows of each global batch -> prepare examples -> batch (tokenise, padded to
  max_length or the smallest data.length_buckets length that fits | stack)
  -> [augment, mixup] -> normalise
then the domains are zipped index by index: batch i of the pair is batch i of each stream, each
stream cycling through its own data at its own length.

Eval, per domain and split: source -> pad to a whole number of global batches (mask False on
the padding) -> this host's rows -> same preparation, no randomness, same order every time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import ml_collections as mlc
import numpy as np

from tl_jax import config as config_lib
from tl_jax.data import errors
from tl_jax.data import fewshot
from tl_jax.data import image as image_lib
from tl_jax.data import sharding
from tl_jax.data import sources
from tl_jax.data import text as text_lib

ROLES = ('target', 'source')
INDEX = 'index'  # a training example's position in its domain's training source


def _derive_seed(*parts: int) -> int:
  """A 32-bit seed from several integers (grain takes seeds in 0..2**32-1)."""
  return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0])


def active_roles(data_cfg: mlc.ConfigDict) -> tuple[str, ...]:
  return ('target', 'source') if data_cfg.source.name else ('target',)


# ------------------------------------------------------------------------------------------
# Per-example and per-batch transforms (module-level classes: picklable for grain workers).
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrepareExample:
  """A TFDS record -> {'text': (str, ...)} or {'image': float32 [H, W, C]}, + label, mask."""
  where: str  # 'name/split' for messages
  kind: str
  text_fields: tuple[str, ...] = ()
  image_key: str | None = None
  stack_size: tuple[int, int] | None = None  # images of another size are resized to this
  channels: int = 0  # > 0: convert each image (a folder of mixed channel counts) before stacking
  label_key: str | None = None  # None: drop labels
  num_classes: int = 0

  def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    if self.kind == 'text':
      out['text'] = tuple(text_lib.as_str(record[f]) for f in self.text_fields)
    else:
      img = image_lib.to_float(image_lib.check_rank(np.asarray(record[self.image_key]),
                                                    self.where))
      if img.shape[:2] != self.stack_size:  # only datasets of varying sizes pay this
        img = image_lib.resize(img, self.stack_size)
      if self.channels:
        img = image_lib.match_channels(img, self.channels, self.where)
      out['image'] = img
    if self.label_key is not None:
      label = int(record[self.label_key])
      if not 0 <= label < self.num_classes:
        raise errors.BadExampleError(
            f'{self.where}: label {label} outside 0..{self.num_classes - 1} (num_classes='
            f'{self.num_classes}); this split may be unlabelled (e.g. a GLUE test split): drop '
            'it from eval_splits, or set labeled=False for a training domain')
      out['label'] = label
    if 'mask' in record:
      out['mask'] = bool(record['mask'])
    if INDEX in record:
      out[INDEX] = int(record[INDEX])
    return out


@dataclasses.dataclass(frozen=True)
class IndexedSource:
  """A data source whose records also carry their position in it (`index`), so a batch can be
  joined with per-example arrays computed once (frozen-prefix activations)."""
  source: Any

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> dict[str, Any]:
    return {**self.source[i], INDEX: i}


def stack_images(examples: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
  """grain batch_fn for images."""
  batch = {'image': np.stack([ex['image'] for ex in examples])}
  return text_lib.collate_extras(examples, batch)


@dataclasses.dataclass(frozen=True)
class FinishImages:
  """Batch-level image work: [random crop + flip], normalise, [mixup] (train only) at the
  stored size, then resize to the model's size and set the channels."""
  where: str
  image_size: tuple[int, int]
  channels: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool = False
  flip: bool = True
  mixup_alpha: float = 0.0
  num_classes: int = 0

  @property
  def random(self) -> bool:
    return self.augment or (self.mixup_alpha > 0 and self.num_classes > 0)

  def __call__(self, batch: dict[str, np.ndarray],
               rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    # Resizing is linear with weights summing to 1, so it commutes with normalising and mixing:
    # do those at the (small) stored size and resize last.
    images = batch['image']
    batch = dict(batch)
    if self.augment:
      images = image_lib.random_crop_flip(images, rng, flip=self.flip)
    per_channel = len(self.mean) > 1 or len(self.std) > 1
    if per_channel:
      images = image_lib.match_channels(images, self.channels, self.where)
    images = image_lib.normalize(images, self.mean, self.std)
    if self.mixup_alpha > 0 and 'label' in batch:
      images, batch['label_probs'] = image_lib.mixup(
          images, batch['label'], self.num_classes, self.mixup_alpha, rng)
    images = image_lib.resize(images, self.image_size)
    if not per_channel:
      images = image_lib.match_channels(images, self.channels, self.where)
    batch['image'] = images.astype(np.float32, copy=False)
    return batch


@dataclasses.dataclass(frozen=True)
class NameStreams:
  """Zipped tuple of per-domain batches -> {'target': ..., 'source': ...}."""
  roles: tuple[str, ...]

  def __call__(self, batches: tuple[dict[str, np.ndarray], ...]) -> dict[str, Any]:
    return dict(zip(self.roles, batches))


# ------------------------------------------------------------------------------------------
# One domain.
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Domain:
  """A configured domain, resolved: its dataset, info and how its examples are prepared."""
  role: str
  cfg: mlc.ConfigDict
  info: sources.DatasetInfo

  @property
  def name(self) -> str:
    return self.cfg.name


def resolve_domain(role: str, data_cfg: mlc.ConfigDict) -> Domain:
  cfg = data_cfg[role]
  return Domain(role=role, cfg=cfg, info=sources.info(
      cfg.name, data_cfg.data_dir, image_channels=data_cfg.get('image_channels', 0)))


def _stack_size(domain: Domain, source) -> tuple[int, int]:
  """The stored size; for datasets of varying sizes (folders), the first image's."""
  if None not in domain.info.image_shape[:2]:
    return tuple(domain.info.image_shape[:2])
  first = image_lib.check_rank(np.asarray(source[0][domain.info.image_key]), domain.name)
  return tuple(first.shape[:2])


def _image_size(data_cfg, image_size: int | None, stack_size: tuple[int, int]):
  """data.image_size, else the model's (the argument), else the stored size."""
  size = data_cfg.image_size or image_size or 0
  return (size, size) if size else stack_size


def _prepare_example(domain: Domain, split: str, source, data_cfg, *,
                     keep_labels: bool) -> PrepareExample:
  info = domain.info
  where = f'{domain.name}/{split}'
  label_key = info.label_key if keep_labels else None
  if info.kind == 'text':
    wanted = tuple(domain.cfg.get('text_fields', ()) or data_cfg.text_fields)
    fields = text_lib.resolve_fields(wanted, info.text_fields, domain.name)
    return PrepareExample(where=where, kind='text', text_fields=fields, label_key=label_key,
                          num_classes=info.num_classes)
  mixed = info.image_shape[-1] is None  # channel counts vary: convert before stacking
  return PrepareExample(where=where, kind='image', image_key=info.image_key,
                        stack_size=_stack_size(domain, source), label_key=label_key,
                        channels=data_cfg.get('image_channels', 0) if mixed else 0,
                        num_classes=info.num_classes)


def _batch_fn(domain: Domain, data_cfg, tokenizer):
  if domain.info.kind == 'text':
    return text_lib.TokenizeBatch(tokenizer, data_cfg.max_length,
                                  config_lib.length_buckets(data_cfg))
  return stack_images


def _finish_images(domain: Domain, prepare: PrepareExample, data_cfg, *, image_size,
                   train: bool, labeled: bool) -> FinishImages:
  return FinishImages(
      where=prepare.where, image_size=_image_size(data_cfg, image_size, prepare.stack_size),
      channels=data_cfg.get('image_channels', 0),
      mean=tuple(data_cfg.get('image_mean', (0.5,))), std=tuple(data_cfg.get('image_std', (0.5,))),
      augment=train and bool(data_cfg.augment), flip=bool(data_cfg.get('augment_flip', True)),
      mixup_alpha=float(data_cfg.mixup) if train and labeled else 0.0,
      num_classes=domain.info.num_classes)


def resolved_seed(value: int, seed: int) -> int:
  """data.few_shot_seed / data.shuffle_seed: -1 (the default) follows config.seed."""
  return int(seed) if value is None or int(value) < 0 else int(value)


# (name, split, prepared dir, size, k, seed) -> (indices, Draw): the loop reports the draw the
# pipeline made without reading every label again.
_DRAWS: dict[tuple, tuple[np.ndarray, fewshot.Draw]] = {}


def _few_shot_draw(domain: Domain, data_cfg, source, seed: int
                   ) -> tuple[np.ndarray, fewshot.Draw]:
  cfg, info = domain.cfg, domain.info
  if not info.has_labels:
    raise errors.DataError(f'data.{domain.role}.few_shot={cfg.few_shot} needs labels, and '
                           f'{domain.name!r} has none; set few_shot=0')
  pinned = int(data_cfg.get('few_shot_seed', -1)) >= 0
  draw_seed = resolved_seed(data_cfg.get('few_shot_seed', -1), seed)
  prepared = getattr(getattr(source, 'dataset_info', None), 'data_dir', data_cfg.data_dir)
  key = (domain.name, cfg.train_split, str(prepared), len(source), int(cfg.few_shot), draw_seed)
  if key not in _DRAWS:
    where = f'{domain.name}/{cfg.train_split}'
    indices = fewshot.few_shot_indices(fewshot.read_labels(source, info.label_key),
                                       cfg.few_shot, draw_seed, info.class_names, where=where)
    _DRAWS[key] = indices, fewshot.Draw(
        role=domain.role, where=where, per_class=int(cfg.few_shot),
        num_classes=len(info.class_names), of=len(source), seed=draw_seed,
        seed_from='data.few_shot_seed' if pinned else 'config.seed',
        digest=fewshot.digest(fewshot.example_ids(source, indices)))
  indices, draw = _DRAWS[key]
  # The same subset may be cached under another role or seed source: those are this call's.
  return indices, dataclasses.replace(
      draw, role=domain.role, seed_from='data.few_shot_seed' if pinned else 'config.seed')


def _train_split_source(domain: Domain, data_cfg, seed: int):
  cfg = domain.cfg
  source = sources.data_source(domain.name, cfg.train_split, data_cfg.data_dir)
  if cfg.few_shot:
    indices, _ = _few_shot_draw(domain, data_cfg, source, seed)
    source = fewshot.SubsetSource(source, indices)
  return source


def train_dataset(domain: Domain, data_cfg, *, tokenizer, image_size, seed: int,
                  host_batch: int, process_index: int, process_count: int,
                  with_index: bool = False) -> grain.MapDataset:
  """The infinite stream of this host's batches of one domain (with_index: each batch also
  has `index`, the rows' positions in the training source, see training_examples)."""
  info, cfg = domain.info, domain.cfg
  labeled = bool(cfg.labeled)
  if labeled and not info.has_labels:
    raise errors.DataError(f'{domain.name!r} has no labels; set data.{domain.role}.labeled=False')
  if data_cfg.mixup and info.kind == 'text':
    raise errors.DataError('data.mixup applies to images only; set data.mixup=0 for text')
  source = _train_split_source(domain, data_cfg, seed)
  role_id = ROLES.index(domain.role)
  # The default (-1) gives the order shuffle_seed=0 gave before -1 existed.
  shuffle = resolved_seed(data_cfg.shuffle_seed, seed)
  ds = grain.MapDataset.source(IndexedSource(source) if with_index else source)
  ds = ds.shuffle(seed=_derive_seed(shuffle, 0, role_id, 0)).repeat()
  ds = sharding.HostRowsMapDataset(ds, host_batch, process_index, process_count)
  prepare = _prepare_example(domain, cfg.train_split, source, data_cfg, keep_labels=labeled)
  ds = ds.map(prepare)
  ds = ds.batch(host_batch, drop_remainder=True, batch_fn=_batch_fn(domain, data_cfg, tokenizer))
  if info.kind == 'image':
    finish = _finish_images(domain, prepare, data_cfg, image_size=image_size, train=True,
                            labeled=labeled)
    if finish.random:
      ds = ds.random_map(finish, seed=_derive_seed(shuffle, 0, role_id, 1))
    else:
      ds = ds.map(finish)
  return ds


def eval_dataset(domain: Domain, split: str, data_cfg, *, tokenizer, image_size,
                 host_batch: int, process_index: int, process_count: int,
                 source: Any = None) -> tuple[Any, int]:
  """(this host's padded, masked batches of one split, number of real examples); `source`
  replaces the split's own records (the few-shot training subset)."""
  if source is None:
    source = sources.data_source(domain.name, split, data_cfg.data_dir)
  global_batch = host_batch * process_count
  padded = math.ceil(len(source) / global_batch) * global_batch
  ds = sharding.PaddedMapDataset(grain.MapDataset.source(source), padded)
  ds = sharding.HostRowsMapDataset(ds, host_batch, process_index, process_count)
  prepare = _prepare_example(domain, split, source, data_cfg, keep_labels=domain.info.has_labels)
  ds = ds.map(prepare)
  ds = ds.batch(host_batch, drop_remainder=True, batch_fn=_batch_fn(domain, data_cfg, tokenizer))
  if domain.info.kind == 'image':
    ds = ds.map(_finish_images(domain, prepare, data_cfg, image_size=image_size, train=False,
                               labeled=False))
  return ds, len(source)


# ------------------------------------------------------------------------------------------
# Entry points.
# ------------------------------------------------------------------------------------------


def _read_options(data_cfg) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=int(data_cfg.get('read_threads', 2)),
                           prefetch_buffer_size=int(data_cfg.get('prefetch_batches', 4)))


def _check_heads(domains: dict[str, Domain]) -> None:
  if 'source' not in domains:
    return
  source, target = domains['source'], domains['target']
  shared = (source.cfg.head or '') == (target.cfg.head or '')
  if (shared and source.cfg.labeled and source.info.num_classes > target.info.num_classes):
    raise errors.DataError(
        f'source {source.name!r} has {source.info.num_classes} classes but shares the head of '
        f'target {target.name!r} with {target.info.num_classes}: its labels would fall outside '
        "the head; give the source its own head (data.source.head='source')")


def build_train_iterator(data_cfg: mlc.ConfigDict, *, tokenizer=None,
                         image_size: int | None = None, seed: int = 0,
                         process_index: int | None = None, process_count: int | None = None,
                         num_devices: int | None = None,
                         with_index: bool = False) -> grain.DatasetIterator:
  """An endless iterator of {'target': batch[, 'source': batch]}, this host's rows; with_index
  adds each row's position in its domain's training source (`index`).

  get_state() / set_state() (JSON-able dicts) resume at the same next batch; grain's orbax
  handler (grain.checkpoint.CheckpointSave/Restore) saves it with a checkpoint.
  """
  process_index, process_count, num_devices = sharding.process_layout(
      process_index, process_count, num_devices)
  host_batch = sharding.host_batch_size(data_cfg.batch_size, num_devices=num_devices,
                                        process_count=process_count)
  domains = {role: resolve_domain(role, data_cfg) for role in active_roles(data_cfg)}
  _check_heads(domains)
  streams = [train_dataset(d, data_cfg, tokenizer=tokenizer, image_size=image_size, seed=seed,
                           host_batch=host_batch, process_index=process_index,
                           process_count=process_count, with_index=with_index)
             for d in domains.values()]
  ds = grain.experimental.ZipMapDataset(streams).map(NameStreams(tuple(domains)))
  ds = ds.to_iter_dataset(_read_options(data_cfg))
  if data_cfg.worker_count > 0:
    # grain's worker processes read absl flags; outside an absl app (notebook, script with
    # argparse, pytest) take their defaults instead of failing on unparsed flags.
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
  return iter(ds)


class EvalBatches:
  """The padded, masked batches of one eval split; iterate again for the next eval."""

  def __init__(self, dataset, num_examples: int, read_options: grain.ReadOptions):
    self._dataset = dataset
    self.num_examples = num_examples  # real examples over all hosts
    self._read_options = read_options

  def __len__(self) -> int:
    return len(self._dataset)  # batches (the same on every host)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self._dataset.to_iter_dataset(self._read_options))

  def __call__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self)


def build_eval_batches(data_cfg: mlc.ConfigDict, *, tokenizer=None,
                       image_size: int | None = None, process_index: int | None = None,
                       process_count: int | None = None,
                       num_devices: int | None = None) -> dict[str, EvalBatches]:
  """'{domain}/{split}' -> EvalBatches for every eval split of the target (and source)."""
  process_index, process_count, num_devices = sharding.process_layout(
      process_index, process_count, num_devices)
  host_batch = sharding.host_batch_size(data_cfg.eval_batch_size, num_devices=num_devices,
                                        process_count=process_count,
                                        what='data.eval_batch_size')
  out = {}
  for role in active_roles(data_cfg):
    domain = resolve_domain(role, data_cfg)
    for split in domain.cfg.eval_splits:
      ds, n = eval_dataset(domain, split, data_cfg, tokenizer=tokenizer, image_size=image_size,
                           host_batch=host_batch, process_index=process_index,
                           process_count=process_count)
      out[f'{role}/{split}'] = EvalBatches(ds, n, _read_options(data_cfg))
  return out


def training_examples(data_cfg: mlc.ConfigDict, role: str, *, tokenizer=None,
                      image_size: int | None = None, batch_size: int = 64,
                      seed: int = 0) -> EvalBatches:
  """Every training example of one domain (the few-shot subset when there is one), once, in
  source order (row i of the concatenated batches is `index` i), unshuffled and without
  augmentation, padded and masked like eval: what a per-example cache is computed from. Every
  host gets all of them, as any host may read any training row."""
  domain = resolve_domain(role, data_cfg)
  source = _train_split_source(domain, data_cfg, seed)
  ds, n = eval_dataset(domain, domain.cfg.train_split, data_cfg, tokenizer=tokenizer,
                       image_size=image_size, host_batch=batch_size, process_index=0,
                       process_count=1, source=source)
  return EvalBatches(ds, n, _read_options(data_cfg))


def dataset_info(domain_cfg: mlc.ConfigDict, data_cfg: mlc.ConfigDict) -> sources.DatasetInfo:
  """Kind, classes, split sizes and stored image shape of one configured domain."""
  return sources.info(domain_cfg.name, data_cfg.data_dir,
                      image_channels=data_cfg.get('image_channels', 0))


def few_shot_draws(data_cfg: mlc.ConfigDict, seed: int = 0) -> list[fewshot.Draw]:
  """The few-shot subset of each training domain that has one (as build_train_iterator draws
  it with this seed; cached, so calling both reads the labels once)."""
  draws = []
  for role in active_roles(data_cfg):
    domain = resolve_domain(role, data_cfg)
    if domain.cfg.few_shot:
      source = sources.data_source(domain.name, domain.cfg.train_split, data_cfg.data_dir)
      draws.append(_few_shot_draw(domain, data_cfg, source, seed)[1])
  return draws


def target_labels_line(data_cfg: mlc.ConfigDict) -> str | None:
  """With a source domain, whether the target's labels reach the loss (None without one)."""
  if not data_cfg.source.name:
    return None
  if data_cfg.target.labeled:
    return ('target labels ARE used (data.target.labeled=True): this is supervised fine-tuning '
            'on the target plus a source term; set --config.data.target.labeled=False for '
            'unsupervised domain adaptation')
  return ('target labels are NOT used (data.target.labeled=False): unsupervised domain '
          'adaptation, target labels only score the evals; set --config.data.target.labeled=True '
          'for supervised fine-tuning on the target plus a source term')


def start_lines(data_cfg: mlc.ConfigDict, draws: Sequence[fewshot.Draw]) -> list[str]:
  """What a run says before its first step: each few-shot draw, and with a source domain
  whether the target labels are used."""
  labels = target_labels_line(data_cfg)
  return [d.line() for d in draws] + ([labels] if labels else [])


def with_draws(config: mlc.ConfigDict, draws: Sequence[fewshot.Draw]):
  """The config to record in config.json: with a few-shot draw, plus `few_shot_draws`
  ({role: seed, digest, ...}) so two runs' subsets compare by their digests."""
  if not draws:
    return config
  return {**config.to_dict(), 'few_shot_draws': {d.role: d.record() for d in draws}}
