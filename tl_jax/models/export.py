"""Exports that Hugging Face tools load as they are: the layout, the image processor, the card.

Which layout a model gets depends on whether a stock transformers class computes the same
function (checked by tests/test_export_hf.py against the real pipelines):

  model, pooling, head          layout          load with
  BERT 'pooler', one head       hf-classifier   BertForSequenceClassification / pipeline
  ViT  'cls',    one head       hf-classifier   ViTForImageClassification / pipeline
  BERT 'cls' | 'mean', any head sentence-transformers (+ the head as a Dense module when single)
  ViT  'pooler' | 'mean', heads backbone+head   ViTModel + the documented head (README.md)
  no head                       backbone        BertModel / ViTModel

BertForSequenceClassification always runs the tanh pooler, ViTForImageClassification always
reads the [CLS] token: other poolings are not expressible there, and claiming those classes
would make transformers attach a fresh random head without an error. The hf-classifier layout
names weights as transformers does (`bert.` / `vit.` prefixes, `classifier.*`) and writes
id2label; the others keep our `head.*` / `heads.<name>.*` names and the class names in
labels.json, so a pipeline never shows real class names over a random head.

A 1-channel ViT (grayscale digits) is written as the 3-channel model transformers' image
pipeline feeds (it converts every image to RGB): the stored kernel takes the red channel and
zeros elsewhere, exact for grayscale inputs, and our loader takes the one channel back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HF_CLASSIFIER = 'hf-classifier'
SENTENCE_TRANSFORMERS = 'sentence-transformers'
BACKBONE_HEAD = 'backbone+head'
BACKBONE = 'backbone'
_HF_CLASSES = {'bert': 'BertForSequenceClassification', 'vit': 'ViTForImageClassification'}
_BACKBONE_CLASSES = {'bert': 'BertModel', 'vit': 'ViTModel'}
_PROJECTION = 'embeddings.patch_embeddings.projection.weight'
LABELS_FILE = 'labels.json'


@dataclasses.dataclass(frozen=True)
class Layout:
  kind: str  # one of the four above
  architecture: str  # the transformers class named in config.json
  note: str  # one line: what to load it with (the run's final report)


def layout_of(model_type: str, cfg) -> Layout:
  """The export layout of a model (see the module docstring)."""
  single = bool(cfg.num_classes) and not cfg.heads
  if single and ((model_type == 'bert' and cfg.pooling == 'pooler') or
                 (model_type == 'vit' and cfg.pooling == 'cls' and cfg.class_token)):
    task = 'text' if model_type == 'bert' else 'image'
    return Layout(HF_CLASSIFIER, _HF_CLASSES[model_type],
                  f"{_HF_CLASSES[model_type]}: pipeline('{task}-classification', model=DIR)")
  backbone = _BACKBONE_CLASSES[model_type]
  if not cfg.num_classes and not cfg.heads:
    return Layout(BACKBONE, backbone, f'{backbone} (no head)')
  if model_type == 'bert':
    return Layout(SENTENCE_TRANSFORMERS, backbone,
                  f"sentence-transformers ({cfg.pooling} pooling + head), not a transformers "
                  f"classifier: see DIR/README.md")
  return Layout(BACKBONE_HEAD, backbone,
                f'ViTModel + head.* ({cfg.pooling} pooling), not a transformers classifier: '
                'see DIR/README.md')


def label_names(num: int, names: Sequence[str] | None) -> list[str]:
  """The dataset's class names, `LABEL_i` for outputs beyond them (a head sized larger)."""
  names = list(names or ())
  return names[:num] + [f'LABEL_{i}' for i in range(len(names), num)]


# --- weights and config.json ------------------------------------------------------------------

