"""Log-mel and F0: frame alignment, the seed's formulas, pitch accuracy, silence."""

import numpy as np
import pytest

from echo_jax.config.defaults import default_data_config
from echo_jax.data import features

SR = 16000


def harmonic_tone(f0: float, seconds: float, harmonics: int = 5, seed: int = 0) -> np.ndarray:
  t = np.arange(int(seconds * SR)) / SR
  phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, harmonics)
  wave = sum((0.5 / k) * np.sin(2 * np.pi * f0 * k * t + phases[k - 1])
             for k in range(1, harmonics + 1))
  return wave.astype(np.float32)


@pytest.fixture(scope="module")
def cfg():
  return default_data_config()


@pytest.mark.parametrize("num_samples", [1, 127, 128, 1000, 16000, 23457])
def test_mel_and_f0_have_the_same_frames(cfg, num_samples):
  wave = np.random.default_rng(num_samples).normal(0, 0.1, num_samples).astype(np.float32)
  feats = features.compute_features(wave, cfg)
  expected = num_samples // cfg.hop_length + 1
  assert feats["mel"].shape == (expected, cfg.n_mels)
  assert feats["f0"].shape == (expected,)
  assert feats["mel"].dtype == np.float32 and feats["f0"].dtype == np.float32
  np.testing.assert_array_equal(feats["voiced"], feats["f0"] > 0)
  assert features.num_frames(num_samples, cfg.hop_length) == expected


def test_log_mel_matches_the_seed_formula(cfg):
  """Centred, zero-padded periodic-Hann power STFT -> HTK mel (no norm) -> log10/clamp/(x+4)/4."""
  import librosa

  rng = np.random.default_rng(1)
  wave = (harmonic_tone(180.0, 0.5) + rng.normal(0, 0.01, SR // 2)).astype(np.float32)
  n_fft, hop = cfg.n_fft, cfg.hop_length
  padded = np.pad(wave.astype(np.float64), n_fft // 2)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
  frames = np.stack([padded[i * hop:i * hop + n_fft] * window
                     for i in range(len(wave) // hop + 1)])
  power = np.abs(np.fft.rfft(frames, axis=1))**2  # [T, n_fft/2+1]
  basis = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                              htk=True, norm=None)
  log_spec = np.log10(np.maximum(power @ basis.T, 1e-10))
  expected = (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0
  got = features.log_mel(wave, cfg)
  np.testing.assert_allclose(got, expected, atol=2e-4)
  assert got.min() >= got.max() - 2.0 - 1e-6  # the clamp: 8 decades / 4


def test_pure_tone_lands_in_its_htk_mel_band(cfg):
  tone = (0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(SR) / SR)).astype(np.float32)
  mel = features.log_mel(tone, cfg)
  band = int(np.argmax(mel[mel.shape[0] // 2]))
  hz_to_mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731 - HTK
  edges_mel = np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2)
  centre_hz = 700.0 * (10**(edges_mel[band + 1] / 2595.0) - 1.0)
  assert abs(centre_hz - 1000.0) < 40.0


@pytest.mark.parametrize("f0", [110.0, 155.0, 230.0, 415.0])
def test_f0_of_a_harmonic_tone_is_within_one_percent(cfg, f0):
  wave = harmonic_tone(f0, 1.2, seed=int(f0))
  track = features.f0_track(wave, cfg)
  interior = track[3:-3]  # frames whose DIO window lies inside the signal
  voiced = interior > 0
  assert voiced.mean() > 0.95
  rel = np.abs(interior[voiced] / f0 - 1.0)
  assert rel.max() < 0.01, rel.max()


def test_frames_are_aligned_in_time(cfg):
  """A tone starting at sample s: mel energy and voicing switch on at the same frame."""
  start = 40 * cfg.hop_length
  wave = np.zeros(SR, np.float32)
  wave[start:] = harmonic_tone(200.0, (SR - start) / SR)
  feats = features.compute_features(wave, cfg)
  energy = feats["mel"].max(axis=1)
  first_loud = int(np.argmax(energy > energy.min() + 0.5))
  first_voiced = int(np.argmax(feats["voiced"]))
  assert abs(first_loud - 40) <= 4  # the n_fft window reaches the onset 4 hops early
  assert abs(first_voiced - 40) <= 4


def test_silence_is_all_unvoiced(cfg):
  assert not np.any(features.f0_track(np.zeros(SR, np.float32), cfg))
  lsb_dither = np.random.default_rng(0).integers(-1, 2, SR) / 32768.0
  assert not np.any(features.f0_track(lsb_dither.astype(np.float32), cfg))


def test_f0_respects_the_configured_range(cfg):
  low = cfg.copy_and_resolve_references()
  low.f0_floor, low.f0_ceil = 71.0, 150.0
  track = features.f0_track(harmonic_tone(300.0, 1.0, harmonics=1), low)
  assert np.all(track <= 150.0 * 1.05)


def test_feature_params_from_config_round_trip(cfg):
  params = features.FeatureParams.from_config(cfg)
  assert params.hop_length == cfg.hop_length and params.n_mels == cfg.n_mels
  wave = harmonic_tone(150.0, 0.3)
  np.testing.assert_array_equal(features.log_mel(wave, params), features.log_mel(wave, cfg))
  np.testing.assert_array_equal(features.f0_track(wave, params), features.f0_track(wave, cfg))
