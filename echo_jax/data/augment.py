"""Acoustic augmentation of synthesised speech, drawn per utterance and recorded as a dict.

An utterance's augmentation is a dict kind -> parameters (an empty dict is clean audio), e.g.

    {"speed": {"factor": 1.1}, "reverb": {"rt60_s": 0.42, "drr_db": 3.1},
     "noise": {"type": "pink", "snr_db": 17.3}, "bandlimit": {"low_hz": 300, "high_hz": 3400},
     "gain": {"db": -6.0}}

`draw` makes the dict from a seeded generator (so a plan is fixed by its seed); `apply` runs it on
a float waveform in the order of a recording chain: speed -> reverb -> noise -> bandlimit, then
the peak is set back to the clean peak (capped below full scale: nothing clips), then gain.
Everything is numpy/scipy in-process; noise is generated here or taken from a babble bank.
"""

import fractions

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000
ORDER = ("speed", "reverb", "noise", "bandlimit", "gain")
CLEAN_PROBABILITY = 0.2  # utterances left untouched
# Probability of each kind for an utterance that is not left clean.
PROBABILITIES = {"speed": 0.5, "reverb": 0.3, "noise": 0.5, "bandlimit": 0.2, "gain": 0.5}
SPEED_FACTORS = (0.9, 1.1)
RT60_RANGE_S = (0.2, 0.8)
DRR_RANGE_DB = (0.0, 10.0)  # direct-to-reverberant energy ratio
NOISE_TYPES = {"white": 0.2, "pink": 0.25, "brown": 0.15, "speech_shaped": 0.2, "babble": 0.2}
SNR_RANGE_DB = (10.0, 30.0)
BANDLIMIT_LOW_HZ = (50, 100)  # an 8 kHz channel; the high-pass keeps the fundamental of every voice
BANDLIMIT_HIGH_HZ = (3300, 3800)
BANDLIMIT_ORDER = 8  # Butterworth, run forwards and backwards (zero phase)
GAIN_RANGE_DB = (-20.0, 0.0)  # attenuation only, so gain never clips
ACTIVE_LEVEL = 1e-3  # samples above -60 dBFS count as speech when measuring its power
PEAK_CEILING = 0.95
COLOURED_NOISE_LOW_HZ = 20.0  # no sub-audible rumble in pink/brown noise
SPEECH_SHAPE_WINDOW = 128  # Welch segment (8 ms): the spectral envelope, not the harmonics


def draw(rng: np.random.Generator) -> dict:
  """One utterance's augmentation dict (see module doc); rounded values are the applied ones."""
  if rng.random() < CLEAN_PROBABILITY:
    return {}
  augment = {}
  for kind in ORDER:
    if rng.random() >= PROBABILITIES[kind]:
      continue
    if kind == "speed":
      augment[kind] = {"factor": float(rng.choice(SPEED_FACTORS))}
    elif kind == "reverb":
      augment[kind] = {"rt60_s": round(float(rng.uniform(*RT60_RANGE_S)), 2),
                       "drr_db": round(float(rng.uniform(*DRR_RANGE_DB)), 1)}
    elif kind == "noise":
      types = list(NOISE_TYPES)
      weights = np.array([NOISE_TYPES[t] for t in types])
      augment[kind] = {"type": types[int(rng.choice(len(types), p=weights / weights.sum()))],
                       "snr_db": round(float(rng.uniform(*SNR_RANGE_DB)), 1)}
    elif kind == "bandlimit":
      augment[kind] = {"low_hz": int(round(rng.uniform(*BANDLIMIT_LOW_HZ), -1)),
                       "high_hz": int(round(rng.uniform(*BANDLIMIT_HIGH_HZ), -1))}
    else:
      augment[kind] = {"db": round(float(rng.uniform(*GAIN_RANGE_DB)), 1)}
  return augment


def ordered(augment: dict) -> dict:
  """The same dict with its kinds in application order (stable manifest rows)."""
  unknown = set(augment) - set(ORDER)
  if unknown:
    raise ValueError(f"unknown augmentation {sorted(unknown)}; known: {', '.join(ORDER)}")
  return {kind: augment[kind] for kind in ORDER if kind in augment}


def speed_factor(augment: dict) -> float:
  return float(augment.get("speed", {}).get("factor", 1.0))


# ---------------------------------------------------------------------------------------------
# The steps


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
  """Play `factor` times faster: duration / factor, every frequency (F0 too) x factor."""
  ratio = fractions.Fraction(factor).limit_denominator(100)
  return signal.resample_poly(wave, up=ratio.denominator, down=ratio.numerator)


