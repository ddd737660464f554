"""SpecAugment (Park et al. 2019) inside the jitted train step: frequency and time masks on the
log-mel batch, per utterance, drawn from the step's RNG, placed only over an utterance's real
frames. No time warping. Masked cells take the utterance's mean log-mel value (over its real
frames), so a mask reads as "no information" rather than as a loud or silent band.
"""

from typing import Dict

import jax
import jax.numpy as jnp
import ml_collections


def enabled(cfg: ml_collections.ConfigDict) -> bool:
  return int(cfg.freq_masks) > 0 or int(cfg.time_masks) > 0


def _mask_spans(rng: jax.Array, count: int, max_width: jax.Array, extent: jax.Array,
                size: int) -> jax.Array:
  """[B, size] bool: the union of `count` spans per row, width ~ U{0..max_width[b]}, start
  ~ U{0..extent[b] - width}; positions >= extent[b] are never covered."""
  batch = extent.shape[0]
  width_key, start_key = jax.random.split(rng)
  max_width = jnp.minimum(max_width, extent)
  u_width = jax.random.uniform(width_key, (batch, count))
  width = jnp.floor(u_width * (max_width[:, None] + 1)).astype(jnp.int32)
  u_start = jax.random.uniform(start_key, (batch, count))
  start = jnp.floor(u_start * (extent[:, None] - width + 1)).astype(jnp.int32)
  positions = jnp.arange(size)[None, None, :]
  covered = (positions >= start[..., None]) & (positions < (start + width)[..., None])
  return jnp.any(covered, axis=1)


def masks(rng: jax.Array, num_frames: jax.Array, num_frames_padded: int, num_bins: int,
          cfg: ml_collections.ConfigDict) -> Dict[str, jax.Array]:
  """{"time": [B, T] bool, "freq": [B, F] bool}: True where masked."""
  num_frames = jnp.asarray(num_frames, jnp.int32)
  batch = num_frames.shape[0]
  freq_key, time_key = jax.random.split(rng)
  freq = jnp.zeros((batch, num_bins), bool)
  if int(cfg.freq_masks) > 0:
    freq = _mask_spans(freq_key, int(cfg.freq_masks),
                       jnp.full([batch], int(cfg.freq_mask_bins), jnp.int32),
                       jnp.full([batch], num_bins, jnp.int32), num_bins)
  time = jnp.zeros((batch, num_frames_padded), bool)
  if int(cfg.time_masks) > 0:
    # The width bound scales with the utterance: at most max_fraction of its real frames.
    by_fraction = jnp.floor(float(cfg.time_mask_max_fraction) * num_frames).astype(jnp.int32)
    max_width = jnp.minimum(int(cfg.time_mask_frames), by_fraction)
    time = _mask_spans(time_key, int(cfg.time_masks), max_width, num_frames, num_frames_padded)
  return {"time": time, "freq": freq}


def apply(rng: jax.Array, mel: jax.Array, num_frames: jax.Array,
          cfg: ml_collections.ConfigDict) -> jax.Array:
  """mel [B, T, F] with masks applied (padding frames untouched)."""
  m = masks(rng, num_frames, mel.shape[1], mel.shape[2], cfg)
  valid = jnp.arange(mel.shape[1])[None, :] < jnp.asarray(num_frames)[:, None]
  count = jnp.maximum(jnp.sum(valid, axis=1) * mel.shape[2], 1).astype(jnp.float32)
  mean = jnp.sum(jnp.where(valid[:, :, None], mel.astype(jnp.float32), 0.0), axis=(1, 2)) / count
  covered = (m["time"][:, :, None] | m["freq"][:, None, :]) & valid[:, :, None]
  return jnp.where(covered, mean[:, None, None].astype(mel.dtype), mel)
