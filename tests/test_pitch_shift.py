"""Formant-preserving pitch shift: F0 moves by the semitone ratio (measured with the project's
own F0 extractor), the spectral envelope and the length stay, silence stays silent."""

import warnings

import numpy as np
import pytest
import soundfile
from scipy import signal

from echo_jax.data import augment
from echo_jax.data import features
from echo_jax.inference.error_breakdown import median_voiced_f0
from echo_jax.experiments import pitch_shift

with warnings.catch_warnings():
  warnings.simplefilter("ignore")
  import pyworld

SR = 16000
F0_HZ = 140.0
FORMANTS_HZ = ((700.0, 80.0), (1200.0, 90.0), (2600.0, 120.0))  # (centre, bandwidth): an /a/
SILENCE_S = 0.2
VOWEL_S = 0.8
PEAK = 0.5


def vowel() -> np.ndarray:
  """Silence (faint noise), then a vowel: a band-limited 140 Hz sawtooth through three formant
  resonators, with 20 ms fades. Float32, peak PEAK."""
  t = np.arange(int(VOWEL_S * SR)) / SR
  source = sum(np.sin(2 * np.pi * F0_HZ * k * t) / k for k in range(1, int(SR / 2 / F0_HZ)))
  for centre, bandwidth in FORMANTS_HZ:
    r = np.exp(-np.pi * bandwidth / SR)
    source = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * centre / SR), r * r], source)
  fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
  voiced = PEAK * source * fade / np.max(np.abs(source * fade))
  silence = 1e-5 * np.random.default_rng(0).standard_normal(int(SILENCE_S * SR))
  return np.concatenate([silence, voiced]).astype(np.float32)


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
  return vowel()


def measured_f0(wave: np.ndarray) -> np.ndarray:
  return features.f0_track(wave, features.FeatureParams(sample_rate=SR))


def envelope_summary(wave: np.ndarray) -> tuple[float, float, np.ndarray]:
  """(F1 Hz, centroid Hz, log envelope) of the mean WORLD spectral envelope of the voiced frames
  below 4 kHz. F1 is the power centroid of 300-1100 Hz: an argmax would snap to the harmonic
  nearest the formant once F0 is high."""
  x = wave.astype(np.float64)
  f0, times = pyworld.harvest(x, SR)
  envelope = pyworld.cheaptrick(x, f0, times, SR)
  frequencies = np.arange(envelope.shape[1]) * SR / (2 * (envelope.shape[1] - 1))
  log_envelope = np.log(envelope[f0 > 0]).mean(axis=0)
  power = np.exp(log_envelope)
  f1_band = (frequencies > 300) & (frequencies < 1100)
  f1_hz = np.sum(frequencies[f1_band] * power[f1_band]) / np.sum(power[f1_band])
  band = frequencies < 4000
  centroid_hz = np.sum(frequencies[band] * power[band]) / np.sum(power[band])
  return float(f1_hz), float(centroid_hz), log_envelope[band]


def log_spectral_distance(log_a: np.ndarray, log_b: np.ndarray) -> float:
  """RMS difference of two log envelopes after removing their level difference (shape only)."""
  difference = log_a - log_b
  return float(np.sqrt(np.mean((difference - difference.mean())**2)))