def to_layout(layout: Layout, model_type: str, cfg, state: dict[str, np.ndarray],
              hf: dict[str, Any],
              class_names: Sequence[str] | dict[str, Sequence[str]] | None):
  """PyTorch-layout state (our names, unprefixed) + config.json dict -> the layout's."""
  hf = dict(hf, architectures=[layout.architecture], torch_dtype=cfg.param_dtype)
  if model_type == 'vit' and cfg.num_channels == 1 and _PROJECTION in state:
    kernel = state[_PROJECTION]  # (D, 1, p, p) -> (D, 3, p, p): red channel, zeros elsewhere
    state = dict(state)
    state[_PROJECTION] = np.concatenate([kernel, np.zeros_like(kernel), np.zeros_like(kernel)],
                                        axis=1)
    hf['num_channels'] = 3
    hf['tl_jax'] = dict(hf['tl_jax'], num_channels=1)
  if layout.kind != HF_CLASSIFIER:
    return state, hf
  names = label_names(cfg.num_classes, class_names)
  hf.update(id2label={str(i): n for i, n in enumerate(names)},
            label2id={n: i for i, n in enumerate(names)},
            problem_type='single_label_classification')
  prefix = model_type + '.'
  state = {('classifier.' + k[len('head.'):] if k.startswith('head.') else prefix + k): v
           for k, v in state.items()}
  return state, hf


def write_labels(directory: Path, cfg, class_names) -> None:
  """labels.json for layouts whose config.json must not carry id2label: {head: [names]}."""
  if cfg.heads:
    names = class_names if isinstance(class_names, dict) else {}
    labels = {h: label_names(n, names.get(h)) for h, n in cfg.heads}
  else:
    labels = {'head': label_names(cfg.num_classes, class_names)}
  (directory / LABELS_FILE).write_text(json.dumps(labels, indent=2) + '\n')


def write_sentence_transformers(directory: Path, cfg, state: dict[str, np.ndarray],
                                max_length: int | None) -> None:
  """modules.json: Transformer (this directory) -> Pooling (cls | mean) [-> Dense = the head].
  SentenceTransformer(DIR).encode(texts) then returns the logits (one head) or the pooled
  features (named heads: apply heads.<name>.* as README.md shows)."""
  from safetensors.numpy import save_file
  modules = [dict(idx=0, name='0', path='', type='sentence_transformers.models.Transformer'),
             dict(idx=1, name='1', path='1_Pooling', type='sentence_transformers.models.Pooling')]
  (directory / '1_Pooling').mkdir(exist_ok=True)
  pooling = {'word_embedding_dimension': cfg.hidden_size,
             'pooling_mode_cls_token': cfg.pooling == 'cls',
             'pooling_mode_mean_tokens': cfg.pooling == 'mean',
             'pooling_mode_max_tokens': False, 'pooling_mode_mean_sqrt_len_tokens': False,
             'pooling_mode_weightedmean_tokens': False, 'pooling_mode_lasttoken': False,
             'include_prompt': True}
  _write_json(directory / '1_Pooling' / 'config.json', pooling)
  if cfg.num_classes:
    modules.append(dict(idx=2, name='2', path='2_Dense', type='sentence_transformers.models.Dense'))
    (directory / '2_Dense').mkdir(exist_ok=True)
    _write_json(directory / '2_Dense' / 'config.json', {
        'in_features': cfg.hidden_size, 'out_features': cfg.num_classes, 'bias': True,
        'activation_function': 'torch.nn.modules.linear.Identity'})
    save_file({'linear.weight': state['head.weight'], 'linear.bias': state['head.bias']},
              directory / '2_Dense' / 'model.safetensors', metadata={'format': 'pt'})
  _write_json(directory / 'modules.json', modules)
  _write_json(directory / 'sentence_bert_config.json',
              {'max_seq_length': max_length or cfg.max_position_embeddings,
               'do_lower_case': False})


def write_image_processor(directory: Path, *, size: int, mean: Sequence[float],
                          std: Sequence[float], channels: int) -> None:
  """preprocessor_config.json as training preprocessed: resize to `size` (bilinear with
  antialiasing, PIL's BILINEAR is the same filter), x/255, (x - mean) / std per channel."""
  channels = max(channels, 3)  # the pipeline hands RGB (see the module docstring)
  per_channel = lambda v: [float(x) for x in (list(v) * channels if len(v) == 1 else v)]
  _write_json(directory / 'preprocessor_config.json', {
      'image_processor_type': 'ViTImageProcessor', 'do_convert_rgb': True,
      'do_resize': True, 'size': {'height': size, 'width': size}, 'resample': 2,
      'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
      'image_mean': per_channel(mean), 'image_std': per_channel(std)})


