"""Audio loading: any rate/channels to float32 mono, and a named reason for every unusable file."""

import pickle

import numpy as np
import pytest
import soundfile

from echo_jax.data import audio

SR = 16000


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
  return (0.4 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_mono_16k_pcm16_round_trips(tmp_path):
  wave = tone(440.0, 0.5, SR)
  path = tmp_path / "a.wav"
  soundfile.write(path, wave, SR, subtype="PCM_16")
  got = audio.load_audio(path, SR)
  assert got.dtype == np.float32 and got.shape == wave.shape
  np.testing.assert_allclose(got, wave, atol=1.0 / 32768)


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
  left, right = tone(300.0, 1.0, 44100), tone(300.0, 1.0, 44100) * 0.5
  path = tmp_path / "stereo.flac"
  soundfile.write(path, np.stack([left, right], axis=1), 44100)
  got = audio.load_audio(path, SR)
  assert got.ndim == 1 and got.dtype == np.float32
  assert abs(got.size - SR) <= 1
  expected = 0.75 * tone(300.0, 1.0, SR)  # the channel mean at the new rate
  n = min(got.size, expected.size)
  np.testing.assert_allclose(got[200:n - 200], expected[200:n - 200], atol=2e-3)


def test_int_arrays_are_scaled_and_8k_is_upsampled():
  pcm = (tone(200.0, 1.0, 8000) * 32767).astype(np.int16)
  got = audio.condition_waveform(pcm, 8000, SR)
  assert got.size == 2 * pcm.size
  assert abs(float(np.max(np.abs(got))) - 0.4) < 0.01


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.write_text("not audio"), audio.UNREADABLE),
    (lambda p: None, audio.UNREADABLE),  # missing file
    (lambda p: soundfile.write(p, np.zeros(0, np.float32), SR), audio.EMPTY),
    (lambda p: soundfile.write(p, np.zeros(SR, np.float32), SR, subtype="PCM_16"), audio.SILENT),
    (lambda p: soundfile.write(p, np.where(np.arange(SR) == 5, np.nan, tone(200.0, 1.0, SR)), SR,
                               subtype="FLOAT"), audio.NON_FINITE),
    (lambda p: soundfile.write(p, tone(200.0, 3.0, SR), SR), audio.TOO_LONG),
])
def test_bad_files_raise_their_reason(tmp_path, make, reason):
  path = tmp_path / "bad.wav"
  make(path)
  with pytest.raises(audio.AudioError) as info:
    audio.load_audio(path, SR, max_seconds=2.0)
  assert info.value.reason == reason
  assert str(path) in str(info.value)


def test_dithered_digital_silence_is_silent():
  dither = np.random.default_rng(0).integers(-2, 3, SR).astype(np.int16)
  with pytest.raises(audio.AudioError, match=audio.SILENT):
    audio.condition_waveform(dither, SR, SR, name="dither")


def test_audio_error_pickles_for_worker_processes():
  err = pickle.loads(pickle.dumps(audio.AudioError("x.wav", audio.SILENT, "peak 0")))
  assert (err.path, err.reason, err.detail) == ("x.wav", audio.SILENT, "peak 0")


def _quiet(seconds: float, db: float, seed: int) -> np.ndarray:
  return (10 ** (db / 20) * np.random.default_rng(seed).standard_normal(int(seconds * SR))
          ).astype(np.float32)


def test_edge_silence_is_cut_to_the_margin_and_the_speech_kept_whole():
  burst = tone(440.0, 1.0, SR)  # peak 0.4 (-8 dBFS)
  wave = np.concatenate([_quiet(1.5, -70, 0), burst, _quiet(0.7, -70, 1)])
  got = audio.trim_edge_silence(wave, SR, top_db=40)
  lead = 0.1 * SR  # the margin kept at each end
  # librosa's frames (1024 samples, hop 128) place the cut within a frame of the burst's edges
  assert abs(len(got) - (len(burst) + 2 * lead)) <= 1024
  start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(
      got, 64) == burst[:64], axis=1))[0])
  np.testing.assert_array_equal(got[start:start + len(burst)], burst)
  assert abs(start - lead) <= 1024


def test_a_noise_floor_within_top_db_of_the_peak_is_not_cut():
  wave = np.concatenate([_quiet(1.0, -30, 0), tone(440.0, 1.0, SR), _quiet(1.0, -30, 1)])
  assert len(audio.trim_edge_silence(wave, SR, top_db=40)) == len(wave)  # floor at -22 dB re peak
  assert len(audio.trim_edge_silence(wave, SR, top_db=15)) < len(wave) - SR
