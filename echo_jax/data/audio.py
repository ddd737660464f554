"""Audio loading: any file soundfile reads -> float32 mono at the wanted rate.

Every way an input can be unusable raises `AudioError(path, reason)` with one of the reasons in
`SKIP_REASONS`, so a prepare run can skip the item, count the reason and carry on.
"""

from __future__ import annotations

import os

import numpy as np

# Reasons an audio item is skipped (also the keys of the prepare report's counts).
UNREADABLE = "unreadable"  # the decoder failed (missing file, not audio, truncated header)
EMPTY = "empty"  # zero samples
SILENT = "silent"  # peak below SILENCE_PEAK: nothing to transcribe, F0 all unvoiced
NON_FINITE = "non_finite"  # NaN or inf samples
TOO_LONG = "too_long"  # longer than data.max_audio_seconds
SKIP_REASONS = (UNREADABLE, EMPTY, SILENT, NON_FINITE, TOO_LONG)

# -60 dBFS: dithered digital silence (about 1 LSB of PCM16) stays below it, speech does not.
SILENCE_PEAK = 1e-3


class AudioError(ValueError):
  """An audio item that cannot be used; `reason` is one of SKIP_REASONS."""

  def __init__(self, path, reason: str, detail: str = ""):
    self.path = str(path)
    self.reason = reason
    self.detail = detail
    message = f"{self.path}: {reason}"
    if detail:
      message += f" ({detail})"
    super().__init__(message)

  def __reduce__(self):  # picklable across the prepare worker processes
    return (AudioError, (self.path, self.reason, self.detail))


def _read(path: str) -> tuple[np.ndarray, int]:
  """Decodes a file (anything libsndfile reads: wav, flac, ogg, mp3, ...) to [samples, channels]."""
  import soundfile

  if not os.path.exists(path):
    raise AudioError(path, UNREADABLE, "file not found")
  try:
    data, rate = soundfile.read(path, dtype="float64", always_2d=True)
  except Exception as e:  # noqa: BLE001 - any decoder failure is "unreadable"
    raise AudioError(path, UNREADABLE, f"{type(e).__name__}: {e}") from e
  return data, int(rate)


def condition_waveform(samples: np.ndarray,
                       source_rate: int,
                       sample_rate: int,
                       name: str = "<array>",
                       max_seconds: float | None = None) -> np.ndarray:
  """Any waveform -> float32 mono at `sample_rate`, checked for the reasons in SKIP_REASONS.

  `samples` is [S] or [S, channels]; integer PCM is scaled to [-1, 1] by its type's range.
  Channels are averaged, the rate is converted with soxr (very high quality).
  """
  samples = np.asarray(samples)
  if np.issubdtype(samples.dtype, np.integer):
    samples = samples.astype(np.float64) / float(np.iinfo(samples.dtype).max + 1)
  samples = samples.astype(np.float64, copy=False)
  if samples.ndim == 2:
    samples = samples.mean(axis=1)
  elif samples.ndim != 1:
    raise AudioError(name, UNREADABLE,
                     f"expected [samples] or [samples, channels], got {samples.shape}")
  if samples.size == 0:
    raise AudioError(name, EMPTY)
  if not np.all(np.isfinite(samples)):
    raise AudioError(name, NON_FINITE, f"{int(np.sum(~np.isfinite(samples)))} samples")
  if max_seconds is not None and max_seconds > 0 and samples.size / source_rate > max_seconds:
    raise AudioError(name, TOO_LONG, f"{samples.size / source_rate:.2f} s > {max_seconds} s")
  if source_rate != sample_rate:
    import soxr

    samples = soxr.resample(samples, source_rate, sample_rate, quality="VHQ")
    if samples.size == 0:
      raise AudioError(name, EMPTY, "nothing left after resampling")
  peak = float(np.max(np.abs(samples)))
  if peak < SILENCE_PEAK:
    raise AudioError(name, SILENT, f"peak {peak:.2e} < {SILENCE_PEAK:g}")
  return samples.astype(np.float32)


def load_audio(path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
  """Reads `path` as float32 mono at `sample_rate` (downmixed, resampled); raises AudioError."""
  data, rate = _read(str(path))
  return condition_waveform(data, rate, sample_rate, name=str(path), max_seconds=max_seconds)


# Speech kept on either side of the trimmed span: the synthetic corpus's utterances start within
# ~0.2 s of their first sound and end within ~0.1-0.5 s of their last (median 0 and 0.07 s).
TRIM_MARGIN_SECONDS = 0.1


def trim_edge_silence(wave: np.ndarray, sample_rate: int, top_db: float,
                      margin_seconds: float = TRIM_MARGIN_SECONDS) -> np.ndarray:
  """`wave` without its leading and trailing stretches quieter than `top_db` below its peak
  (librosa.effects.trim), keeping `margin_seconds` of them at each end. Recordings often open
  and close on a second of room tone that the corpus's utterances never have."""
  import librosa

  _, (start, end) = librosa.effects.trim(wave, top_db=float(top_db), frame_length=1024,
                                         hop_length=128)
  margin = int(round(margin_seconds * sample_rate))
  return wave[max(0, start - margin):min(len(wave), end + margin)]
