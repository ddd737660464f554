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
WORLD's synthesis is deterministic (its noise generator is reseeded on every call), so one
analysis resynthesised at several shifts gives the same audio as analysing for each shift.
"""

import dataclasses
import os
import warnings

import numpy as np
import soundfile

from echo_jax.data import audio as audio_lib

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


@dataclasses.dataclass(frozen=True)
class WorldAnalysis:
  """WORLD's analysis of one utterance: what every shift of it is resynthesised from."""
  f0: np.ndarray  # [frames] Hz, 0 where unvoiced
  envelope: np.ndarray  # [frames, bins] spectral envelope (the formants)
  aperiodicity: np.ndarray  # [frames, bins]
  num_samples: int
  peak: float  # the input's peak level, kept by every shift
  sample_rate: int


def analyse(audio: np.ndarray, sample_rate: int) -> WorldAnalysis:
  """Harvest F0, CheapTrick envelope and D4C aperiodicity of `audio` (float mono): the costly
  half of a shift, done once per utterance whatever the number of shifts."""
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(f"expected mono audio [samples], got shape {audio.shape}")
  if not np.all(np.isfinite(audio)):
    raise ValueError("audio holds non-finite samples")
  sample_rate = int(sample_rate)
  if sample_rate <= 0:
    raise ValueError(f"sample_rate must be positive, got {sample_rate}")
  x = np.ascontiguousarray(audio, dtype=np.float64)
  peak = float(np.max(np.abs(x))) if x.size else 0.0
  if peak == 0.0:  # digital silence (or no samples): nothing to analyse
    empty = np.zeros([0], np.float64)
    return WorldAnalysis(empty, empty, empty, x.size, 0.0, sample_rate)
  f0, times = pyworld.harvest(x, sample_rate, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ,
                              frame_period=FRAME_PERIOD_MS)
  envelope = pyworld.cheaptrick(x, f0, times, sample_rate, f0_floor=F0_FLOOR_HZ)
  aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
  return WorldAnalysis(f0, envelope, aperiodicity, x.size, peak, sample_rate)


def synthesise(analysis: WorldAnalysis, semitones: float) -> np.ndarray:
  """The analysed utterance with F0 scaled by 2 ** (semitones / 12), envelope and aperiodicity
  unchanged: float32 of the input's length, scaled to its peak level."""
  if not np.isfinite(semitones):
    raise ValueError(f"semitones must be finite, got {semitones}")
  if analysis.peak == 0.0:
    return np.zeros(analysis.num_samples, np.float32)
  shifted_f0 = np.where(analysis.f0 > 0, analysis.f0 * semitone_ratio(semitones), 0.0)
  y = pyworld.synthesize(shifted_f0, analysis.envelope, analysis.aperiodicity,
                         analysis.sample_rate, frame_period=FRAME_PERIOD_MS)
  out = np.zeros(analysis.num_samples, np.float64)  # WORLD rounds the length to whole frames
  n = min(analysis.num_samples, y.size)
  out[:n] = y[:n]
  out_peak = float(np.max(np.abs(out)))
  if out_peak == 0.0 or not np.isfinite(out_peak):
    return np.zeros(analysis.num_samples, np.float32)
  return (out * (analysis.peak / out_peak)).astype(np.float32)


def shift_pitch(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
  """`audio` (float mono) with F0 scaled by 2 ** (semitones / 12) and the formants kept.

  Returns float32 of the same length, scaled to the input's peak level.
  """
  if not np.isfinite(semitones):
    raise ValueError(f"semitones must be finite, got {semitones}")
  return synthesise(analyse(audio, sample_rate), semitones)


def write_shifted(task) -> str:
  """Pool worker: (source wav, sample rate, [(semitones, target wav)]) -> the source path, with
  every target written (PCM-16, through a temporary name so a half-written file is never used).
  One analysis serves all of the utterance's shifts."""
  source, sample_rate, targets = task
  analysis = analyse(audio_lib.load_audio(source, sample_rate), sample_rate)
  for semitones, target in targets:
    tmp = target + ".tmp.wav"
    soundfile.write(tmp, np.clip(synthesise(analysis, semitones), -1.0, 1.0), int(sample_rate),
                    subtype="PCM_16", format="WAV")
    os.replace(tmp, target)
  return source