def _write_json(path: Path, value) -> None:
  path.write_text(json.dumps(value, indent=2) + '\n')


# --- our loader: the names above back to our tree ------------------------------------------------

def from_export(weights: dict[tuple[str, ...], np.ndarray], kwargs: dict[str, Any],
                model_type: str):
  """An hf-classifier export's `classifier/*` -> `head/*` (only when config.json says we wrote
  it: tl_jax extras with num_classes), and a 1-channel ViT's widened kernel back to 1 channel."""
  if kwargs.get('num_classes') and not any(k[0] == 'head' for k in weights):
    weights = {(('head',) + k[1:] if k[0] == 'classifier' else k): v for k, v in weights.items()}
  key = ('embeddings', 'patch_embeddings', 'projection', 'kernel')
  channels = kwargs.get('num_channels')
  if model_type == 'vit' and key in weights and channels and weights[key].shape[2] > channels:
    kernel = weights[key]  # HWIO
    if not np.any(kernel[:, :, channels:]):  # only what to_layout added
      weights = dict(weights)
      weights[key] = np.ascontiguousarray(kernel[:, :, :channels])
  return weights


# --- a training run's export: weights, processor, model card -------------------------------------

def head_class_names(config, module, infos: dict[str, Any]):
  """Class names per head, as pieces._heads sized them: one list for the shared head,
  {name: list} for named heads (a domain's own `data.<domain>.head`, else 'shared')."""
  if not module.config.heads:
    return tuple(infos['target'].class_names)
  names = {}
  for domain, info in infos.items():
    if info is not None:
      names.setdefault(config.data[domain].head or 'shared', tuple(info.class_names))
  return names


def export_run(module, params, directory, *, config, metrics: dict[str, float], step: int,
               infos: dict[str, Any]) -> Layout:
  """What `tl-jax train` leaves in export/: the checkpoint in its layout, the tokenizer (text)
  or preprocessor_config.json (image), and README.md. Returns the layout (for the report)."""
  from tl_jax.models import pretrained  # pretrained imports this module
  directory = Path(directory)
  text = module.kind == 'text'
  class_names = head_class_names(config, module, infos)
  pretrained.save_pretrained(module, params, directory,
                             tokenizer_from=config.model.name if text else None,
                             class_names=class_names,
                             max_length=config.data.max_length if text else None)
  cfg = module.config
  if not text:
    write_image_processor(directory, size=config.data.image_size or cfg.image_size,
                          mean=config.data.image_mean, std=config.data.image_std,
                          channels=cfg.num_channels)
  layout = layout_of(module.model_type, cfg)
  (directory / 'README.md').write_text(model_card(
      layout, module, config=config, metrics=metrics, step=step, class_names=class_names))
  return layout


