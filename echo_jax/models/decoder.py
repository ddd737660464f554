"""TextDecoder: token embedding + learned positions, `_blocks` (self-attention), then per feature a
chain of cross-attention blocks mixed into x by a learned blend, final RMSNorm, tied output.

Corrected behaviour (default): every decoder self-attention is causal with -inf masking and masks
pad keys; the feature blocks are chained (each feeds the next). With causal_decoder=False the
reference's additive tril(+1) mask is used in `_blocks` and the feature blocks get no causal mask.
"""

from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from echo_jax.models import rotary as rotary_lib
from echo_jax.models.blocks import BLEND_INIT, Residual
from echo_jax.models.config import ModelSettings
from echo_jax.models.layers import (POSITIONAL_INIT_STD, RMSNorm, compute_dtype, embedding_init)

from echo_jax.token_ids import PAD_ID


class TextDecoder(nn.Module):
  settings: ModelSettings

  @nn.compact
  def __call__(self, tokens: jax.Array, encodings: Dict[str, jax.Array],
               encoding_valid: Dict[str, jax.Array], key_rotary: Dict[str, rotary_lib.Rotary],
               token_inv_freq: jax.Array, token_radius: Optional[jax.Array],
               decode: bool = False, deterministic: bool = True) -> jax.Array:
    """tokens [B, L] int32 -> logits [B, L, V] float32. token_inv_freq [B, hd/2]."""
    s = self.settings
    dtype = compute_dtype(s)
    batch, length = tokens.shape
    if decode and not s.causal_decoder:
      raise ValueError("incremental decoding needs config.model.causal_decoder=True")
    offset = jnp.array(0, jnp.int32)
    if decode:
      initialised = self.has_variable("cache", "position_index")
      position_index = self.variable("cache", "position_index", lambda: jnp.array(0, jnp.int32))
      if initialised:
        offset = position_index.value
        position_index.value = offset + length
    if length > s.text_ctx:
      raise ValueError(f"decoder input has {length} tokens, more than config.model.text_ctx="
                       f"{s.text_ctx}; raise text_ctx or shorten max_target_length")

    embed = nn.Embed(s.vocab_size, s.d_model, dtype=dtype, param_dtype=jnp.float32,
                     embedding_init=embedding_init(s), name="token_embedding")
    positional = self.param("positional_embedding", nn.initializers.normal(POSITIONAL_INIT_STD),
                            (s.text_ctx, s.d_model), jnp.float32)
    positions = offset + jnp.arange(length)
    x = embed(tokens) + jax.lax.dynamic_slice_in_dim(positional, offset, length).astype(dtype)
    if s.dropout_rate > 0:
      x = nn.Dropout(s.dropout_rate)(x, deterministic=deterministic)
    token_valid = tokens != PAD_ID

    token_rotary = rotary_lib.make_rotary(positions, token_inv_freq[:, None, :], token_radius)
    self_rotary = token_rotary if s.decoder_rotary else None
    cross_q_rotary = token_rotary if s.cross_attn_rotary else None
    faithful_tril = None
    if not s.causal_decoder:  # the reference: +1 on past and present, future left visible
      faithful_tril = jnp.tril(jnp.ones((length, length), jnp.float32))[None, None]

    for i in range(s.decoder_layers):
      x = Residual(s, s.decoder_act, cross_attention=False, name=f"_blocks_{i}")(
          x, key_valid=token_valid, rotary=self_rotary, causal=s.causal_decoder,
          additive_bias=faithful_tril, decode=decode)
    for feature in s.features:
      out = x
      for i in range(s.decoder_layers):
        out = Residual(s, s.decoder_act, cross_attention=True, name=f"blocks_{feature}_{i}")(
            out, key_valid=token_valid, rotary=self_rotary, causal=s.causal_decoder,
            decode=decode, xa=encodings[feature], xa_valid=encoding_valid[feature],
            cross_q_rotary=cross_q_rotary,
            cross_k_rotary=key_rotary[feature] if s.cross_attn_rotary else None)
      b = jax.nn.sigmoid(self.param(f"blend_{feature}", nn.initializers.constant(BLEND_INIT), (),
                                    jnp.float32)).astype(dtype)
      x = b * out + (1 - b) * x
    x = RMSNorm(dtype, name="ln_dec")(x)
    self.sow("intermediates", "final_output", x)
    # Tied output in float32 (the loss is float32 whatever the compute dtype).
    return jnp.einsum("bld,vd->blv", x.astype(jnp.float32),
                      embed.embedding.astype(jnp.float32))
