"""MultiheadA: the reference's attention with key-padding masks, causal -inf masks, F0 rotary,
pitch bias and an optional KV cache for incremental decoding.

q, v, o have biases, k has none (as in the reference); q and k are each scaled by hd^-1/4.
Logits and softmax are float32 whatever the compute dtype. Masked logits are set to the float32
minimum: exp() underflows to exactly 0 like -inf, but a row with no valid key stays finite.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from echo_jax.models import pitch as pitch_lib
from echo_jax.models.config import ModelSettings
from echo_jax.models.layers import compute_dtype, dense, inverse_softplus
from echo_jax.models.rotary import Rotary, apply_rotary

MASKED_LOGIT = float(jnp.finfo(jnp.float32).min)
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
    decode=True: keys/values/validity are appended to the "cache" collection (self-attention).
    """
    s = self.settings
    dtype = compute_dtype(s)
    batch, q_len, _ = x.shape
    heads, head_dim = s.num_heads, s.head_dim
    source = x if kv is None else kv
    q = dense(s.d_model, "q", dtype)(x).reshape(batch, q_len, heads, head_dim)
    k = dense(s.d_model, "k", dtype, use_bias=False)(source)
    k = k.reshape(batch, source.shape[1], heads, head_dim)
    v = dense(s.d_model, "v", dtype)(source).reshape(batch, source.shape[1], heads, head_dim)

    learned_radius = None
    if s.radius_mode == "learned" and (q_rotary is not None or k_rotary is not None):
      raw = self.param("radius", nn.initializers.constant(inverse_softplus(1.0)),
                       (head_dim // 2,), jnp.float32)
      learned_radius = jax.nn.softplus(raw)
    scale = head_dim ** -0.25
    q = apply_rotary(q, q_rotary, learned_radius) if q_rotary is not None else q.astype(jnp.float32)
    k = apply_rotary(k, k_rotary, learned_radius) if k_rotary is not None else k.astype(jnp.float32)
    q = (q * scale).astype(dtype)
    k = (k * scale).astype(dtype)

    q_pos = jnp.arange(q_len)
    k_pos = jnp.arange(k.shape[1])
    if decode:
      if kv is not None:
        raise ValueError("the KV cache is for self-attention; cross-attention is recomputed")
      initialised = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
      cached_valid = self.variable("cache", "cached_key_valid", jnp.zeros, key_valid.shape,
                                   jnp.bool_)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if initialised:
        index = cache_index.value
        k = jax.lax.dynamic_update_slice(cached_key.value, k, (0, index, 0, 0))
        v = jax.lax.dynamic_update_slice(cached_value.value, v.astype(cached_value.value.dtype),
                                         (0, index, 0, 0))
        key_valid = jax.lax.dynamic_update_slice(cached_valid.value, key_valid, (0, index))
        cached_key.value, cached_value.value, cached_valid.value = k, v, key_valid
        cache_index.value = index + q_len
        q_pos = index + jnp.arange(q_len)
        k_pos = jnp.arange(k.shape[1])

    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if pitch_z is not None:
      if s.pitch_bias_learned:
        raw = self.param("pitch_bias_scale",
                         nn.initializers.constant(inverse_softplus(s.pitch_bias_scale)), (),
                         jnp.float32)
        bias_scale = jax.nn.softplus(raw)
      else:
        bias_scale = jnp.asarray(s.pitch_bias_scale, jnp.float32)
      self.sow("intermediates", "pitch_bias_scale", bias_scale)
      logits = logits + pitch_lib.pitch_bias(pitch_z, bias_scale, key_valid)
    if additive_bias is not None:
      logits = logits + additive_bias

    key_mask = key_valid[:, None, None, :]
    causal_mask = (q_pos[:, None] >= k_pos[None, :])[None, None] if causal else None
    if s.fzero == "pad_scale":
      # Reference-style padding: pad-key logits scaled by clamp(softplus(phi), 1e-6, 1e-3), not masked.
      phi = self.param("fzero", nn.initializers.constant(FZERO_INIT), (), jnp.float32)
      pad_scale = jnp.clip(jax.nn.softplus(phi), FZERO_LOW, FZERO_HIGH)
      logits = jnp.where(key_mask, logits, logits * pad_scale)
      mask = causal_mask
    else:
      mask = key_mask if causal_mask is None else key_mask & causal_mask
    if mask is not None:
      logits = jnp.where(mask, logits, MASKED_LOGIT)
    weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v.astype(dtype))
    out = dense(s.d_model, "o", dtype)(out.reshape(batch, q_len, s.d_model))
    self.sow("intermediates", "attention_output", out)
    return out
