"""Log-mel spectrogram and F0 with exactly aligned frames (the seed's parameters and scaling).

Both streams have T = samples // hop + 1 frames and frame t is centred on sample t * hop:
the mel STFT is centred (n_fft // 2 zeros on both sides) and DIO's frame t sits at
t * frame_period ms with frame_period = hop / sample_rate * 1000.

`data_cfg` is anything with the attributes of `FeatureParams` (config.data qualifies).
Nothing here imports TensorFlow, so the prepare worker processes stay light.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np

with warnings.catch_warnings():  # pyworld imports the deprecated pkg_resources
  warnings.simplefilter("ignore")
  import pyworld


@dataclasses.dataclass(frozen=True)
class FeatureParams:
  """The data-config fields that determine the stored features (their identity for caching)."""
  sample_rate: int = 16000
  n_fft: int = 1024
  hop_length: int = 128
  n_mels: int = 128
  fmin: float = 0.0
  fmax: float = 8000.0
  f0_floor: float = 71.0
  f0_ceil: float = 800.0
  max_audio_seconds: float = 15.0

  @classmethod
  def from_config(cls, data_cfg) -> "FeatureParams":
    values = {f.name: getattr(data_cfg, f.name) for f in dataclasses.fields(cls)}
    for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
      values[name] = int(values[name])
    for name in ("fmin", "fmax", "f0_floor", "f0_ceil", "max_audio_seconds"):
      values[name] = float(values[name])
    return cls(**values)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def num_frames(num_samples: int, hop_length: int) -> int:
  """Frames of a centred STFT / DIO track of `num_samples` samples."""
  return int(num_samples) // int(hop_length) + 1


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
  import librosa

  return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                             htk=True, norm=None, dtype=np.float32)


def log_mel(wave: np.ndarray, data_cfg) -> np.ndarray:
  """[T, n_mels] float32: HTK mel (no norm) of the power spectrum, seed log scaling.

  log10(max(mel, 1e-10)), clamped below at its maximum - 8, then (x + 4) / 4.
  """
  import librosa

  wave = np.asarray(wave, dtype=np.float32)
  with warnings.catch_warnings():  # inputs shorter than n_fft are fine: the padding is zeros
    warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal")
    stft = librosa.stft(wave, n_fft=int(data_cfg.n_fft), hop_length=int(data_cfg.hop_length),
                        window="hann", center=True, pad_mode="constant")
  power = np.abs(stft)**2
  basis = _mel_basis(int(data_cfg.sample_rate), int(data_cfg.n_fft), int(data_cfg.n_mels),
                     float(data_cfg.fmin), float(data_cfg.fmax))
  mel = basis @ power  # [n_mels, T]
  log_spec = np.log10(np.maximum(mel, 1e-10))
  log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
  return ((log_spec + 4.0) / 4.0).T.astype(np.float32)


def f0_track(wave: np.ndarray, data_cfg) -> np.ndarray:
  """[T] float32 F0 in Hz from pyworld DIO refined by StoneMask (float64 inside); unvoiced 0."""
  sample_rate = int(data_cfg.sample_rate)
  hop = int(data_cfg.hop_length)
  x = np.ascontiguousarray(wave, dtype=np.float64)
  frame_period_ms = hop / sample_rate * 1000.0
  f0, times = pyworld.dio(x, sample_rate, f0_floor=float(data_cfg.f0_floor),
                          f0_ceil=float(data_cfg.f0_ceil), frame_period=frame_period_ms)
  f0 = pyworld.stonemask(x, f0, times, sample_rate)
  frames = num_frames(x.size, hop)
  out = np.zeros(frames, dtype=np.float32)
  n = min(frames, f0.size)  # DIO's count can differ by one from T when hop/sr is not exact in ms
  out[:n] = f0[:n]
  out[~np.isfinite(out) | (out < 0)] = 0.0
  return out


def compute_features(wave: np.ndarray, data_cfg) -> dict[str, np.ndarray]:
  """dict(mel [T, n_mels] float32, f0 [T] float32, voiced [T] bool) for a mono waveform."""
  mel = log_mel(wave, data_cfg)
  f0 = f0_track(wave, data_cfg)
  if mel.shape[0] != f0.shape[0]:
    raise AssertionError(f"mel has {mel.shape[0]} frames but f0 has {f0.shape[0]}")
  return {"mel": mel, "f0": f0, "voiced": f0 > 0}
