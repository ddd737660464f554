"""Rotary position encoding with an F0-conditioned theta, one theta per utterance (batch axis).

Modes (config.model.theta_mode), with f0_mean the utterance's mean F0 (see pitch.f0_mean):
  fixed:     standard RoPE with base `theta`.
  seed:      theta + 9200 * pf,  pf = ln(1 + f0_mean/700) / ln(1 + 300/700)  (reference)
  clamped:   800 + 9200 * pf(clamp(f0_mean, 80, 600))                          (README variant)
  mel:       the mel-spaced bank (spec R10) scaled by f0_mean/220 (R11); 220 Hz if unvoiced
  per_frame: theta_t = theta + f0_t per audio frame (R16); text tokens use theta + f0_mean
Pairs (x_2k, x_2k+1) are rotated as complex numbers in float32, optionally scaled by a radius.
cos/sin are evaluated once per stream (make_rotary) and shared by every layer's q and k (fused into
each rotation, XLA re-evaluated them per head and per layer: ~4.5x slower rotations, benchmark
--profile `rotary`).
"""

import math
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.models.layers import outside_fusion

SEED_SLOPE = 9200.0  # 10000 - 800 in the reference
CLAMPED_BASE = 800.0
CLAMP_LOW, CLAMP_HIGH = 80.0, 600.0
MEL_REFERENCE_HZ = 220.0
RADIUS_LOW, RADIUS_HIGH = 40.0, 600.0  # radius = clamp(f0, 40, 600) / 600 (spec R7)


@flax.struct.dataclass
class Rotary:
  """Rotation of one sequence: cos and sin of its angles [B|1, T, hd/2] and an optional radius
  [B|1, T, hd/2|1]."""
  cos: jax.Array
  sin: jax.Array
  radius: Optional[jax.Array] = None


def pitch_factor(f0_mean: jax.Array) -> jax.Array:
  return jnp.log1p(f0_mean / 700.0) / math.log1p(300.0 / 700.0)


def utterance_theta(f0_mean: jax.Array, mode: str, theta: float) -> jax.Array:
  """[B] float32 theta per utterance (for `mel`, the Hz value that scales the mel bank)."""
  f0_mean = jnp.asarray(f0_mean, jnp.float32)
  if mode == "fixed":
    return jnp.full_like(f0_mean, theta)
  if mode == "seed":
    return theta + SEED_SLOPE * pitch_factor(f0_mean)
  if mode == "clamped":
    return CLAMPED_BASE + SEED_SLOPE * pitch_factor(jnp.clip(f0_mean, CLAMP_LOW, CLAMP_HIGH))
  if mode == "mel":
    return jnp.where(f0_mean > 0, f0_mean, MEL_REFERENCE_HZ)
  if mode == "per_frame":
    return theta + f0_mean
  raise ValueError(f"unknown theta_mode {mode!r}")


def mel_bank(num_frequencies: int) -> np.ndarray:
  """Spec R10: omega_k = 700 (10^(m_k/2595) - 1) / 1000, m_k = linspace(0, mel(8000)) (rad/step)."""
  top = 2595.0 * np.log10(1.0 + 8000.0 / 700.0)
  m = np.linspace(0.0, top, num_frequencies)
  return (700.0 * (10.0 ** (m / 2595.0) - 1.0) / 1000.0).astype(np.float32)


def inverse_frequencies(theta: jax.Array, head_dim: int, mode: str) -> jax.Array:
  """[..., hd/2] float32 frequencies for theta [...]: theta^(-2k/hd) or the scaled mel bank."""
  theta = jnp.asarray(theta, jnp.float32)[..., None]
  if mode == "mel":
    return theta / MEL_REFERENCE_HZ * jnp.asarray(mel_bank(head_dim // 2))
  exponent = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim
  return jnp.exp(-exponent * jnp.log(theta))


def frame_inverse_frequencies(frame_f0: jax.Array, theta_per_utt: jax.Array, mode: str,
                              base_theta: float, head_dim: int) -> jax.Array:
  """[B, T|1, hd/2] frequencies for audio frames; per frame only in the `per_frame` mode."""
  if mode == "per_frame":
    return inverse_frequencies(base_theta + frame_f0.astype(jnp.float32), head_dim, mode)
  return inverse_frequencies(theta_per_utt, head_dim, mode)[:, None, :]


def f0_radius(f0: jax.Array) -> jax.Array:
  """Radius from F0 (spec R7): clamp(f0, 40, 600) / 600, with a trailing frequency axis of 1."""
  return (jnp.clip(jnp.asarray(f0, jnp.float32), RADIUS_LOW, RADIUS_HIGH) / RADIUS_HIGH)[..., None]


def make_rotary(positions: jax.Array, inv_freq: jax.Array,
                radius: Optional[jax.Array] = None) -> Rotary:
  """positions [T] or [B, T]; inv_freq [B, T|1, hd/2]; angles = position * frequency."""
  positions = jnp.asarray(positions, jnp.float32)
  if positions.ndim == 1:
    positions = positions[None, :]
  # Materialised once: fused into each rotation, XLA re-evaluated cos/sin per head and layer.
  cos, sin = outside_fusion(lambda a: (jnp.cos(a), jnp.sin(a)), positions[:, :, None] * inv_freq)
  return Rotary(cos=cos, sin=sin, radius=radius)


def apply_rotary(x: jax.Array, rotary: Rotary,
                 learned_radius: Optional[jax.Array] = None) -> jax.Array:
  """Rotates interleaved pairs of x [B, T, H, hd] in float32; returns float32."""
  *lead, head_dim = x.shape
  pairs = x.astype(jnp.float32).reshape(*lead, head_dim // 2, 2)
  x0, x1 = pairs[..., 0], pairs[..., 1]
  cos = rotary.cos[:, :, None, :]
  sin = rotary.sin[:, :, None, :]
  y0 = x0 * cos - x1 * sin
  y1 = x0 * sin + x1 * cos
  scale = None
  if rotary.radius is not None:
    scale = rotary.radius[:, :, None, :]
  if learned_radius is not None:
    scale = learned_radius if scale is None else scale * learned_radius
  if scale is not None:
    y0, y1 = y0 * scale, y1 * scale
  return jnp.stack([y0, y1], axis=-1).reshape(*lead, head_dim)
