"""Vocal tract length perturbation (VTLP; Jaitly and Hinton 2013) on the log-mel batch inside the
jitted train step: each utterance, with probability `probability`, is heard as if spoken by a
longer or shorter vocal tract, its spectrum's frequencies scaled by a factor alpha ~ U(1 - m, 1 + m)
(m = `max_factor`). The test split's voices are unseen ones (docs/accuracy.md, section 5); this
moves every training voice's formants per step, where the corpus holds each voice fixed.

VTLP's piecewise-linear map sends frequency f to alpha * f up to a cut-off (4,800 Hz * min(alpha,
1) / alpha), then along the straight line to the Nyquist frequency, so the band's edges stay put.
Output mel bin k reads the input at the frequency the map sends to its centre, interpolating
linearly between the two nearest input bins (clamped at the top). Padding frames are left as they
are. Drawn from the step's RNG; the eval step never calls it.
"""

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

BOUNDARY_HZ = 4800.0


def mel_centres_hz(sample_rate: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
  """Centre frequencies [n_mels] of the features' HTK mel filters (echo_jax.data.features)."""
  import librosa

  edges = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=fmax, htk=True)
  return np.asarray(edges[1:-1], np.float32)


def warp_hz(freqs: jax.Array, alpha: jax.Array, nyquist: float) -> jax.Array:
  """VTLP's map of frequencies (Hz) for one factor alpha: monotone, 0 -> 0, nyquist -> nyquist."""
  reach = BOUNDARY_HZ * jnp.minimum(alpha, 1.0)
  cut = reach / alpha
  high = nyquist - (nyquist - reach) / (nyquist - cut) * (nyquist - freqs)
  return jnp.where(freqs <= cut, alpha * freqs, high)


def source_bins(alphas: jax.Array, centres_hz: jax.Array, nyquist: float) -> jax.Array:
  """[B, M] fractional input bin each output bin reads, per utterance factor alphas [B]."""
  bins = jnp.arange(centres_hz.shape[0], dtype=jnp.float32)

  def one(alpha):
    moved_to = warp_hz(centres_hz, alpha, nyquist)  # where input bin i's content lands
    source_hz = jnp.interp(centres_hz, moved_to, centres_hz)  # the inverse map at each centre
    return jnp.interp(source_hz, centres_hz, bins)
  return jax.vmap(one)(alphas)


def warp(mel: jax.Array, num_frames: jax.Array, alphas: jax.Array, centres_hz: jax.Array,
         nyquist: float) -> jax.Array:
  """mel [B, T, M] with each row's real frames warped by its factor alphas[b]."""
  source = source_bins(alphas, centres_hz, nyquist)  # [B, M]
  low = jnp.floor(source).astype(jnp.int32)
  high = jnp.minimum(low + 1, mel.shape[-1] - 1)
  weight = (source - low)[:, None, :].astype(mel.dtype)
  size = mel.shape[1]
  gather = lambda index: jnp.take_along_axis(
      mel, jnp.broadcast_to(index[:, None, :], (mel.shape[0], size, index.shape[-1])), axis=2)
  warped = gather(low) * (1 - weight) + gather(high) * weight
  real = jnp.arange(size)[None, :, None] < jnp.asarray(num_frames, jnp.int32)[:, None, None]
  return jnp.where(real, warped, mel)


def draw_factors(rng: jax.Array, batch: int, max_factor: float, probability: float) -> jax.Array:
  """[B] factors: U(1 - max_factor, 1 + max_factor) with probability `probability`, else 1."""
  on_key, factor_key = jax.random.split(rng)
  on = jax.random.uniform(on_key, (batch,)) < probability
  factors = jax.random.uniform(factor_key, (batch,), minval=1.0 - max_factor,
                               maxval=1.0 + max_factor)
  return jnp.where(on, factors, 1.0)


def apply(rng: jax.Array, mel: jax.Array, num_frames: jax.Array, centres_hz: np.ndarray,
          nyquist: float, max_factor: float, probability: float) -> Tuple[jax.Array, jax.Array]:
  """(warped mel [B, T, M], the factors [B] drawn)."""
  alphas = draw_factors(rng, mel.shape[0], max_factor, probability)
  return warp(mel, num_frames, alphas, jnp.asarray(centres_hz), nyquist), alphas
