"""Checkpoint key/layout conversion onto our (HF Flax) param tree, as flat {('a','b'): array} dicts.

- PyTorch layout (model.safetensors / pytorch_model.bin): Linear weight (out, in) -> kernel
  (in, out); LayerNorm weight|gamma / bias|beta -> scale / bias; Embedding weight -> embedding;
  Conv weight OIHW -> kernel HWIO. `bert.` / `vit.` prefixes are stripped.
- HF Flax (flax_model.msgpack): already our names; a `bert` / `vit` top level is stripped.
- vision_transformer / big_vision `.npz`: see `npz_to_flax`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

Flat = dict[tuple[str, ...], np.ndarray]

# Top-level names of our tree; anything else in a checkpoint is another model's head.
BACKBONE_ROOTS = ('embeddings', 'encoder', 'pooler', 'layernorm')
HEAD_ROOTS = ('head', 'heads')
MODEL_PREFIXES = ('bert', 'vit')
# PyTorch buffers that carry no learned state.
_BUFFERS = re.compile(r'(^|\.)(position_ids|token_type_ids)$')


def _is_norm(module_name: str) -> bool:
  # BERT `LayerNorm`, ViT `layernorm`, `layernorm_before`, `layernorm_after`; not head names.
  return module_name in ('LayerNorm', 'layernorm') or module_name.startswith('layernorm_')


def strip_prefix(flat: Flat) -> Flat:
  """`bert/embeddings/...` -> `embeddings/...` (BertFor* / ViTFor* checkpoints)."""
  return {k[1:] if len(k) > 1 and k[0] in MODEL_PREFIXES else k: v for k, v in flat.items()}


def torch_to_flax(state: dict[str, np.ndarray]) -> Flat:
  flat: Flat = {}
  for key, value in state.items():
    if _BUFFERS.search(key):
      continue
    *path, leaf = key.split('.')
    value = np.asarray(value)
    norm = value.ndim == 1 and _is_norm(path[-1] if path else '')
    owner = path[-1] if path else ''
    if norm and leaf in ('weight', 'gamma'):
      leaf = 'scale'
    elif norm and leaf == 'beta':
      leaf = 'bias'
    elif leaf == 'weight' and 'embeddings' in path[:2] and owner.endswith('_embeddings') and (
        value.ndim == 2):
      leaf = 'embedding'
    elif leaf == 'weight' and value.ndim == 2:
      leaf, value = 'kernel', value.T
    elif leaf == 'weight' and value.ndim == 4:
      leaf, value = 'kernel', value.transpose(2, 3, 1, 0)
    flat[tuple(path) + (leaf,)] = np.ascontiguousarray(value)
  return strip_prefix(flat)


def flax_to_torch(flat: Flat) -> dict[str, np.ndarray]:
  """Inverse of `torch_to_flax` (unprefixed keys, as HF BertModel / ViTModel save them)."""
  state = {}
  for path, value in flat.items():
    *mod, leaf = path
    value = np.asarray(value)
    if leaf == 'kernel' and value.ndim == 2:
      leaf, value = 'weight', value.T
    elif leaf == 'kernel' and value.ndim == 4:
      leaf, value = 'weight', value.transpose(3, 2, 0, 1)
    elif leaf in ('scale', 'embedding'):
      leaf = 'weight'
    state['.'.join(mod + [leaf])] = np.ascontiguousarray(value)
  return state


def split_foreign(flat: Flat) -> tuple[Flat, Flat]:
  """(ours, foreign): foreign = another model's head (`classifier`, `cls`, npz `head`, ...)."""
  ours, foreign = {}, {}
  for k, v in flat.items():
    (ours if k[0] in BACKBONE_ROOTS + HEAD_ROOTS else foreign)[k] = v
  return ours, foreign


# --- vision_transformer / big_vision .npz -------------------------------------------------------

_BLOCK = re.compile(r'^Transformer/encoderblock_(\d+)/(.+)$')