def _usage(layout: Layout, module, config) -> list[str]:
  cfg = module.config
  if layout.kind == HF_CLASSIFIER and module.kind == 'text':
    return [
        f'A `{layout.architecture}` (id2label holds the class names):', '', '```python',
        'from transformers import pipeline',
        "clf = pipeline('text-classification', model='DIR', truncation=True)",
        "clf('some text', top_k=None)  # every class with its probability", '```', '',
        f'`truncation=True` cuts at {config.data.max_length} tokens as training did (the '
        "tokenizer's model_max_length)." + (
            " Two fields were trained as a text pair: pass `{'text': a, 'text_pair': b}`."
            if len(config.data.text_fields) > 1 else '')]
  if layout.kind == HF_CLASSIFIER:
    lines = [f'A `{layout.architecture}` (id2label holds the class names); '
             'preprocessor_config.json resizes and normalises as training did:', '',
             '```python', 'from transformers import pipeline',
             "clf = pipeline('image-classification', model='DIR')",
             "clf(pil_image, top_k=None)  # every class with its probability", '```']
    if cfg.num_channels == 1:
      lines += ['', 'Trained on 1-channel (grayscale) images. The pipeline converts every image '
                'to RGB, so the export is the equivalent 3-channel model: the patch kernel reads '
                'the red channel (zeros elsewhere), exact for grayscale inputs; a colour image '
                'is seen through its red channel only.']
    return lines
  pooled = {'cls': 'h[:, 0]', 'mean': '(h * m).sum(1) / m.sum(1).clamp(min=1e-9)',
            'pooler': 'out.pooler_output'}[cfg.pooling]
  heads = ([('head', cfg.num_classes)] if cfg.num_classes else
           [(f'heads.{n}', c) for n, c in cfg.heads])
  why = {('bert', 'cls'): 'BertForSequenceClassification runs the tanh pooler on [CLS], this '
                          'model classifies the [CLS] state itself',
         ('bert', 'mean'): 'BertForSequenceClassification classifies the pooler output of '
                           '[CLS], this model the mean over the tokens',
         ('vit', 'mean'): 'ViTForImageClassification classifies the [CLS] token, this model '
                          'the mean of the patch tokens',
         ('vit', 'pooler'): 'ViTForImageClassification classifies the [CLS] token, this model '
                            'the pooler output (dense + tanh on [CLS])'}.get(
             (module.model_type, cfg.pooling), '')
  if cfg.heads:
    why = 'a transformers classifier has one head, this model has ' + ', '.join(
        f'{n} ({c} classes)' for n, c in cfg.heads)
  lines = [f'**Not a transformers classifier** ({why}): `pipeline(...)` or '
           '`AutoModelFor*Classification` on this directory would attach a new random head. '
           'The head is `' + '`, `'.join(f'{h}.weight` ({c}, {cfg.hidden_size}) / `{h}.bias'
                                          for h, c in heads) +
           '` in model.safetensors; class names per head in labels.json.', '']
  if module.kind == 'text':
    if len(config.data.text_fields) > 1:
      lines += [f'Trained on text pairs ({config.data.text_fields[0]}, then the other fields '
                'joined by a space): pass `(first, rest)` tuples to `encode`, '
                '`tok(firsts, rests, ...)` to the tokenizer.', '']
    if cfg.num_classes:
      lines += ['sentence-transformers layout (Transformer -> Pooling -> Dense = the head): '
                '`encode` returns the logits.', '', '```python', 'import json',
                'from sentence_transformers import SentenceTransformer',
                "model = SentenceTransformer('DIR')",
                "probs = model.encode(texts, convert_to_tensor=True).softmax(-1)",
                "names = json.load(open('DIR/labels.json'))['head']",
                'predicted = [names[i] for i in probs.argmax(-1)]', '```', '']
    else:
      lines += ['sentence-transformers layout (Transformer -> Pooling): `encode` returns the '
                'pooled features; apply a head to them as below.', '']
    lines += ['With transformers alone:', '', '```python', 'import torch, safetensors.torch',
              'from transformers import AutoModel, AutoTokenizer',
              "tok, model = AutoTokenizer.from_pretrained('DIR'), AutoModel.from_pretrained('DIR')",
              f'enc = tok(texts, padding=True, truncation=True, max_length='
              f'{config.data.max_length}, return_tensors=\'pt\')',
              'with torch.no_grad():', '  out = model(**enc)',
              "h, m = out.last_hidden_state, enc['attention_mask'].unsqueeze(-1).float()",
              f'pooled = {pooled}']
  else:
    lines += ['With transformers (preprocessor_config.json resizes and normalises as training '
              'did):', '', '```python', 'import torch, safetensors.torch',
              'from transformers import AutoImageProcessor, AutoModel',
              "proc, model = AutoImageProcessor.from_pretrained('DIR'), "
              "AutoModel.from_pretrained('DIR')",
              'with torch.no_grad():', "  out = model(**proc(images, return_tensors='pt'))",
              'h = out.last_hidden_state',
              'pooled = ' + ('h[:, 1:].mean(1)' if cfg.pooling == 'mean' else pooled)]
  head = heads[0][0]
  lines += ["w = safetensors.torch.load_file('DIR/model.safetensors')",
            f"logits = pooled @ w['{head}.weight'].T + w['{head}.bias']"
            + ('  # one head of several' if cfg.heads else ''), '```']
  return lines


