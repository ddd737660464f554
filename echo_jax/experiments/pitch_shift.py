"""Formant-preserving pitch shift for the pitch-conditioning test conditions (-6, -3, +3, +6).

The ablation asks whether a model conditioned on F0 degrades gracefully when a speaker's pitch
moves away from the training range. Shifting by resampling would move the formants with the
pitch (a different vowel space, a "chipmunk" voice) and confound the two, so the shift goes
through the WORLD vocoder instead: analyse F0 (Harvest), the spectral envelope (CheapTrick) and
the aperiodicity (D4C), multiply F0 by 2 ** (semitones / 12) and resynthesise with the envelope
and aperiodicity unchanged. The harmonics move, the envelope (the formants) stays, and the
duration is untouched. Unvoiced frames (F0 0) stay unvoiced.

Zero semitones is resynthesised too rather than passed through, so the unshifted condition carries
the same vocoder artefacts as the shifted ones and differences between conditions are the pitch.
WORLD's synthesis is deterministic (its noise generator is reseeded on every call).
"""

import warnings

import numpy as np

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
  warnings.simplefilter("ignore")
  import pyworld

CONDITIONS_SEMITONES = (-6.0, -3.0, 3.0, 6.0)
F0_FLOOR_HZ = 71.0  # the feature extractor's search range (echo_jax.data.features)
F0_CEIL_HZ = 800.0
FRAME_PERIOD_MS = 5.0  # WORLD's default analysis step


def semitone_ratio(semitones: float) -> float:
  """The F0 factor of a shift by `semitones` (12 to the octave)."""
  return float(2.0 ** (float(semitones) / 12.0))


def shift_pitch(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
  """`audio` (float mono) with F0 scaled by 2 ** (semitones / 12) and the formants kept.

  Returns float32 of the same length, scaled to the input's peak level.
  """
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(f"expected mono audio [samples], got shape {audio.shape}")
  if not np.all(np.isfinite(audio)):
    raise ValueError("audio holds non-finite samples")
  if not np.isfinite(semitones):
    raise ValueError(f"semitones must be finite, got {semitones}")
  sample_rate = int(sample_rate)
  if sample_rate <= 0:
    raise ValueError(f"sample_rate must be positive, got {sample_rate}")
  x = np.ascontiguousarray(audio, dtype=np.float64)
  peak = float(np.max(np.abs(x))) if x.size else 0.0
  if peak == 0.0:  # digital silence (or no samples): nothing to shift
    return np.zeros(x.size, np.float32)

  f0, times = pyworld.harvest(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ,
                              frame_period=FRAME_PERIOD_MS)
  envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=F0_FLOOR_HZ)
  aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
  shifted_f0 = np.where(f0 > 0, f0 * semitone_ratio(semitones), 0.0)  # unvoiced stays 0
  y = pyworld.synthesize(shifted_f0, envelope, aperiodicity, sample_rate,
                         frame_period=FRAME_PERIOD_MS)

  out = np.zeros(x.size, np.float64)  # WORLD rounds the length to whole frames
  n = min(x.size, y.size)
  out[:n] = y[:n]
  out_peak = float(np.max(np.abs(out)))
  if out_peak == 0.0 or not np.isfinite(out_peak):
    return np.zeros(x.size, np.float32)
  return (out * (peak / out_peak)).astype(np.float32)