def _unstack_scanned(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """big_vision with scan=True stores `Transformer/encoderblock/...` with a leading layer axis."""
  out = {}
  for k, v in arrays.items():
    if k.startswith('Transformer/encoderblock/'):
      rest = k[len('Transformer/encoderblock/'):]
      for i in range(v.shape[0]):
        out[f'Transformer/encoderblock_{i}/{rest}'] = v[i]
    else:
      out[k] = v
  return out


def npz_to_flax(arrays: dict[str, np.ndarray]) -> tuple[Flat, dict[str, Any]]:
  """Maps an original ViT `.npz` onto our tree and infers its architecture.

  vision_transformer names blocks `LayerNorm_0, MultiHeadDotProductAttention_1, LayerNorm_2,
  MlpBlock_3`; big_vision `LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0`:
  norms are taken in index order (first = before attention). Attention kernels (D, H, Dh) and
  (H, Dh, D) are flattened to (D, D). Returns (flat params, ViTConfig kwargs).
  """
  arrays = {k[len('params/'):] if k.startswith('params/') else k: v for k, v in arrays.items()}
  arrays = _unstack_scanned({k: np.asarray(v) for k, v in arrays.items()})
  if 'embedding/kernel' not in arrays or 'Transformer/posembed_input/pos_embedding' not in arrays:
    raise KeyError('Not a ViT .npz checkpoint: expected keys embedding/kernel and '
                   'Transformer/posembed_input/pos_embedding.')
  flat: Flat = {}
  used = set()

  def take(src: str, dst: tuple[str, ...], fn=lambda a: a):
    flat[dst] = np.ascontiguousarray(fn(arrays[src]))
    used.add(src)

  take('embedding/kernel', ('embeddings', 'patch_embeddings', 'projection', 'kernel'))
  take('embedding/bias', ('embeddings', 'patch_embeddings', 'projection', 'bias'))
  class_token = 'cls' in arrays
  if class_token:
    take('cls', ('embeddings', 'cls_token'))
  take('Transformer/posembed_input/pos_embedding', ('embeddings', 'position_embeddings'))
  take('Transformer/encoder_norm/scale', ('layernorm', 'scale'))
  take('Transformer/encoder_norm/bias', ('layernorm', 'bias'))

  blocks: dict[int, dict[str, str]] = {}
  for k in arrays:
    if m := _BLOCK.match(k):
      blocks.setdefault(int(m.group(1)), {})[m.group(2)] = k
  num_heads = intermediate = None
  for i, names in sorted(blocks.items()):
    layer = ('encoder', 'layer', str(i))
    mods = sorted({n.split('/')[0] for n in names}, key=lambda m: int(m.rsplit('_', 1)[1]))
    norms = [m for m in mods if m.startswith('LayerNorm_')]
    attn = [m for m in mods if m.startswith('MultiHeadDotProductAttention_')]
    mlp = [m for m in mods if m.startswith('MlpBlock_')]
    if len(norms) != 2 or len(attn) != 1 or len(mlp) != 1:
      raise KeyError(f'encoderblock_{i}: unexpected modules {mods}.')
    base = f'Transformer/encoderblock_{i}'
    for norm, name in zip(norms, ('layernorm_before', 'layernorm_after')):
      for leaf in ('scale', 'bias'):
        take(f'{base}/{norm}/{leaf}', layer + (name, leaf))
    for proj in ('query', 'key', 'value'):
      src = f'{base}/{attn[0]}/{proj}'
      num_heads = arrays[f'{src}/kernel'].shape[1]
      take(f'{src}/kernel', layer + ('attention', 'attention', proj, 'kernel'),
           lambda a: a.reshape(a.shape[0], -1))
      take(f'{src}/bias', layer + ('attention', 'attention', proj, 'bias'),
           lambda a: a.reshape(-1))
    take(f'{base}/{attn[0]}/out/kernel', layer + ('attention', 'output', 'dense', 'kernel'),
         lambda a: a.reshape(-1, a.shape[-1]))
    take(f'{base}/{attn[0]}/out/bias', layer + ('attention', 'output', 'dense', 'bias'))
    for dense, name in (('Dense_0', 'intermediate'), ('Dense_1', 'output')):
      for leaf in ('kernel', 'bias'):
        take(f'{base}/{mlp[0]}/{dense}/{leaf}', layer + (name, 'dense', leaf))
    intermediate = arrays[f'{base}/{mlp[0]}/Dense_0/kernel'].shape[1]

  add_pooler = 'pre_logits/kernel' in arrays
  if add_pooler:
    take('pre_logits/kernel', ('pooler', 'dense', 'kernel'))
    take('pre_logits/bias', ('pooler', 'dense', 'bias'))
  for k in arrays:  # the pretraining classifier: kept aside as a foreign head
    if k.startswith('head/'):
      flat[('npz_head',) + tuple(k.split('/')[1:])] = arrays[k]
      used.add(k)
  unused = sorted(set(arrays) - used)
  if unused:
    raise KeyError(f'Unrecognised keys in the ViT .npz: {unused}')

  patch, _, channels, hidden = arrays['embedding/kernel'].shape
  num_tokens = arrays['Transformer/posembed_input/pos_embedding'].shape[1] - int(class_token)
  grid = math.isqrt(num_tokens)
  config = dict(
      image_size=grid * patch, patch_size=patch, num_channels=channels, hidden_size=hidden,
      num_layers=len(blocks), num_heads=num_heads, intermediate_size=intermediate,
      hidden_act='gelu_pytorch_tanh',  # flax nn.gelu default: tanh approximation
      layer_norm_eps=1e-6,  # flax nn.LayerNorm default
      class_token=class_token, add_pooler=add_pooler,
      pooler_output_size=arrays['pre_logits/kernel'].shape[1] if add_pooler else 0,
  )
  return flat, config
