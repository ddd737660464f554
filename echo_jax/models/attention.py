"""MultiheadA: the reference's attention with key-padding masks, causal -inf masks, F0 rotary,
pitch bias and an optional KV cache for incremental decoding.

q, v, o have biases, k has none (as in the reference); q and k are each scaled by hd^-1/4.
Logits and softmax are float32 whatever the compute dtype. Masks (key padding, causal) become one
additive bias of MASK_BIAS on the logits: exp() underflows to exactly 0 like -inf, but a row with
no valid key stays finite (uniform). The bias is the form models.softmax_attention (the default
path, custom gradient) takes, and its blocked forms (models.chunked_attention on request,
models.head_blocked_attention on a CPU when the logits outgrow the cache); the plain softmax runs
when attention weights are collected, when fzero = "pad_scale", and for decoding.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from echo_jax.models import pitch as pitch_lib
from echo_jax.models.chunked_attention import chunked_softmax_attention
from echo_jax.models import head_blocked_attention as head_blocks
from echo_jax.models.config import ModelSettings
from echo_jax.models.layers import compute_dtype, dense, inverse_softplus
from echo_jax.models.rotary import Rotary, apply_rotary
from echo_jax.models.softmax_attention import softmax_attention

CROSS_CACHE_ENTRIES = ("cached_cross_key", "cached_cross_value")  # per utterance, not per token
MASK_BIAS = -1e30  # far below any logit, far above float32 min: sums of biases stay finite
FZERO_INIT = 1e-4
FZERO_LOW, FZERO_HIGH = 1e-6, 1e-3


class MultiheadA(nn.Module):
  settings: ModelSettings

  @nn.compact
  def __call__(self, x: jax.Array, *, key_valid: jax.Array, kv: Optional[jax.Array] = None,
               q_rotary: Optional[Rotary] = None, k_rotary: Optional[Rotary] = None,
               causal: bool = False, additive_bias: Optional[jax.Array] = None,
               pitch_z: Optional[jax.Array] = None, decode: bool = False) -> jax.Array:
    """x [B, Tq, d] queries; kv [B, Tk, d] keys/values (None: self-attention); key_valid [B, Tk].

    pitch_z [B, T] (self-attention over F0-aligned frames only) adds the pitch-similarity bias.
    decode=True: self-attention appends keys/values/validity to the "cache" collection;
    cross-attention stores its keys/values when the cache is created and reuses them after.
    """
    s = self.settings
    dtype = compute_dtype(s)
    batch, q_len, _ = x.shape
    heads, head_dim = s.num_heads, s.head_dim
    source = x if kv is None else kv
    q = dense(s.d_model, "q", dtype)(x).reshape(batch, q_len, heads, head_dim)
    learned_radius = None
    if s.radius_mode == "learned" and (q_rotary is not None or k_rotary is not None):
      raw = self.param("radius", nn.initializers.constant(inverse_softplus(1.0)),
                       (head_dim // 2,), jnp.float32)
      learned_radius = jax.nn.softplus(raw)
    q = _rotate_and_scale(q, q_rotary, learned_radius, head_dim).astype(dtype)

    q_pos = jnp.arange(q_len)
    k_pos = jnp.arange(source.shape[1])
    # Decoding keeps keys as [B, H, hd, Tk] and values as [B, H, Tk, hd], the layouts XLA:CPU's
    # per-token contractions read directly; token-major [B, Tk, H, hd] made it transpose the
    # whole cache every step.
    k_spec, v_spec = ("bhdk", "bhkd") if decode else ("bkhd", "bkhd")
    if decode and kv is not None:
      k, v = self._cached_cross_kv(source, k_rotary, learned_radius)
      # Beam search keeps these once per utterance: an utterance's beams (consecutive rows) become
      # one row of beams * q_len queries, so each step reads the keys and values once, not per beam.
      beams = batch // k.shape[0]
      if beams > 1:
        q = q.reshape(k.shape[0], beams * q_len, heads, head_dim)
        key_valid = key_valid[::beams]
    else:
      k, v = _project_kv(self, source, k_rotary, learned_radius)
      if decode:
        k, v = _decode_layout(k, v)
    if decode and kv is None:
      initialised = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      cached_valid = self.variable("cache", "cached_key_valid", jnp.zeros, key_valid.shape,
                                   jnp.bool_)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if initialised:
        index = cache_index.value
        k = jax.lax.dynamic_update_slice(cached_key.value, k, (0, 0, 0, index))
        v = jax.lax.dynamic_update_slice(cached_value.value, v, (0, 0, index, 0))
        key_valid = jax.lax.dynamic_update_slice(cached_valid.value, key_valid, (0, index))
        cached_key.value, cached_value.value, cached_valid.value = k, v, key_valid
        cache_index.value = index + q_len
        q_pos = index + jnp.arange(q_len)
        k_pos = jnp.arange(k.shape[3])

    bias = None  # additive logit terms; masks join it below (or fzero scales instead)
    if pitch_z is not None:
      if s.pitch_bias_learned:
        raw = self.param("pitch_bias_scale",
                         nn.initializers.constant(inverse_softplus(s.pitch_bias_scale)), (),
                         jnp.float32)
        bias_scale = jax.nn.softplus(raw)
      else:
        bias_scale = jnp.asarray(s.pitch_bias_scale, jnp.float32)
      self.sow("intermediates", "pitch_bias_scale", bias_scale)
      bias = pitch_lib.pitch_bias(pitch_z, bias_scale, key_valid)
    if additive_bias is not None:
      bias = additive_bias if bias is None else bias + additive_bias

    key_mask = key_valid[:, None, None, :]
    causal_mask = (q_pos[:, None] >= k_pos[None, :])[None, None] if causal else None
    mask = key_mask if causal_mask is None else key_mask & causal_mask
    v = v.astype(dtype)
    if decode or s.fzero == "pad_scale" or self.is_mutable_collection("attention_weights"):
      # Several queries per row while decoding (an utterance's beams, a prefix): head-major
      # operands and output. With the head axis between queries and features XLA:CPU ran the
      # per-head products ~7x slower at 4 queries (docs/performance.md); at one query both match.
      head_major = decode and q.shape[1] > 1
      q_spec, out_spec = ("bhqd", "bhqd") if head_major else ("bqhd", "bqhd")
      if head_major:
        q = q.transpose(0, 2, 1, 3)
      logits = jnp.einsum(f"{q_spec},{k_spec}->bhqk", q, k, preferred_element_type=jnp.float32)
      if bias is not None:
        logits = logits + bias
      if s.fzero == "pad_scale":
        # The reference's padding: pad-key logits scaled by clamp(softplus(phi), 1e-6, 1e-3).
        phi = self.param("fzero", nn.initializers.constant(FZERO_INIT), (), jnp.float32)
        pad_scale = jnp.clip(jax.nn.softplus(phi), FZERO_LOW, FZERO_HIGH)
        logits = jnp.where(key_mask, logits, logits * pad_scale)
        mask = causal_mask
      if mask is not None:
        logits = logits + _mask_bias(mask)
      weights = jax.nn.softmax(logits, axis=-1)
      # A separate collection: only materialised when a caller (attention maps) asks for it.
      self.sow("attention_weights", "weights", weights)
      out = jnp.einsum(f"bhqk,{v_spec}->{out_spec}", weights.astype(dtype), v,
                       preferred_element_type=jnp.float32).astype(dtype)
      if head_major:
        out = out.transpose(0, 2, 1, 3)
    else:
      bias = _mask_bias(mask) if bias is None else bias + _mask_bias(mask)
      chunk, k_len = s.attention_query_chunk, k.shape[1]
      if 0 < chunk < q_len:
        out = chunked_softmax_attention(q, k, v, bias, chunk)
      elif head_blocks.pays_off(s.attention_block_above_mib, batch, heads, q_len, k_len):
        # Masks are data; a pitch or additive bias may carry parameters' gradients.
        differentiable = pitch_z is not None or additive_bias is not None
        out = head_blocks.head_blocked_attention(q, k, v, bias,
                                                 head_blocks.query_chunk(batch, q_len, k_len),
                                                 differentiable)
      else:
        out = softmax_attention(q, k, v, bias)
    # [rows, q_len, d] again (an utterance's beams unfolded to their own rows).
    out = dense(s.d_model, "o", dtype)(out.reshape(batch, q_len, s.d_model))
    self.sow("intermediates", "attention_output", out)
    return out

  def _cached_cross_kv(self, source, k_rotary, learned_radius):
    """Cross-attention keys/values of a decoded sequence: projected by the call that creates the
    cache (init_decode_cache runs it once per sequence) and only read afterwards. Reading needs
    no branch in the decode loop: a conditional there copied the stored keys/values every step.
    """
    key_name, value_name = CROSS_CACHE_ENTRIES
    if self.has_variable("cache", key_name):
      return self.get_variable("cache", key_name), self.get_variable("cache", value_name)
    k, v = _project_kv(self, source, k_rotary, learned_radius)
    k, v = _decode_layout(k, v)
    self.put_variable("cache", key_name, k)
    self.put_variable("cache", value_name, v)
    return k, v


def _decode_layout(k: jax.Array, v: jax.Array):
  """[B, T, H, hd] keys and values -> keys [B, H, hd, T], values [B, H, T, hd]."""
  return k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)


def _mask_bias(mask: jax.Array) -> jax.Array:
  return jnp.where(mask, 0.0, MASK_BIAS).astype(jnp.float32)


def _rotate_and_scale(x, rotary, learned_radius, head_dim):
  """Rotates (float32) and scales by hd^-1/4, so that q.k carries the 1/sqrt(hd) of attention."""
  x = apply_rotary(x, rotary, learned_radius) if rotary is not None else x.astype(jnp.float32)
  return x * head_dim ** -0.25


def _project_kv(module, source, k_rotary, learned_radius):
  """k (no bias, rotated, scaled) and v projections of source [B, T, d] -> [B, T, H, hd] each."""
  s = module.settings
  dtype = compute_dtype(s)
  shape = source.shape[:2] + (s.num_heads, s.head_dim)
  k = dense(s.d_model, "k", dtype, use_bias=False)(source).reshape(shape)
  v = dense(s.d_model, "v", dtype)(source).reshape(shape)
  return _rotate_and_scale(k, k_rotary, learned_radius, s.head_dim).astype(dtype), v
