"""One model call on one domain's batch: which batch keys a model reads, and how it is called.

The train step, the feature extractors and the experiments all call models through `forward`, so
a batch means the same inputs everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

# prefix_hidden: cached boundary activations of a frozen prefix (tl_jax.train.prefix_cache).
TEXT_INPUTS = ('input_ids', 'attention_mask', 'token_type_ids', 'prefix_hidden')
IMAGE_INPUT = 'image'


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
  """The keys of `batch` a model reads (labels, weights and ids stay behind)."""
  return {k: v for k, v in batch.items() if k in TEXT_INPUTS or k == IMAGE_INPUT}


def forward(module: Any, params: Any, batch: Mapping[str, Any], *, train: bool,
            rng: jax.Array | None = None) -> Any:
  """The model on one domain's batch: ViT takes `image`, BERT the text inputs."""
  rngs = {'dropout': rng} if train else {}
  if IMAGE_INPUT in batch:
    return module.apply({'params': params}, batch[IMAGE_INPUT], train=train, rngs=rngs)
  inputs = {k: batch[k] for k in TEXT_INPUTS if k in batch}
  return module.apply({'params': params}, train=train, rngs=rngs, **inputs)
