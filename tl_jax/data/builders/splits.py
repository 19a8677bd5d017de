"""Fixed, stratified splits for builders whose source data has none."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, seed: int,
                     fractions: Sequence[tuple[str, float]]) -> dict[str, np.ndarray]:
  """Indices per split, the same fractions in every class; the last split takes the rest."""
  rng = np.random.default_rng(seed)
  parts = {name: [] for name, _ in fractions}
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    start = 0
    for i, (name, frac) in enumerate(fractions):
      stop = len(idx) if i == len(fractions) - 1 else start + int(round(frac * len(idx)))
      parts[name].append(idx[start:stop])
      start = stop
  return {name: np.sort(np.concatenate(p)).astype(np.int64) for name, p in parts.items()}
