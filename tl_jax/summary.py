"""`tl-jax info`: the resolved config, the datasets and a parameter count per module."""

from __future__ import annotations

import collections
from typing import Any, Mapping

import jax
import numpy as np

from tl_jax import pieces as pieces_lib


def parameter_counts(params: Mapping[str, Any]) -> dict[str, int]:
  """Parameters per top-level module (embeddings, encoder, pooler, head, ...), in tree order."""
  counts = collections.OrderedDict()
  for name, subtree in params.items():
    counts[name] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(subtree))
  return counts


def format_counts(counts: Mapping[str, int]) -> str:
  total = sum(counts.values())
  width = max(len(k) for k in counts) if counts else 5
  lines = [f'  {name:<{width}}  {n:>12,}' for name, n in counts.items()]
  lines.append(f'  {"total":<{width}}  {total:>12,}')
  return '\n'.join(lines)


def print_info(config) -> None:
  pieces = pieces_lib.build(config)
  print('Config:')
  print(config, end='')
  for role, info in (('target', pieces.target_info), ('source', pieces.source_info)):
    if info is not None:
      splits = ', '.join(f'{k}={v}' for k, v in info.splits.items())
      print(f'Data {role}: {info.name} ({info.kind}, {info.num_classes} classes; {splits})')
      if info.skipped:  # hidden / OS-junk entries of a folder dataset, never classes or files
        shown = ', '.join(info.skipped[:5]) + (', ...' if len(info.skipped) > 5 else '')
        print(f'  skipped {len(info.skipped)} hidden entries: {shown}')
  module = pieces.module
  print(f'Model: {config.model.name} ({type(module).__name__}, {module.num_layers} layers, '
        f'init={config.model.init})')
  print(format_counts(parameter_counts(pieces.params)))
  if pieces.load_report.new_keys:
    print(f'New (freshly initialised): {", ".join(pieces.load_report.new_keys)}')
  if pieces.load_report.dropped_keys:
    print(f'Dropped from the checkpoint: {", ".join(pieces.load_report.dropped_keys)}')
