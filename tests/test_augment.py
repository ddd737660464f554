"""Acoustic augmentation: each step does what its recorded parameters say, measured on small
synthetic signals, and the draws are fixed by the seed."""

import collections

import numpy as np
import pytest

from echo_jax.data import augment
from echo_jax.data import synth_corpus
from echo_jax.data import tts_engines

SR = augment.SAMPLE_RATE


def tone(freq_hz: float = 200.0, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
  return amplitude * np.sin(2 * np.pi * freq_hz * np.arange(int(seconds * SR)) / SR)


def speechlike(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
  """Harmonic bursts (150 Hz, falling spectrum) separated by silence, like TTS output."""
  t = np.arange(int(seconds * SR)) / SR
  wave = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 20))
  gate = (np.sin(2 * np.pi * 2.0 * t) > 0).astype(float)
  return 0.2 * wave * gate + 1e-5 * np.random.default_rng(seed).standard_normal(t.size)


def band_energy(wave: np.ndarray, low_hz: float, high_hz: float) -> float:
  spectrum = np.abs(np.fft.rfft(wave)) ** 2
  freqs = np.fft.rfftfreq(wave.size, 1.0 / SR)
  return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())


def peak_frequency(wave: np.ndarray) -> float:
  spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
  return float(np.fft.rfftfreq(wave.size, 1.0 / SR)[np.argmax(spectrum)])


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
  return 10 * np.log10(augment.active_power(clean) / np.mean((noisy - clean) ** 2))


# ------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("kind", list(augment.NOISE_TYPES))
def test_noise_is_added_at_the_recorded_snr(kind):
  clean = speechlike()
  babble = np.random.default_rng(5).standard_normal(SR // 2)  # shorter than the utterance: looped
  for snr_db in (10.0, 17.3, 30.0):
    rng = np.random.default_rng(1)
    noise = augment.make_noise(kind, clean.size, rng, clean, babble)
    assert noise.shape == clean.shape and np.mean(noise**2) == pytest.approx(1.0)
    noisy = augment.add_noise(clean, noise, snr_db)
    assert measured_snr_db(clean, noisy) == pytest.approx(snr_db, abs=0.5)
  # The same through `apply` (no other step: the level is put back to the clean peak after).
  out = augment.apply(clean, {"noise": {"type": kind, "snr_db": 12.0}}, np.random.default_rng(2),
                      babble)
  noisy = augment.add_noise(clean, augment.make_noise(kind, clean.size, np.random.default_rng(2),
                                                      clean, babble), 12.0)
  np.testing.assert_allclose(out, noisy * np.max(np.abs(clean)) / np.max(np.abs(noisy)))


def test_noise_colours_have_their_spectral_slopes():
  rng = np.random.default_rng(0)
  n = 4 * SR

  def octave_slope_db(noise):  # power per Hz in 500-1000 vs 1000-2000 Hz
    per_hz = [band_energy(noise, lo, 2 * lo) / lo for lo in (500.0, 1000.0)]
    return 10 * np.log10(per_hz[1] / per_hz[0])

  assert octave_slope_db(augment.make_noise("white", n, rng)) == pytest.approx(0.0, abs=0.5)
  assert octave_slope_db(augment.make_noise("pink", n, rng)) == pytest.approx(-3.0, abs=0.5)
  assert octave_slope_db(augment.make_noise("brown", n, rng)) == pytest.approx(-6.0, abs=0.5)
  for kind in ("pink", "brown"):  # nothing below 20 Hz
    assert band_energy(augment.make_noise(kind, n, rng), 0.0, 19.0) < 1e-20
  # Speech-shaped noise follows the reference's spectral envelope.
  reference = speechlike(2.0)
  shaped = augment.make_noise("speech_shaped", n, rng, reference)
  bands = [(lo, lo + 500.0) for lo in np.arange(0.0, 8000.0, 500.0)]
  ref_db = 10 * np.log10([band_energy(reference, *b) / reference.size for b in bands])
  noise_db = 10 * np.log10([band_energy(shaped, *b) / shaped.size for b in bands])
  assert np.corrcoef(ref_db, noise_db)[0, 1] > 0.95


def test_missing_noise_inputs_and_unknown_kinds_are_named():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="babble bank"):
    augment.make_noise("babble", 100, rng)
  with pytest.raises(ValueError, match="reference"):
    augment.make_noise("speech_shaped", 100, rng)
  with pytest.raises(ValueError, match="violet"):
    augment.make_noise("violet", 100, rng)
  with pytest.raises(ValueError, match="echo"):
    augment.apply(tone(), {"echo": {}}, rng)