def room_impulse_response(rt60_s: float, drr_db: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Direct path + exponentially decaying noise tail (60 dB down at rt60_s), unit energy."""
  n = max(int(rt60_s * sample_rate), 2)
  t = np.arange(n) / sample_rate
  tail = rng.standard_normal(n) * 10.0 ** (-3.0 * t / rt60_s)
  tail[0] = 0.0
  tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
  tail[0] = 1.0
  return tail / np.sqrt(np.sum(tail**2))


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
  """Convolution with the RIR, cut to the input length (the duration does not change)."""
  return signal.fftconvolve(wave, rir)[:wave.size]


def active_power(wave: np.ndarray) -> float:
  """Mean power of the samples above -60 dBFS (TTS output has long silences)."""
  active = wave[np.abs(wave) > ACTIVE_LEVEL]
  return float(np.mean(np.square(active))) if active.size else 0.0


def _shaped_noise(n: int, amplitude, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
  """White noise whose spectrum is multiplied by amplitude(frequencies in Hz)."""
  spectrum = np.fft.rfft(rng.standard_normal(n))
  return np.fft.irfft(spectrum * amplitude(np.fft.rfftfreq(n, 1.0 / sample_rate)), n)


def long_term_spectrum(wave: np.ndarray, sample_rate: int = SAMPLE_RATE,
                       window: int = SPEECH_SHAPE_WINDOW) -> tuple[np.ndarray, np.ndarray]:
  """(frequencies, mean power spectrum) over Hann frames of `window` samples, half overlapping."""
  padded = np.pad(wave, (0, max(window - wave.size, 0)))
  frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::window // 2]
  power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(window), axis=1)) ** 2, axis=0)
  return np.fft.rfftfreq(window, 1.0 / sample_rate), power


def make_noise(kind: str, n: int, rng: np.random.Generator, reference: np.ndarray | None = None,
               babble: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """`n` samples of unit-power noise of `kind` (see NOISE_TYPES).

  speech_shaped follows the long-term spectral envelope of `reference` (the utterance itself);
  babble is a random stretch of the `babble` bank (several talkers at once), looped if short.
  """
  if kind == "white":
    noise = rng.standard_normal(n)
  elif kind in ("pink", "brown"):  # power falls as 1/f or 1/f^2
    exponent = 0.5 if kind == "pink" else 1.0
    noise = _shaped_noise(n, lambda f: np.where(
        f >= COLOURED_NOISE_LOW_HZ, np.maximum(f, COLOURED_NOISE_LOW_HZ) ** -exponent, 0.0),
        rng, sample_rate)
  elif kind == "speech_shaped":
    if reference is None:
      raise ValueError("speech_shaped noise needs the reference utterance")
    freqs, power = long_term_spectrum(reference, sample_rate)
    noise = _shaped_noise(n, lambda f: np.sqrt(np.interp(f, freqs, power)), rng, sample_rate)
  elif kind == "babble":
    if babble is None or babble.size == 0:
      raise ValueError("babble noise needs a babble bank")
    start = int(rng.integers(babble.size))
    noise = babble[(start + np.arange(n)) % babble.size]
  else:
    raise ValueError(f"unknown noise type {kind!r}; known: {', '.join(NOISE_TYPES)}")
  power = float(np.mean(noise**2))
  return noise / np.sqrt(power) if power > 0 else noise


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
  """wave + noise scaled so that active_power(wave) / power(noise) is `snr_db`."""
  scale = np.sqrt(active_power(wave) / (np.mean(noise**2) * 10.0 ** (snr_db / 10.0)))
  return wave + scale * noise


def band_limit(wave: np.ndarray, low_hz: float, high_hz: float,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Zero-phase band-pass low_hz..high_hz (a telephone channel)."""
  sos = signal.butter(BANDLIMIT_ORDER, [low_hz, high_hz], btype="bandpass", fs=sample_rate,
                      output="sos")
  return signal.sosfiltfilt(sos, wave)


def apply_gain(wave: np.ndarray, db: float) -> np.ndarray:
  return wave * 10.0 ** (db / 20.0)


def apply(wave: np.ndarray, augment: dict, rng: np.random.Generator,
          babble: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """`wave` (float, full scale 1) with `augment` applied; an empty dict returns it unchanged."""
  augment = ordered(augment)
  if not augment:
    return wave
  out = np.asarray(wave, dtype=np.float64)
  clean_peak = min(float(np.max(np.abs(out), initial=0.0)), PEAK_CEILING)
  if "speed" in augment:
    out = speed_perturb(out, augment["speed"]["factor"])
  if "reverb" in augment:
    p = augment["reverb"]
    out = reverberate(out, room_impulse_response(p["rt60_s"], p["drr_db"], rng, sample_rate))
  if "noise" in augment:
    p = augment["noise"]
    out = add_noise(out, make_noise(p["type"], out.size, rng, out, babble, sample_rate),
                    p["snr_db"])
  if "bandlimit" in augment:
    out = band_limit(out, augment["bandlimit"]["low_hz"], augment["bandlimit"]["high_hz"],
                     sample_rate)
  peak = float(np.max(np.abs(out), initial=0.0))
  if set(augment) - {"gain"} and peak > 0:  # back to the engine's level, below full scale
    out = out * (clean_peak / peak)
  if "gain" in augment:
    out = apply_gain(out, augment["gain"]["db"])
  return out
