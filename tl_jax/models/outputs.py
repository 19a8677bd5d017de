"""What every backbone returns."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class ModelOutput:
  """Backbone outputs.

  last_hidden_state: (B, L, D) final sequence output (ViT: after the final LayerNorm).
  pooled: (B, D) the configured pooling ('cls' | 'pooler' | 'mean').
  hidden_states: tuple of (B, L, D), embeddings output first then every layer (as HF), or None.
  logits: (B, C) fp32 for one head, {name: (B, C)} for named heads, None in features-only mode.
  attentions: tuple of (B, heads, L, L) attention probabilities per layer (output_attentions),
    or None.
  """
  last_hidden_state: jax.Array
  pooled: jax.Array
  hidden_states: tuple[jax.Array, ...] | None = None
  logits: Any = None
  attentions: tuple[jax.Array, ...] | None = None