# ----------------------------------------------------------------------- band limit and speed


def test_band_limit_removes_energy_outside_the_recorded_band():
  white = np.random.default_rng(0).standard_normal(2 * SR)
  for low_hz, high_hz in ((300, 3400), (250, 3800)):
    out = augment.band_limit(white, low_hz, high_hz)
    applied = augment.apply(white, {"bandlimit": {"low_hz": low_hz, "high_hz": high_hz}},
                            np.random.default_rng(0))
    # `apply` only adds the peak normalisation.
    np.testing.assert_allclose(applied, out * augment.PEAK_CEILING / np.max(np.abs(out)))
    assert band_energy(out, high_hz, SR / 2) < 0.02 * band_energy(white, high_hz, SR / 2)
    assert band_energy(out, 1.2 * high_hz, SR / 2) < 1e-3 * band_energy(white, 1.2 * high_hz,
                                                                        SR / 2)
    assert band_energy(out, 0, low_hz) < 0.03 * band_energy(white, 0, low_hz)
    assert band_energy(out, 2 * low_hz, 0.8 * high_hz) == pytest.approx(
        band_energy(white, 2 * low_hz, 0.8 * high_hz), rel=0.05)


@pytest.mark.parametrize("factor", augment.SPEED_FACTORS)
def test_speed_perturbation_scales_f0_and_duration(factor):
  wave = tone(200.0, 1.0)
  out = augment.apply(wave, {"speed": {"factor": factor}}, np.random.default_rng(0))
  assert out.size == pytest.approx(wave.size / factor, abs=1)
  assert peak_frequency(out) == pytest.approx(200.0 * factor, abs=1.5)
  assert np.max(np.abs(out)) == pytest.approx(np.max(np.abs(wave)))  # level kept


# -------------------------------------------------------------------------------- reverb, gain


def schroeder_rt60_s(rir: np.ndarray) -> float:
  """T20 of the tail (direct path left out): the -5..-25 dB slope of the energy decay, x 3."""
  tail = rir[1:]
  decay = np.cumsum(tail[::-1] ** 2)[::-1]
  decay_db = 10 * np.log10(decay / decay[0])
  t = np.arange(tail.size) / SR
  fit = (decay_db <= -5) & (decay_db >= -25)
  slope = np.polyfit(t[fit], decay_db[fit], 1)[0]
  return -60.0 / slope


@pytest.mark.parametrize("rt60_s, drr_db", [(0.2, 0.0), (0.45, 4.0), (0.8, 10.0)])
def test_reverb_decays_at_the_recorded_rt60(rt60_s, drr_db):
  impulse = np.zeros(SR)
  impulse[0] = 0.5
  params = {"reverb": {"rt60_s": rt60_s, "drr_db": drr_db}}
  out = augment.apply(impulse, params, np.random.default_rng(3))
  rir = out / out[0]  # the impulse response, direct path 1
  assert schroeder_rt60_s(rir) == pytest.approx(rt60_s, rel=0.1)
  assert 10 * np.log10(1.0 / np.sum(rir[1:] ** 2)) == pytest.approx(drr_db, abs=0.1)
  assert out.size == impulse.size  # duration unchanged
  unit = augment.room_impulse_response(rt60_s, drr_db, np.random.default_rng(3))
  assert np.sum(unit**2) == pytest.approx(1.0)  # speech power roughly kept


def test_gain_is_applied_as_recorded():
  wave = speechlike()
  for db in (-20.0, -6.0, 0.0):
    out = augment.apply(wave, {"gain": {"db": db}}, np.random.default_rng(0))
    measured = 10 * np.log10(np.mean(out**2) / np.mean(wave**2))
    assert measured == pytest.approx(db, abs=0.01)


