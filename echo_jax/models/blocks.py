"""Residual: the reference's gated block.

  x += attna(lna(x))                                   self-attention
  x += conv_module(x)                                  encoder, with encoder_conv_kernel > 0
  c  = attnb(lnb(x), xa); b = sigmoid(blend)           only with cross-attention
  x  = b * x + (1 - b) * c                             the reference's convex mix (blend init 0.5)
  h  = lnc(x); x += sigmoid(mlp_gate(h)) * mlp(h)      per-token sigmoid gate
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from echo_jax.models.attention import MultiheadA
from echo_jax.models.config import ModelSettings
from echo_jax.models.layers import (DepthwiseConv1D, RMSNorm, activation, compute_dtype,
                                    conv_initializers, dense)
from echo_jax.models.rotary import Rotary

BLEND_INIT = 0.5


class Mlp(nn.Module):
  """Linear(d, ratio*d) -> act -> Linear(ratio*d, d); params mlp/fc1, mlp/fc2."""
  settings: ModelSettings
  act: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = compute_dtype(self.settings)
    h = activation(self.act)(dense(self.settings.mlp_dim, "fc1", dtype)(x))
    return dense(self.settings.d_model, "fc2", dtype)(h)


class ConvModule(nn.Module):
  """The conformer's convolution module: norm -> pointwise (2d) -> GLU -> depthwise conv (k) ->
  norm -> swish -> pointwise (d). Local patterns (formant transitions, onsets) a few frames wide
  are cheap for a conv and slow for attention to learn. RMSNorm stands in for the conformer's
  BatchNorm so that no example depends on the others in its batch."""
  settings: ModelSettings

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
    s = self.settings
    dtype = compute_dtype(s)
    h = dense(2 * s.d_model, "pointwise_in", dtype)(RMSNorm(dtype, name="norm")(x))
    h = jnp.where(valid[:, :, None], jax.nn.glu(h, axis=-1), jnp.zeros((), dtype))
    kernel_init, bias_init = conv_initializers(s, s.encoder_conv_kernel)
    h = DepthwiseConv1D(s.d_model, s.encoder_conv_kernel, dtype, kernel_init, bias_init,
                        name="depthwise")(h)
    h = jax.nn.silu(RMSNorm(dtype, name="depthwise_norm")(h))
    h = dense(s.d_model, "pointwise_out", dtype)(h)
    return jnp.where(valid[:, :, None], h, jnp.zeros((), dtype))


class Residual(nn.Module):
  settings: ModelSettings
  act: str
  cross_attention: bool = False
  conv_module: bool = False  # encoder blocks with settings.encoder_conv_kernel > 0

  @nn.compact
  def __call__(self, x: jax.Array, *, key_valid: jax.Array, rotary: Optional[Rotary] = None,
               causal: bool = False, additive_bias: Optional[jax.Array] = None,
               pitch_z: Optional[jax.Array] = None, decode: bool = False,
               xa: Optional[jax.Array] = None, xa_valid: Optional[jax.Array] = None,
               cross_q_rotary: Optional[Rotary] = None,
               cross_k_rotary: Optional[Rotary] = None) -> jax.Array:
    s = self.settings
    dtype = compute_dtype(s)
    x = x + MultiheadA(s, name="attna")(
        RMSNorm(dtype, name="lna")(x), key_valid=key_valid, q_rotary=rotary, k_rotary=rotary,
        causal=causal, additive_bias=additive_bias, pitch_z=pitch_z, decode=decode)
    if self.conv_module:
      x = x + ConvModule(s, name="conv_module")(x, key_valid)
    if self.cross_attention:
      if xa is None or xa_valid is None:
        raise ValueError("a cross-attention Residual needs xa and xa_valid")
      c = MultiheadA(s, name="attnb")(
          RMSNorm(dtype, name="lnb")(x), kv=xa, key_valid=xa_valid, q_rotary=cross_q_rotary,
          k_rotary=cross_k_rotary, decode=decode)
      b = jax.nn.sigmoid(self.param("blend", nn.initializers.constant(BLEND_INIT), (),
                                    jnp.float32)).astype(dtype)
      x = b * x + (1 - b) * c
    h = RMSNorm(dtype, name="lnc")(x)
    m = Mlp(s, self.act, name="mlp")(h)
    gate_logit = dense(1, "mlp_gate", dtype)(h)
    self.sow("intermediates", "mlp_activation", m)
    self.sow("intermediates", "gate_activation", gate_logit)
    x = x + jax.nn.sigmoid(gate_logit) * m
    self.sow("intermediates", "residual_output", x)
    return x
