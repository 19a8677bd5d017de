"""ViT encoder in Flax linen, with the HF Flax parameter names (FlaxViTModel params load as is)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from tl_jax.models import heads as heads_lib
from tl_jax.models import layers
from tl_jax.models import options
from tl_jax.models.outputs import ModelOutput


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """Architecture (HF ViTConfig, names shortened) plus the transfer options."""
  image_size: int = 224
  patch_size: int = 16
  num_channels: int = 3
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  qkv_bias: bool = True
  class_token: bool = True  # False: big_vision 'gap' models, no [CLS] token
  add_pooler: bool = True
  pooler_output_size: int = 0  # 0: hidden_size
  pooler_act: str = 'tanh'
  # Transfer options.
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dropout_impl: str = 'hash'  # 'hash' (counter hash, rate rounded to k/65536) | 'flax'
  pooling: str = 'pooler'  # 'cls' | 'pooler' (dense + act on [CLS]) | 'mean' (over patch tokens)
  num_classes: int = 0
  heads: heads_lib.HeadSpec = ()
  output_hidden_states: bool = False
  output_attentions: bool = False  # attention probabilities of every layer (before dropout)
  lora_rank: int = 0  # > 0: LoRA adapters on lora_targets (tl_jax/models/lora.py)
  lora_alpha: float = 8.0  # the update is scaled by lora_alpha / lora_rank
  lora_targets: tuple[str, ...] = ('query', 'value')
  dtype: str = 'float32'
  param_dtype: str = 'float32'

  def __post_init__(self):
    options.validate(self)
    if self.pooling == 'cls' and not self.class_token:
      raise ValueError("pooling='cls' needs a class token and this ViT has none: use 'mean'.")
    if self.image_size % self.patch_size:
      raise ValueError(f'image_size {self.image_size} is not a multiple of patch_size '
                       f'{self.patch_size}.')
    layers.activation(self.pooler_act)

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  @property
  def num_prefix_tokens(self) -> int:
    return 1 if self.class_token else 0


def kernel_init(cfg) -> Any:
  # As HF Flax ViT.
  return nn.initializers.variance_scaling(cfg.initializer_range ** 2, 'fan_in', 'truncated_normal')


def resample_position_embeddings(posemb: jax.Array, grid: tuple[int, int], num_prefix_tokens: int,
                                 method: str = 'bilinear') -> jax.Array:
  """(1, prefix + g*g, D) -> (1, prefix + gh*gw, D): resize the patch grid, keep [CLS] as is.

  Half-pixel bilinear without antialiasing: torch `interpolate(mode='bilinear',
  align_corners=False)`, and big_vision's resample_posemb when upsampling.
  """
  prefix, tokens = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
  old = math.isqrt(tokens.shape[1])
  if old * old != tokens.shape[1]:
    raise ValueError(f'Position embeddings of {tokens.shape[1]} patch tokens are not a square '
                     'grid; cannot resample.')
  if (old, old) == tuple(grid):
    return posemb
  dim = tokens.shape[-1]
  resized = jax.image.resize(tokens.reshape(old, old, dim).astype(jnp.float32),
                             (grid[0], grid[1], dim), method=method, antialias=False)
  resized = resized.reshape(1, grid[0] * grid[1], dim).astype(posemb.dtype)
  return jnp.concatenate([prefix, resized], axis=1)


class _Embeddings(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    cfg = self.config
    patch = cfg.patch_size
    if images.ndim != 4 or images.shape[-1] != cfg.num_channels:
      raise ValueError(f'ViT wants NHWC images with {cfg.num_channels} channels, got shape '
                       f'{images.shape}.')
    if images.shape[1] % patch or images.shape[2] % patch:
      raise ValueError(f'Image size {images.shape[1:3]} is not a multiple of patch {patch}.')
    x = _PatchEmbeddings(cfg, name='patch_embeddings')(images.astype(cfg.dtype))
    batch, gh, gw, dim = x.shape
    x = x.reshape(batch, gh * gw, dim)
    if cfg.class_token:
      cls = self.param('cls_token', kernel_init(cfg), (1, 1, dim), cfg.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (batch, 1, dim)), x], axis=1)
    posemb = self.param('position_embeddings', kernel_init(cfg),
                        (1, cfg.num_prefix_tokens + cfg.grid_size ** 2, dim), cfg.param_dtype)
    # Another image size than the config's: resample at trace time (static shapes).
    posemb = resample_position_embeddings(posemb, (gh, gw), cfg.num_prefix_tokens)
    return layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)(x + posemb.astype(x.dtype))


class _PatchEmbeddings(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    cfg = self.config
    patch = cfg.patch_size
    return nn.Conv(cfg.hidden_size, (patch, patch), strides=(patch, patch), padding='VALID',
                   kernel_init=kernel_init(cfg), dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                   name='projection')(images)


class _Pooler(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, first: jax.Array) -> jax.Array:
    cfg = self.config
    h = nn.Dense(cfg.pooler_output_size or cfg.hidden_size, kernel_init=kernel_init(cfg),
                 dtype=cfg.dtype, param_dtype=cfg.param_dtype, name='dense')(first)
    return layers.activation(cfg.pooler_act)(h)


class _Dense(nn.Module):
  """`<name>/dense`, optionally followed by the activation."""
  config: ViTConfig
  features: int
  act: bool = False

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    cfg = self.config
    h = nn.Dense(self.features, kernel_init=kernel_init(cfg), dtype=cfg.dtype,
                 param_dtype=cfg.param_dtype, dot_general=layers.dense_dot_general(cfg.dtype),
                 name='dense')(h)
    return layers.activation(cfg.hidden_act)(h) if self.act else h


class _Attention(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    cfg = self.config
    context, probs = layers.self_attention(cfg, kernel_init(cfg), 'attention',
                                           use_bias=cfg.qkv_bias)(x, None, train)
    return _Dense(cfg, cfg.hidden_size, name='output')(context), probs


class ViTLayer(nn.Module):
  """Pre-LayerNorm transformer block."""
  config: ViTConfig

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    cfg = self.config
    drop = layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)

    def norm(name):
      return nn.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                          name=name)

    attended, probs = _Attention(cfg, name='attention')(norm('layernorm_before')(x), train)
    x = x + drop(attended)
    h = _Dense(cfg, cfg.intermediate_size, act=True, name='intermediate')(
        norm('layernorm_after')(x))
    return x + drop(_Dense(cfg, cfg.hidden_size, name='output')(h)), probs


class _LayerStack(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, x, train):
    states, attentions = [], []
    for i in range(self.config.num_layers):
      x, probs = ViTLayer(self.config, name=str(i))(x, train)
      states.append(x)
      attentions.append(probs)
    return states, attentions


class _Encoder(nn.Module):
  config: ViTConfig

  @nn.compact
  def __call__(self, x, train):
    return _LayerStack(self.config, name='layer')(x, train)


class ViTModel(options.Backbone, nn.Module):
  """ViT backbone + optional heads.

  `module.apply({'params': p}, images, train=False)` with NHWC float images -> ModelOutput.
  Images of another size than config.image_size resample the position embeddings on the fly.
  """
  config: ViTConfig
  kind: ClassVar[str] = 'image'
  model_type: ClassVar[str] = 'vit'

  def dummy_inputs(self) -> dict[str, jax.Array]:
    size = self.config.image_size
    return {'images': jnp.zeros((1, size, size, self.config.num_channels), jnp.float32)}

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> ModelOutput:
    cfg = self.config
    layers.check_dropout_rng(self, train)
    x = _Embeddings(cfg, name='embeddings')(images, train)
    states, attentions = _Encoder(cfg, name='encoder')(x, train)
    last = nn.LayerNorm(cfg.layer_norm_eps, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                        name='layernorm')(states[-1])

    patch_mean = layers.masked_mean(last[:, cfg.num_prefix_tokens:], None).astype(last.dtype)
    first = last[:, 0] if cfg.class_token else patch_mean
    # Runs whatever the pooling so the pooler params stay (free under jit when unused).
    pooler_out = _Pooler(cfg, name='pooler')(first) if cfg.add_pooler else None
    pooled = {'pooler': pooler_out, 'cls': first, 'mean': patch_mean}[cfg.pooling]
    logits = heads_lib.classifier_logits(
        layers.dropout(cfg.dropout_rate, train, cfg.dropout_impl)(pooled),
        num_classes=cfg.num_classes,
        heads=cfg.heads, kernel_init=nn.initializers.normal(cfg.initializer_range),
        dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    hidden_states = tuple([x] + states) if cfg.output_hidden_states else None
    return ModelOutput(last_hidden_state=last, pooled=pooled, hidden_states=hidden_states,
                       logits=logits,
                       attentions=tuple(attentions) if cfg.output_attentions else None)