@pytest.mark.parametrize("semitones", [3.0, -6.0, 6.0])
def test_f0_moves_by_the_semitone_ratio_and_formants_stay(wave, semitones):
  shifted = pitch_shift.shift_pitch(wave, SR, semitones)
  assert shifted.dtype == np.float32 and shifted.shape == wave.shape
  assert np.max(np.abs(shifted)) == pytest.approx(PEAK, rel=1e-6)

  ratio = 2.0 ** (semitones / 12.0)
  assert pitch_shift.semitone_ratio(semitones) == pytest.approx(ratio)
  f0_in, f0_out = median_voiced_f0(measured_f0(wave)), median_voiced_f0(measured_f0(shifted))
  assert f0_in == pytest.approx(F0_HZ, rel=0.01)
  assert f0_out / f0_in == pytest.approx(ratio, rel=0.03)

  # The envelope stays: F1 within 6 %, the centroid moves by under a quarter of the F0 shift (in
  # log frequency), and the envelope's shape changes far less than under a plain resampling by
  # the same ratio, which moves the formants with the pitch (checked, so the measures can tell).
  f1_in, centroid_in, log_in = envelope_summary(wave)
  f1_out, centroid_out, log_out = envelope_summary(shifted)
  f1_resampled, _, log_resampled = envelope_summary(
      augment.speed_perturb(wave, ratio).astype(np.float32))
  assert f1_in == pytest.approx(FORMANTS_HZ[0][0], rel=0.03)
  assert f1_out == pytest.approx(f1_in, rel=0.06)
  assert abs(np.log(centroid_out / centroid_in)) < 0.25 * abs(np.log(ratio))
  assert np.log(f1_resampled / f1_in) / np.log(ratio) > 0.6  # the band edges damp the move
  assert log_spectral_distance(log_out, log_in) < 0.25 * log_spectral_distance(log_resampled,
                                                                                log_in)


def test_zero_semitones_keeps_f0_and_silence_stays_silent(wave):
  shifted = pitch_shift.shift_pitch(wave, SR, 0.0)
  assert shifted.shape == wave.shape
  assert median_voiced_f0(measured_f0(shifted)) == pytest.approx(
      median_voiced_f0(measured_f0(wave)), rel=0.01)
  for out in (shifted, pitch_shift.shift_pitch(wave, SR, 6.0)):
    silent_frames = measured_f0(out)[:int(0.9 * SILENCE_S * SR) // 128]
    assert np.all(silent_frames == 0)  # unvoiced in, unvoiced out
    silent = out[:int(0.9 * SILENCE_S * SR)]
    assert np.sqrt(np.mean(silent.astype(np.float64)**2)) < 1e-3 * PEAK


def test_deterministic_and_edge_cases(wave):
  first = pitch_shift.shift_pitch(wave, SR, -3.0)
  assert np.array_equal(first, pitch_shift.shift_pitch(wave.copy(), SR, -3.0))
  assert np.array_equal(pitch_shift.shift_pitch(np.zeros(SR // 4, np.float32), SR, 3.0),
                        np.zeros(SR // 4, np.float32))
  assert pitch_shift.shift_pitch(np.zeros(0, np.float32), SR, 3.0).shape == (0,)
  quiet = pitch_shift.shift_pitch(0.01 * wave, SR, 3.0)  # the input's peak level is kept
  assert np.max(np.abs(quiet)) == pytest.approx(0.01 * PEAK, rel=1e-5)
  with pytest.raises(ValueError, match="mono"):
    pitch_shift.shift_pitch(np.stack([wave, wave]), SR, 3.0)
  with pytest.raises(ValueError, match="non-finite"):
    pitch_shift.shift_pitch(np.full(100, np.nan, np.float32), SR, 3.0)


def test_one_analysis_serves_every_shift_with_the_same_audio(wave, tmp_path):
  analysis = pitch_shift.analyse(wave, SR)
  for semitones in (-6.0, 0.0, 3.0):
    assert np.array_equal(pitch_shift.synthesise(analysis, semitones),
                          pitch_shift.shift_pitch(wave, SR, semitones))
  # The pool worker writes each target as PCM-16 of exactly that audio, from one read.
  source = str(tmp_path / "in.wav")
  soundfile.write(source, wave, SR, subtype="FLOAT")
  targets = [(-3.0, str(tmp_path / "down.wav")), (6.0, str(tmp_path / "up.wav"))]
  assert pitch_shift.write_shifted((source, SR, targets)) == source
  for semitones, target in targets:
    written, rate = soundfile.read(target, dtype="float32")
    expected = pitch_shift.shift_pitch(wave, SR, semitones)
    assert rate == SR and written.shape == expected.shape
    assert np.max(np.abs(written - expected)) <= 1.0 / 32768 + 1e-7  # PCM-16 rounding only
  assert sorted(p.name for p in tmp_path.iterdir()) == ["down.wav", "in.wav", "up.wav"]
