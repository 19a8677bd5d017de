"""BERT encoder in Flax linen, with HF Flax parameter names (FlaxBertModel params load as is)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from tl_jax.models import heads as heads_lib
from tl_jax.models import layers
from tl_jax.models import options
from tl_jax.models.outputs import ModelOutput

@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture (HF BertConfig, names shortened) plus the transfer options."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  add_pooler: bool = True
  # Transfer options.
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  dropout_impl: str = 'hash'  # 'hash' (counter hash, rate rounded to k/65536) | 'flax'
  pooling: str = 'pooler'  # 'cls' | 'pooler' (dense + tanh on [CLS]) | 'mean' (over the mask)
  num_classes: int = 0  # > 0: one head `head/...`
  heads: heads_lib.HeadSpec = ()  # (('topic', 5), ...): named heads `heads/<name>/...`
  output_hidden_states: bool = False
  output_attentions: bool = False  # attention probabilities of every layer (before dropout)
  lora_rank: int = 0  # > 0: LoRA adapters on lora_targets (tl_jax/models/lora.py)
  lora_alpha: float = 8.0  # the update is scaled by lora_alpha / lora_rank
  lora_targets: tuple[str, ...] = ('query', 'value')
  dtype: str = 'float32'  # compute dtype
  param_dtype: str = 'float32'

  def __post_init__(self):
    options.validate(self)


def kernel_init(cfg) -> Any:
  return nn.initializers.normal(stddev=cfg.initializer_range)


class _DenseNorm(nn.Module):
  """HF BertSelfOutput / BertOutput: LayerNorm(dropout(dense(h)) + residual)."""
  config: BertConfig

  @nn.compact
  def __call__(self, h: jax.Array, residual: jax.Array, train: bool) -> jax.Array:
    cfg = self.config
    h = nn.Dense(cfg.hidden_size, kernel_init=kernel_init(cfg), dtype=cfg.dtype,
                 param_dtype=cfg.param_dtype, dot_general=layers.dense_dot_general(cfg.dtype),
                 name='dense')(h)
    h = layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)(h)
    return nn.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                        name='LayerNorm')(h + residual)


class _Attention(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array | None,
               train: bool) -> tuple[jax.Array, jax.Array]:
    cfg = self.config
    context, probs = layers.self_attention(cfg, kernel_init(cfg), 'self')(x, bias, train)
    return _DenseNorm(cfg, name='output')(context, x, train), probs


class _Intermediate(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    cfg = self.config
    h = nn.Dense(cfg.intermediate_size, kernel_init=kernel_init(cfg), dtype=cfg.dtype,
                 param_dtype=cfg.param_dtype, dot_general=layers.dense_dot_general(cfg.dtype),
                 name='dense')(h)
    return layers.activation(cfg.hidden_act)(h)


class BertLayer(nn.Module):
  """Post-LayerNorm transformer block: attention, intermediate, output."""
  config: BertConfig

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array | None,
               train: bool) -> tuple[jax.Array, jax.Array]:
    attended, probs = _Attention(self.config, name='attention')(x, bias, train)
    h = _Intermediate(self.config, name='intermediate')(attended)
    return _DenseNorm(self.config, name='output')(h, attended, train), probs


class _LayerStack(nn.Module):
  """`layer/<i>`, with string indices as in HF; runs layers start..stop-1 only.
  Returns (hidden state after each layer, attention probabilities of each layer)."""
  config: BertConfig

  @nn.compact
  def __call__(self, x, bias, train, start=0, stop=None):
    states, attentions = [], []
    for i in range(start, self.config.num_layers if stop is None else stop):
      x, probs = BertLayer(self.config, name=str(i))(x, bias, train)
      states.append(x)
      attentions.append(probs)
    return states, attentions


class _Encoder(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x, bias, train, start=0, stop=None):
    return _LayerStack(self.config, name='layer')(x, bias, train, start, stop)


class _Embeddings(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids, token_type_ids, train):
    cfg = self.config
    length = input_ids.shape[1]
    if length > cfg.max_position_embeddings:
      raise ValueError(f'Sequence length {length} exceeds max_position_embeddings '
                       f'{cfg.max_position_embeddings}: truncate the inputs.')

    def embed(num, name):
      return nn.Embed(num, cfg.hidden_size, embedding_init=kernel_init(cfg), dtype=cfg.dtype,
                      param_dtype=cfg.param_dtype, name=name)

    words = embed(cfg.vocab_size, 'word_embeddings')(input_ids)
    positions = embed(cfg.max_position_embeddings, 'position_embeddings')(
        jnp.arange(length)[None, :])
    types = embed(cfg.type_vocab_size, 'token_type_embeddings')(token_type_ids)
    x = nn.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                     name='LayerNorm')(words + types + positions)
    return layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)(x)


class _Pooler(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, first_token):
    cfg = self.config
    return jnp.tanh(nn.Dense(cfg.hidden_size, kernel_init=kernel_init(cfg), dtype=cfg.dtype,
                             param_dtype=cfg.param_dtype, name='dense')(first_token))


class BertModel(options.Backbone, nn.Module):
  """BERT backbone + optional heads.

  `module.apply({'params': p}, input_ids=..., attention_mask=..., token_type_ids=..., train=False)`
  -> ModelOutput. attention_mask and token_type_ids are optional; train=True needs a 'dropout' rng.

  Split runs (frozen-prefix caching, tl_jax.train.prefix_cache): `stop_layer=k` returns after
  layer k-1 with `last_hidden_state` = that boundary state (pooled/logits None);
  `prefix_hidden=h, start_layer=k` starts from such a state instead of the embeddings. The two
  halves compose to the full forward (dropout masks depend on the layer path, not on the split).
  """
  config: BertConfig
  kind: ClassVar[str] = 'text'
  model_type: ClassVar[str] = 'bert'

  def dummy_inputs(self) -> dict[str, jax.Array]:
    return {'input_ids': jnp.zeros((1, 8), jnp.int32)}

  @nn.compact
  def __call__(self, input_ids: jax.Array | None = None, attention_mask: jax.Array | None = None,
               token_type_ids: jax.Array | None = None, *, train: bool = False,
               prefix_hidden: jax.Array | None = None, start_layer: int = 0,
               stop_layer: int | None = None) -> ModelOutput:
    cfg = self.config
    layers.check_dropout_rng(self, train)
    if not 0 <= start_layer <= (cfg.num_layers if stop_layer is None else stop_layer) <= \
        cfg.num_layers:
      raise ValueError(f'need 0 <= start_layer ({start_layer}) <= stop_layer ({stop_layer}) <= '
                       f'num_layers ({cfg.num_layers})')
    if (prefix_hidden is None) != (start_layer == 0):
      raise ValueError('start_layer > 0 needs prefix_hidden (the state after layer '
                       'start_layer - 1), and prefix_hidden needs start_layer > 0')
    if prefix_hidden is None:
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
      x = _Embeddings(cfg, name='embeddings')(input_ids, token_type_ids, train)
    else:
      x = prefix_hidden.astype(cfg.dtype)
    states, attentions = _Encoder(cfg, name='encoder')(
        x, layers.attention_bias(attention_mask), train, start_layer, stop_layer)
    last = states[-1] if states else x
    if stop_layer is not None:
      return ModelOutput(last_hidden_state=last, pooled=None)

    # The pooler runs (and owns params) whatever the pooling, so checkpoints keep their pooler;
    # under jit an unused pooler costs nothing.
    pooler_out = _Pooler(cfg, name='pooler')(last[:, 0]) if cfg.add_pooler else None
    if cfg.pooling == 'pooler':
      pooled = pooler_out
    elif cfg.pooling == 'cls':
      pooled = last[:, 0]
    else:
      pooled = layers.masked_mean(last, attention_mask).astype(last.dtype)
    logits = heads_lib.classifier_logits(
        layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)(pooled),
        num_classes=cfg.num_classes,
        heads=cfg.heads, kernel_init=kernel_init(cfg), dtype=cfg.dtype,
        param_dtype=cfg.param_dtype)
    hidden_states = tuple([x] + states) if cfg.output_hidden_states else None
    return ModelOutput(last_hidden_state=last, pooled=pooled, hidden_states=hidden_states,
                       logits=logits,
                       attentions=tuple(attentions) if cfg.output_attentions else None)