def _freezing(config) -> str:
  t = config.transfer
  if t.stages:
    return 'stages ' + '; '.join(f'from step {s}: {r}' for s, r in t.stages)
  if t.schedule:
    return f'{t.schedule} (every {t.schedule_every} steps)'
  if t.freeze_preset:
    return f'preset {t.freeze_preset!r}'
  return 'rules ' + ', '.join(f'{r!r} -> {g}' for r, g in t.freeze)


def _short(name: str) -> str:
  """A title-sized name: a local path or `folder:` dataset by its last part."""
  name = name[len('folder:'):] if name.startswith('folder:') else name
  return Path(name).name if Path(name).exists() else name


def model_card(layout: Layout, module, *, config, metrics: dict[str, float], step: int,
               class_names) -> str:
  """README.md: what the hub shows. Base model, data, schedule, method, metrics, how to load."""
  m, d, t, o = config.model, config.data, config.transfer, config.optimizer
  task = 'text-classification' if module.kind == 'text' else 'image-classification'
  library = ('sentence-transformers' if layout.kind == SENTENCE_TRANSFORMERS else 'transformers')
  front = ['---', f'library_name: {library}', 'tags:', '- tl_jax', '- transfer-learning']
  if layout.kind == HF_CLASSIFIER:
    front.append(f'pipeline_tag: {task}')
  base = 'sentence-transformers/all-MiniLM-L6-v2' if m.name == 'minilm' else m.name
  if m.init == 'pretrained' and not Path(base).exists() and '/' in base:
    front.append(f'base_model: {base}')
  front.append('---')

  def domain(role):
    c = d[role]
    extra = [f'{c.few_shot} per class' if c.few_shot else '',
             'labels unused' if not c.labeled else '', f'head {c.head}' if c.head else '']
    extra = ', '.join(filter(None, extra))
    return f'`{c.name}` (train split `{c.train_split}`{", " + extra if extra else ""})'

  if isinstance(class_names, dict):
    classes = '; '.join(f'{h}: {", ".join(n)}' for h, n in class_names.items())
  else:
    classes = ', '.join(class_names)
  inputs = (f'max {d.max_length} tokens, fields {", ".join(d.text_fields)}'
            if module.kind == 'text' else
            f'{d.image_size or module.config.image_size} px, mean {tuple(d.image_mean)}, '
            f'std {tuple(d.image_std)} on 0..1 pixels')
  lam = t.lam
  objectives = ', '.join(t.objectives)
  if d.source.name:
    objectives += f'; source loss weighted by λ {lam.kind} {lam.value}'
  if t.l2sp_alpha or t.l2sp_beta:
    objectives += f'; L2-SP α={t.l2sp_alpha} β={t.l2sp_beta}'
  lines = front + [
      f'# {_short(m.name)} fine-tuned on {_short(d.target.name)} (tl_jax)', '',
      f'- **Base model:** `{base}` ({m.init} init), '
      f'{"BERT" if module.model_type == "bert" else "ViT"} with '
      f'`{module.config.pooling}` pooling' + (f', LoRA rank {m.lora_rank} (merged)'
                                              if m.lora_rank else ''),
      f'- **Data:** target {domain("target")}' + (f', source {domain("source")}'
                                                   if d.source.name else '') + f'; {inputs}',
      f'- **Classes:** {classes}',
      f'- **Freezing:** {_freezing(config)}',
      f'- **Method:** {objectives}; {o.name}, lr {o.learning_rate} ({o.schedule}), '
      f'batch {d.batch_size}, {step} steps, seed {config.seed}',
      f'- **Export layout:** {layout.kind} (`{layout.architecture}`)', '',
      f'## Metrics (step {step})', '', '| split | metric | value |', '| --- | --- | --- |']
  for key, value in sorted(metrics.items()):
    split, _, metric = key.rpartition('/')
    lines.append(f'| {split} | {metric} | {value:.4f} |')
  if not metrics:
    lines.append('| (no eval split) | | |')
  lines += ['', '## Use', '', '`DIR` is this directory (or its hub id once uploaded).', '']
  lines += _usage(layout, module, config) + [
      '', 'With tl_jax: `tl_jax.models.load_pretrained(\'DIR\')` restores the model bitwise.', '']
  return '\n'.join(lines)