def test_nothing_clips_and_clean_audio_is_untouched():
  wave = speechlike()
  wave = 0.999 * wave / np.max(np.abs(wave))  # an engine at full scale
  assert augment.apply(wave, {}, np.random.default_rng(0)) is wave
  everything = {"speed": {"factor": 1.1}, "reverb": {"rt60_s": 0.8, "drr_db": 0.0},
                "noise": {"type": "white", "snr_db": 10.0},
                "bandlimit": {"low_hz": 300, "high_hz": 3400}}
  out = augment.apply(wave, everything, np.random.default_rng(0))
  assert np.max(np.abs(out)) == pytest.approx(augment.PEAK_CEILING)
  out = augment.apply(wave, {**everything, "gain": {"db": -6.0}}, np.random.default_rng(0))
  assert np.max(np.abs(out)) == pytest.approx(augment.PEAK_CEILING * 10 ** (-6 / 20))


# ------------------------------------------------------------------------------------- draws


def test_draws_follow_the_configured_rates_and_ranges():
  draws = [augment.draw(np.random.default_rng([0, i, 1])) for i in range(4000)]
  clean = sum(not d for d in draws) / len(draws)
  never = 1 - augment.CLEAN_PROBABILITY
  expected_clean = augment.CLEAN_PROBABILITY + never * np.prod(
      [1 - p for p in augment.PROBABILITIES.values()])
  assert clean == pytest.approx(expected_clean, abs=0.025)
  for kind, p in augment.PROBABILITIES.items():
    assert sum(kind in d for d in draws) / len(draws) == pytest.approx(never * p, abs=0.03)
  for d in draws:
    assert list(d) == [k for k in augment.ORDER if k in d]
    if "speed" in d:
      assert d["speed"]["factor"] in augment.SPEED_FACTORS
    if "reverb" in d:
      assert augment.RT60_RANGE_S[0] <= d["reverb"]["rt60_s"] <= augment.RT60_RANGE_S[1]
    if "noise" in d:
      assert d["noise"]["type"] in augment.NOISE_TYPES
      assert augment.SNR_RANGE_DB[0] <= d["noise"]["snr_db"] <= augment.SNR_RANGE_DB[1]
    if "bandlimit" in d:
      assert 50 <= d["bandlimit"]["low_hz"] <= 100 and 3300 <= d["bandlimit"]["high_hz"] <= 3800
    if "gain" in d:
      assert augment.GAIN_RANGE_DB[0] <= d["gain"]["db"] <= augment.GAIN_RANGE_DB[1]
  types = collections.Counter(d["noise"]["type"] for d in draws if "noise" in d)
  assert set(types) == set(augment.NOISE_TYPES)


def test_plan_augmentation_is_fixed_by_the_seed():
  voices = [v for v in tts_engines.default_voices() if v.engine == "espeak-ng"]
  sentences = [f"this is sentence number {w} of the test." for w in
               ("one two three four five six seven eight nine ten eleven twelve thirteen "
                "fourteen fifteen sixteen seventeen eighteen nineteen twenty").split()]
  plan, _ = synth_corpus.plan_corpus(200, 7, voices, sentences)
  again, _ = synth_corpus.plan_corpus(200, 7, voices, sentences)
  other, _ = synth_corpus.plan_corpus(200, 8, voices, sentences)
  assert [u.augment for u in plan] == [u.augment for u in again]
  assert [u.augment for u in plan] != [u.augment for u in other]
  # An utterance's augmentation does not depend on the corpus size.
  small, _ = synth_corpus.plan_corpus(50, 7, voices, sentences)
  assert [u.augment for u in small] == [u.augment for u in plan[:50]]
  for u in plan:  # the expected F0 includes the speed change and stays in the tracker range
    base = u.voice.expected_f0(u.pitch, u.sox_pitch_cents, u.pitch_range)
    assert u.expected_f0_hz == pytest.approx(base * augment.speed_factor(u.augment))
    low, high = tts_engines.TARGET_F0_RANGE
    assert low * 0.99 <= u.expected_f0_hz <= high * 1.01
  assert any("speed" in u.augment for u in plan) and any(not u.augment for u in plan)
  assert all(not u.augment and u.pitch_range is None for u in synth_corpus.plan_corpus(
      20, 7, voices, sentences, augment=False)[0])
  noisy, _ = synth_corpus.plan_corpus(20, 7, voices, sentences, augment=False, noise_snr_db=20.0)
  assert all(u.augment == {"noise": {"type": "white", "snr_db": 20.0}} for u in noisy)
