"""Building blocks shared by BERT and ViT: self-attention, activations, pooling helpers."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from tl_jax.models import lora

# HF `hidden_act` names; 'gelu' is the exact (erf) form, as in HF and the original BERT.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),
    'gelu_new': lambda x: jax.nn.gelu(x, approximate=True),
    'gelu_pytorch_tanh': lambda x: jax.nn.gelu(x, approximate=True),
    'gelu_fast': lambda x: jax.nn.gelu(x, approximate=True),
    'relu': jax.nn.relu,
    'silu': jax.nn.silu,
    'swish': jax.nn.silu,
    'tanh': jnp.tanh,
    'linear': lambda x: x,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(f'Unsupported activation {name!r}; known: {sorted(_ACTIVATIONS)}.')
  return _ACTIVATIONS[name]


def _transposed(a: jax.Array) -> jax.Array:
  """a.T as a real copy. XLA folds a plain transpose into the dot's dimension numbers, and XLA:CPU
  then upcasts a bf16 dot with a transposed operand to f32; through a reshape the copy stays and
  the dot stays bf16 (YNNPACK, ~2x the f32 rate with avx512_bf16)."""
  return jnp.swapaxes(a[..., None], 0, 1).reshape(a.shape[1], a.shape[0])


@jax.custom_vjp
def _low_precision_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """(M, K) @ (K, N) in x.dtype (bf16/fp16) with fp32 accumulation, backward dots as well."""
  return jnp.dot(x, w, preferred_element_type=jnp.float32).astype(x.dtype)


def _low_precision_matmul_fwd(x, w):
  return _low_precision_matmul(x, w), (x, w)


def _low_precision_matmul_bwd(residuals, g):
  x, w = residuals
  g = g.astype(x.dtype)
  # GPU/TPU libraries take transposed operands as they are: the copy only pays on CPU.
  transposed = _transposed if jax.default_backend() == 'cpu' else jnp.transpose
  dx = jnp.dot(g, transposed(w), preferred_element_type=jnp.float32).astype(x.dtype)
  dw = jnp.dot(transposed(x), g, preferred_element_type=jnp.float32).astype(w.dtype)
  return dx, dw


_low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


def _dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """nn.Dense's contraction (last axis of the input with the kernel's first) as a canonical
  2-D bf16 matmul whose three dots (forward, both gradients) XLA:CPU runs in bf16."""
  (lc, rc), (lb, rb) = dimension_numbers
  if (lhs.dtype != rhs.dtype or lhs.dtype == jnp.float32 or lb or rb or rhs.ndim != 2
      or tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,)):
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
  out = _low_precision_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
  return out.reshape(lhs.shape[:-1] + rhs.shape[1:])


def dense_dot_general(dtype: Any) -> Callable:
  """The `dot_general` for nn.Dense at compute `dtype`: XLA's own for fp32 (unchanged numerics),
  the bf16-throughout matmul for low precision."""
  return jax.lax.dot_general if jnp.dtype(dtype) == jnp.float32 else _dense_dot_general


def attention_bias(attention_mask: jax.Array | None) -> jax.Array | None:
  """(B, L) 0/1 mask -> (B, 1, 1, L) additive fp32 bias, built once for all layers."""
  if attention_mask is None:
    return None
  big_negative = jnp.finfo(jnp.float32).min  # as HF, so fully padded rows agree too
  return jnp.where(attention_mask[:, None, None, :] > 0, 0.0, big_negative).astype(jnp.float32)


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser: a bijection that mixes every input bit into every output."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


# model.dropout_impl: 'hash' (hashed_dropout, the default: faster on CPU, see the README) or
# 'flax' (nn.Dropout: threefry bernoulli, the rate exactly as given).
DROPOUT_IMPLS = ('hash', 'flax')
HASH_RATE_STEP = 1 / 65536  # 'hash' rounds the rate to a multiple of this


def hashed_rate(rate: float) -> float:
  """The rate hashed_dropout really applies: round(rate * 65536) / 65536 (error <= 2**-17; a
  rate below 2**-17 becomes 0, no dropout)."""
  return round(rate * 65536) / 65536


def hashed_dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout whose mask is a counter-based hash of (element index, key).

  jax.random.bernoulli runs threefry per element, which on CPU costs more than a MiniLM layer's
  attention; one murmur finaliser pair per two elements is ~10x cheaper. Each 32-bit hash gives
  two 16-bit draws, so the rate is rounded to k/65536 (`hashed_rate`) and the scale uses that
  exact rate: the output stays unbiased for the rounded rate.
  """
  threshold = int(round(rate * 65536))
  if threshold == 0:
    return x
  seed = jax.random.bits(key, (2,), jnp.uint32)
  size = x.size
  counter = jax.lax.iota(jnp.uint32, (size + 1) // 2)
  words = _fmix32(_fmix32(counter ^ seed[0]) ^ seed[1])
  draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:size].reshape(x.shape)
  scale = jnp.asarray(65536 / (65536 - threshold), x.dtype)
  return jnp.where(draws >= threshold, x * scale, jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """Dropout with `hashed_dropout`, drawing its key from the 'dropout' rng stream."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return hashed_dropout(x, self.rate, self.make_rng('dropout'))


def dropout(rate: float, train: bool, impl: str = 'hash') -> Callable[[jax.Array], jax.Array]:
  """Identity when not training (no rng needed), else `Dropout` ('hash') or flax's nn.Dropout
  ('flax'); both draw from the 'dropout' rng and hold no parameters."""
  if not train or rate == 0:
    return lambda x: x
  if impl == 'flax':
    return nn.Dropout(rate, deterministic=False)
  if impl != 'hash':
    raise ValueError(f'dropout_impl={impl!r}; choose one of {DROPOUT_IMPLS}.')
  return Dropout(rate)


def check_dropout_rng(module: nn.Module, train: bool) -> None:
  """One clear error instead of flax's, when train=True comes without a 'dropout' rng."""
  cfg = module.config
  if (train and max(cfg.dropout_rate, cfg.attention_dropout_rate) > 0
      and not module.is_initializing() and not module.has_rng('dropout')):
    raise ValueError("train=True needs a 'dropout' rng: "
                     "module.apply(variables, ..., train=True, rngs={'dropout': key}).")


def masked_mean(hidden: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean over tokens where mask is 1 (all tokens when mask is None), accumulated in fp32."""
  hidden = hidden.astype(jnp.float32)
  if mask is None:
    return hidden.mean(axis=1)
  mask = mask.astype(jnp.float32)[..., None]
  return (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1e-9)


class SelfAttention(nn.Module):
  """Multi-head self-attention up to (not including) the output projection.

  Params `query`, `key`, `value` as in HF Flax (+ `<name>_lora` adapters with lora_rank > 0).
  Queries are scaled before the einsum (cheaper than scaling the logits), the mask is one fused
  add, softmax runs in fp32. Returns (context, attention probabilities before dropout); under
  jit the probabilities cost nothing when the caller drops them.
  """
  num_heads: int
  dropout_rate: float
  kernel_init: Callable
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 8.0
  lora_targets: tuple[str, ...] = ()
  dropout_impl: str = 'hash'

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array | None,
               train: bool) -> tuple[jax.Array, jax.Array]:
    batch, length, features = x.shape
    head_dim = features // self.num_heads

    def project(name):
      y = nn.Dense(features, use_bias=self.use_bias, kernel_init=self.kernel_init,
                   dtype=self.dtype, param_dtype=self.param_dtype,
                   dot_general=dense_dot_general(self.dtype), name=name)(x)
      if self.lora_rank and name in self.lora_targets:
        y = y + lora.LoRA(self.lora_rank, self.lora_alpha, features, dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name + lora.SUFFIX)(x)
      return y.reshape(batch, length, self.num_heads, head_dim)

    query = project('query') * jnp.asarray(head_dim ** -0.5, self.dtype)
    key = project('key')
    value = project('value')
    logits = jnp.einsum('bqhd,bkhd->bhqk', query, key).astype(jnp.float32)
    if bias is not None:
      logits = logits + bias
    probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    dropped = dropout(self.dropout_rate, train, self.dropout_impl)(probs)
    context = jnp.einsum('bhqk,bkhd->bqhd', dropped, value)
    return context.reshape(batch, length, features), probs


def self_attention(cfg, kernel_init: Callable, name: str, **kwargs) -> SelfAttention:
  """SelfAttention configured from a BERT/ViT config (dropout, dtypes, adapters)."""
  return SelfAttention(
      cfg.num_heads, cfg.attention_dropout_rate, kernel_init, dtype=cfg.dtype,
      param_dtype=cfg.param_dtype, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
      lora_targets=tuple(cfg.lora_targets), dropout_impl=cfg.dropout_impl, name=name, **kwargs)
