"""Per-utterance F0 statistics, F0 resampling to a stream's frame rate, the pitch-similarity bias.

Voicing is `f0 > 0`; frame validity is `arange(T) < num_frames`. Every statistic is per utterance
(batch axis kept) except `batch_all`, the reference's mean over the whole concatenated batch.
"""

import jax
import jax.numpy as jnp

Z_EPS = 1e-8  # the reference's std epsilon


def frame_validity(num_frames: jax.Array, length: int) -> jax.Array:
  """[B, length] bool: True for the first num_frames[b] frames."""
  return jnp.arange(length)[None, :] < jnp.asarray(num_frames)[:, None]


def downsampled_length(num_frames: jax.Array, factor: int) -> jax.Array:
  """Valid frames after a stride-`factor` front-end with 'same' padding: ceil(n / factor)."""
  return (jnp.asarray(num_frames) + factor - 1) // factor


def voiced_frames(f0: jax.Array, num_frames: jax.Array) -> jax.Array:
  return (f0 > 0) & frame_validity(num_frames, f0.shape[1])


def f0_mean(f0: jax.Array, num_frames: jax.Array, mode: str) -> jax.Array:
  """[B] float32 mean F0 per utterance.

  utt_voiced: over the utterance's voiced valid frames (no voiced frame -> 0).
  utt_all: over its valid frames, unvoiced zeros included.
  batch_all: over every valid frame of the batch (the reference; the same value for every row).
  """
  f0 = f0.astype(jnp.float32)
  valid = frame_validity(num_frames, f0.shape[1])
  if mode == "utt_voiced":
    voiced = (f0 > 0) & valid
    count = voiced.sum(axis=1)
    total = jnp.where(voiced, f0, 0.0).sum(axis=1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)
  if mode == "utt_all":
    count = valid.sum(axis=1)
    total = jnp.where(valid, f0, 0.0).sum(axis=1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)
  if mode == "batch_all":
    count = valid.sum()
    total = jnp.where(valid, f0, 0.0).sum()
    mean = jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)
    return jnp.broadcast_to(mean, (f0.shape[0],))
  raise ValueError(f"unknown f0_mean_mode {mode!r}")


def voiced_statistics(f0: jax.Array, num_frames: jax.Array):
  """(mean, std) [B] of F0 over each utterance's voiced valid frames (0, 0 when none)."""
  f0 = f0.astype(jnp.float32)
  voiced = voiced_frames(f0, num_frames)
  count = jnp.maximum(voiced.sum(axis=1), 1)
  mean = jnp.where(voiced, f0, 0.0).sum(axis=1) / count
  var = jnp.where(voiced, jnp.square(f0 - mean[:, None]), 0.0).sum(axis=1) / count
  return mean, jnp.sqrt(var)


def pitch_z(f0: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """[B, T] F0 z-scored with the utterance's voiced statistics (unvoiced frames land far below)."""
  return (f0.astype(jnp.float32) - mean[:, None]) / (std[:, None] + Z_EPS)


def pitch_bias(z: jax.Array, scale: jax.Array, valid: jax.Array) -> jax.Array:
  """[B, 1, T, T] bias exp(-scale * |z_i - z_j|) in (0, 1]; 0 wherever query or key is padding."""
  distance = jnp.abs(z[:, :, None] - z[:, None, :])
  bias = jnp.exp(-jnp.asarray(scale, jnp.float32) * distance)
  both_valid = valid[:, :, None] & valid[:, None, :]
  return jnp.where(both_valid, bias, 0.0)[:, None, :, :]


def resample_f0(f0: jax.Array, num_frames: jax.Array, factor: int, length: int) -> jax.Array:
  """F0 at a stream's rate: mean of the voiced valid frames in each window of `factor` frames.

  Output [B, length]; windows without a voiced frame (or beyond the input) are 0 (unvoiced).
  """
  f0 = jnp.where(voiced_frames(f0, num_frames), f0.astype(jnp.float32), 0.0)
  if factor > 1:
    b, t = f0.shape
    padded = -(-t // factor) * factor
    f0 = jnp.pad(f0, ((0, 0), (0, padded - t))).reshape(b, padded // factor, factor)
    count = (f0 > 0).sum(axis=-1)
    f0 = jnp.where(count > 0, f0.sum(axis=-1) / jnp.maximum(count, 1), 0.0)
  if f0.shape[1] >= length:
    return f0[:, :length]
  return jnp.pad(f0, ((0, 0), (0, length - f0.shape[1])))
