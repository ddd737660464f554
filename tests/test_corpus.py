"""Synthetic corpus: pitch settings show up in measured F0, transcripts are what was spoken,
augmentations are recorded and applied, determinism, voice-disjoint splits, resume, and failures
skipped with counted reasons."""

import collections
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from echo_jax.data import augment
from echo_jax.data import synth_corpus
from echo_jax.data import text as text_lib
from echo_jax.data import tts_engines
from echo_jax.data.tts_engines import Voice

NUM = 12
SEED = 0
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def voiced_f0(pcm: np.ndarray, sample_rate: int = synth_corpus.SAMPLE_RATE) -> np.ndarray:
  import pyworld  # pylint: disable=import-outside-toplevel
  x = pcm.astype(np.float64) / 32768.0
  f0, t = pyworld.dio(x, sample_rate, f0_floor=60.0, f0_ceil=600.0, frame_period=10.0)
  f0 = pyworld.stonemask(x, f0, t, sample_rate)
  assert np.mean(f0 > 0) > 0.3, "expected mostly voiced speech"
  return f0[f0 > 0]


def median_f0(pcm: np.ndarray, sample_rate: int = synth_corpus.SAMPLE_RATE) -> float:
  return float(np.median(voiced_f0(pcm, sample_rate)))


def voice(speaker: str) -> Voice:
  return next(v for v in tts_engines.default_voices() if v.speaker == speaker)


def file_digests(corpus_dir) -> dict[str, str]:
  wav_dir = os.path.join(corpus_dir, "wavs")
  digests = {}
  for name in sorted(os.listdir(wav_dir)):
    with open(os.path.join(wav_dir, name), "rb") as f:
      digests[name] = hashlib.md5(f.read()).hexdigest()
  return digests


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("corpus") / "c")
  summary = synth_corpus.build_corpus(out, NUM, seed=SEED, workers=2, progress=False)
  return out, summary, synth_corpus.read_manifest(out)


@pytest.fixture(scope="module")
def tiny_voices():
  return [voice("espeak-ng/en-us+m3"), voice("espeak-ng/en-gb+f2"),
          voice("espeak-ng/en-us+m6"), voice("espeak-ng/en-us+m7")]


@pytest.fixture(scope="module")
def tiny_sentences():
  from echo_jax.data import fortunes  # pylint: disable=import-outside-toplevel
  return fortunes.load_sentences()[0][:300]


# --------------------------------------------------------------------------- pitch control


@pytest.mark.parametrize("speaker, low, high", [
    ("espeak-ng/en-us+m3", 20, 80),
    ("espeak-ng/en-gb-scotland+f2", 20, 80),
    ("flite/kal16", 90, 150),
    ("flite/slt", 160, 250),
    ("festival/kal_diphone", 85, 150),
])
def test_higher_pitch_setting_gives_higher_f0(speaker, low, high):
  v = voice(speaker)
  rate = v.rate_range[0] if v.rate_unit == "wpm" else 1.0
  f0_low = median_f0(synth_corpus.synthesise_utterance(v, SENTENCE, low, rate))
  f0_high = median_f0(synth_corpus.synthesise_utterance(v, SENTENCE, high, rate))
  expected_ratio = v.expected_f0(high) / v.expected_f0(low)
  assert f0_high > f0_low
  assert f0_high / f0_low == pytest.approx(expected_ratio, rel=0.15)
  assert f0_low == pytest.approx(v.expected_f0(low), rel=0.2)
  assert f0_high == pytest.approx(v.expected_f0(high), rel=0.2)


def test_sox_pitch_shift_moves_f0_by_the_requested_cents():
  v = voice("festival/cmu_us_slt_arctic_hts")  # no native pitch control: sox only
  down = median_f0(synth_corpus.synthesise_utterance(v, SENTENCE, None, 1.0, -300))
  up = median_f0(synth_corpus.synthesise_utterance(v, SENTENCE, None, 1.0, 300))
  assert up / down == pytest.approx(2.0 ** (600 / 1200), rel=0.08)


def test_pitch_range_setting_widens_the_intonation():
  for speaker, pitch in (("espeak-ng/en-us+m3", 50), ("flite/kal16", 120),
                         ("festival/kal_diphone", 120)):
    v = voice(speaker)
    rate = v.rate_range[0] if v.rate_unit == "wpm" else 1.0
    spread = {}
    for pitch_range in (0.5, 1.5):
      f0 = voiced_f0(synth_corpus.synthesise_utterance(v, SENTENCE, pitch, rate,
                                                       pitch_range=pitch_range))
      spread[pitch_range] = np.std(12 * np.log2(f0))  # semitones
      ratio = np.median(f0) / v.expected_f0(pitch, 0, pitch_range)
      assert 0.8 < ratio < 1.2, (speaker, pitch_range, ratio)
    assert spread[1.5] > 1.2 * spread[0.5], (speaker, spread)


def test_speed_augmentation_of_real_speech_scales_f0_and_duration():
  v = voice("espeak-ng/en-us+f2")
  clean = synth_corpus.synthesise_utterance(v, SENTENCE, 50, 175)
  fast = synth_corpus.synthesise_utterance(v, SENTENCE, 50, 175,
                                           augment={"speed": {"factor": 1.1}})
  assert fast.size == pytest.approx(clean.size / 1.1, abs=2)
  assert median_f0(fast) / median_f0(clean) == pytest.approx(1.1, rel=0.03)


def test_corpus_f0_tracks_requested_settings(corpus):
  out, _, rows = corpus
  expected, measured = [], []
  # Band-limiting removes the fundamental, noise lowers DIO's voicing and reverberation smears
  # it; the F0 tracker is then off (measured in docs/data.md), so those rows are left out and the
  # rest must hold docs/data.md's "within about +-20 %" (speed and gain change no F0 tracking).
  for row in [r for r in rows if not {"bandlimit", "noise", "reverb"} & set(r["augment"])]:
    pcm, _ = sf.read(os.path.join(out, row["path"]), dtype="int16")
    expected.append(row["expected_f0_hz"])
    measured.append(median_f0(pcm))
  ratio = np.array(measured) / np.array(expected)
  assert len(ratio) >= 4  # not vacuous: the fixture corpus has 5 such rows
  assert np.all((ratio > 0.8) & (ratio < 1.2)), list(zip(expected, measured))
  assert np.corrcoef(np.log(expected), np.log(measured))[0, 1] > 0.9
  assert max(expected) / min(expected) > 1.5  # the corpus really spans a range of pitch


# ------------------------------------------------------------------ manifest and transcripts


def test_manifest_fields_and_audio_format(corpus):
  out, summary, rows = corpus
  assert summary["requested"] == NUM and summary["written"] == len(rows) == NUM
  assert summary["skipped"] == {}
  required = {"id", "path", "text", "raw_text", "text_source", "engine", "voice", "speaker",
              "pitch", "pitch_unit", "pitch_range", "rate", "rate_unit", "sox_pitch_cents",
              "augment", "expected_f0_hz", "duration", "sample_rate", "split"}
  for row in rows:
    assert required <= row.keys()
    info = sf.info(os.path.join(out, row["path"]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)
    assert row["sample_rate"] == 16000 and not os.path.isabs(row["path"])
    assert row["speaker"] == f"{row['engine']}/{row['voice']}"
    assert abs(row["sox_pitch_cents"]) <= 300
    assert row["text_source"] in ("fortunes", "wordnet")
    assert row["augment"] == augment.ordered(row["augment"])  # known kinds only
    assert (row["pitch_range"] is None) == (voice(row["speaker"]).pitch_unit == "")
  assert {r["engine"] for r in rows} == set(tts_engines.ENGINES)
  assert any(r["augment"] for r in rows)
  assert summary["augmented"] == sum(bool(r["augment"]) for r in rows)
  assert sum(summary["text_sources"].values()) == len(rows)
  assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


def test_transcripts_are_the_spoken_text(corpus):
  out, _, rows = corpus
  for row in rows:
    assert row["text"] == text_lib.normalise_transcript(row["raw_text"])
    assert text_lib.tts_rejection_reason(row["raw_text"]) is None
    words = len(row["text"].split())
    assert 4 <= words <= 20
    assert 0.15 < row["duration"] / words < 1.2  # seconds per word of real speech
  # The wav is exactly what the engine makes for that raw text with the recorded settings and
  # augmentation (babble needs the corpus's bank, so those rows are left out).
  remade_rows = [r for r in rows if r["augment"].get("noise", {}).get("type") != "babble"]
  for engine in ("espeak-ng", "festival"):
    row = next(r for r in remade_rows if r["engine"] == engine)
    v = voice(row["speaker"])
    rng = np.random.default_rng([SEED, int(row["id"][3:]), 2])
    remade = synth_corpus.synthesise_utterance(
        v, row["raw_text"], row["pitch"], row["rate"], row["sox_pitch_cents"],
        pitch_range=row["pitch_range"], augment=row["augment"], dither=True, rng=rng)
    stored, _ = sf.read(os.path.join(out, row["path"]), dtype="int16")
    np.testing.assert_array_equal(remade, stored)


def test_dither_leaves_no_digital_silence(corpus):
  out, _, rows = corpus
  for row in rows:
    pcm, _ = sf.read(os.path.join(out, row["path"]), dtype="int16")
    zero = np.concatenate([[0], (pcm == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    longest = int(np.max(edges[1::2] - edges[::2], initial=0))
    assert longest < synth_corpus.DITHER_MIN_RUN


# ------------------------------------------------------------------------------------ splits


def test_splits_hold_out_whole_voices_and_sentences(corpus):
  _, summary, rows = corpus
  speakers = collections.defaultdict(set)
  texts = collections.defaultdict(set)
  for row in rows:
    speakers[row["split"]].add(row["speaker"])
    texts[row["split"]].add(row["text"])
    assert voice(row["speaker"]).split == row["split"]
  assert set(speakers) == {"train", "validation", "test"}
  for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
    assert not speakers[a] & speakers[b]
    assert not texts[a] & texts[b]
  assert summary["splits"] == {s: len([r for r in rows if r["split"] == s]) for s in speakers}


def test_plan_for_default_size_is_balanced_and_in_range():
  from echo_jax.data import fortunes  # pylint: disable=import-outside-toplevel
  sentences, _ = fortunes.load_sentences()
  plan, empty = synth_corpus.plan_corpus(1200, 0, tts_engines.default_voices(), sentences)
  assert empty == []
  counts = collections.Counter(u.split for u in plan)
  assert counts == {"train": 960, "validation": 120, "test": 120}
  for split in counts:
    held = {u.voice.speaker for u in plan if u.split == split}
    assert held <= {v.speaker for v in tts_engines.default_voices() if v.split == split}
  train_engines = collections.Counter(u.voice.engine for u in plan if u.split == "train")
  assert train_engines == {"espeak-ng": 480, "flite": 288, "festival": 192}
  low, high = tts_engines.TARGET_F0_RANGE
  assert all(low * 0.99 <= u.expected_f0_hz <= high * 1.01 for u in plan)
  assert len({u.voice.speaker for u in plan if u.split == "train"}) == 92  # every train voice
  again, _ = synth_corpus.plan_corpus(1200, 0, tts_engines.default_voices(), sentences)
  other, _ = synth_corpus.plan_corpus(1200, 1, tts_engines.default_voices(), sentences)
  assert again == plan and other != plan


# ----------------------------------------------------------------- determinism and resumption


def test_same_seed_same_corpus_and_rerun_is_a_no_op(corpus, tmp_path):
  out, summary, rows = corpus
  digests = file_digests(out)
  # Another directory, one worker instead of two: identical manifest and audio.
  other = str(tmp_path / "again")
  synth_corpus.build_corpus(other, NUM, seed=SEED, workers=1, progress=False)
  assert synth_corpus.read_manifest(other) == rows
  assert file_digests(other) == digests
  # Re-running into a complete corpus returns the stored summary and rewrites nothing.
  mtimes = {n: os.stat(os.path.join(out, "wavs", n)).st_mtime_ns for n in digests}
  assert synth_corpus.build_corpus(out, NUM, seed=SEED, workers=2, progress=False) == summary
  assert {n: os.stat(os.path.join(out, "wavs", n)).st_mtime_ns for n in digests} == mtimes


def test_interrupted_build_resumes_to_the_same_corpus(corpus, tmp_path):
  out, _, rows = corpus
  partial = str(tmp_path / "partial")
  shutil.copytree(out, partial)
  # An interrupted run: no manifest/summary yet, some wavs missing, a half-written temp file.
  os.remove(os.path.join(partial, "manifest.jsonl"))
  os.remove(os.path.join(partial, "summary.json"))
  for row in rows[::4]:
    os.remove(os.path.join(partial, row["path"]))
  with open(os.path.join(partial, "wavs", "utt000001.wav.tmp999"), "wb") as f:
    f.write(b"RIFF")
  synth_corpus.build_corpus(partial, NUM, seed=SEED, workers=2, progress=False)
  assert synth_corpus.read_manifest(partial) == rows
  assert file_digests(partial) == file_digests(out)


def test_changed_parameters_restart_cleanly(tmp_path, tiny_voices, tiny_sentences):
  out = str(tmp_path / "c")
  kwargs = dict(voices=tiny_voices, sentences=tiny_sentences, workers=2, progress=False)
  synth_corpus.build_corpus(out, 5, seed=1, **kwargs)
  synth_corpus.build_corpus(out, 3, seed=2, **kwargs)
  fresh = str(tmp_path / "fresh")
  synth_corpus.build_corpus(fresh, 3, seed=2, **kwargs)
  assert synth_corpus.read_manifest(out) == synth_corpus.read_manifest(fresh)
  assert file_digests(out) == file_digests(fresh)  # no wav of the old run is left


# ------------------------------------------------------------------------------------ failures


def test_unavailable_voice_is_skipped_and_counted(tmp_path, tiny_voices, tiny_sentences):
  bogus = Voice("espeak-ng", "en-zz-nowhere+m1", "train", 100.0, (10, 90), "espeak_p",
                (130, 210), "wpm")
  voices = [tiny_voices[0], bogus] + tiny_voices[2:]
  out = str(tmp_path / "c")
  summary = synth_corpus.build_corpus(out, 8, seed=0, voices=voices, sentences=tiny_sentences,
                                      workers=2, progress=False)
  rows = synth_corpus.read_manifest(out)
  plan, _ = synth_corpus.plan_corpus(8, 0, voices, tiny_sentences)
  planned_bogus = sum(u.voice == bogus for u in plan)
  assert planned_bogus > 0
  assert summary["skipped"] == {"voice_unavailable": planned_bogus}
  assert summary["written"] == len(rows) == 8 - planned_bogus
  assert "en-zz-nowhere" in summary["unavailable_voices"][bogus.speaker]
  assert bogus.speaker not in {r["speaker"] for r in rows}


def test_too_long_utterances_are_skipped_not_fatal(tmp_path, tiny_voices, tiny_sentences):
  summary = synth_corpus.build_corpus(str(tmp_path / "c"), 3, voices=tiny_voices,
                                      sentences=tiny_sentences, max_seconds=0.5, progress=False)
  assert summary["written"] == 0 and summary["skipped"] == {"too_long": 3}
  assert synth_corpus.read_manifest(str(tmp_path / "c")) == []
  assert os.listdir(tmp_path / "c" / "wavs") == []


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="mbrola"):
    synth_corpus.build_corpus("/tmp/unused", 3, engines=("mbrola",))
  with pytest.raises(ValueError, match="num_utterances"):
    synth_corpus.build_corpus("/tmp/unused", 0)


def test_split_without_voices_goes_to_train(tiny_voices, tiny_sentences):
  plan, empty = synth_corpus.plan_corpus(10, 0, tiny_voices[:2], tiny_sentences)
  assert empty == ["validation", "test"] and {u.split for u in plan} == {"train"}


# -------------------------------------------------------------------------------- augmentation


def test_babble_bank_mixes_several_talkers(tiny_voices, tiny_sentences):
  bank = synth_corpus.make_babble(tiny_voices[:3], tiny_sentences[:8], seed=0)
  assert bank.ndim == 1 and bank.size > 16000 and np.mean(bank**2) == pytest.approx(1.0)
  np.testing.assert_array_equal(bank, synth_corpus.make_babble(tiny_voices[:3],
                                                               tiny_sentences[:8], seed=0))
  assert synth_corpus.make_babble([], tiny_sentences, seed=0) is None


def test_dither_replaces_only_long_zero_runs():
  pcm = np.array([5, 0, 0, -3] + [0] * 20 + [7, 0], dtype=np.int16)
  out = synth_corpus.dither_digital_silence(pcm, np.random.default_rng(0), min_run=16)
  np.testing.assert_array_equal(out[:4], pcm[:4])
  np.testing.assert_array_equal(out[24:], pcm[24:])
  assert set(np.unique(out[4:24])) <= {-1, 1}


def test_cli_builds_and_prints_summary(tmp_path, capsys):
  out = str(tmp_path / "cli")
  assert synth_corpus.main(["--out", out, "--num_utterances", "3", "--seed", "4",
                            "--engines", "espeak-ng", "--no_sox_pitch", "--noise_snr_db", "20",
                            "--no_augment", "--workers", "2"]) == 0
  printed = capsys.readouterr().out
  assert "written 3 of 3 utterances" in printed
  rows = synth_corpus.read_manifest(out)
  assert {r["engine"] for r in rows} == {"espeak-ng"}
  assert all(r["sox_pitch_cents"] == 0 for r in rows)
  assert all(r["augment"] == {"noise": {"type": "white", "snr_db": 20.0}} for r in rows)
  assert all(r["pitch_range"] is None for r in rows)
  with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
    assert json.load(f)["params"]["noise_snr_db"] == 20.0


def test_build_from_config_maps_the_data_fields(tmp_path):
  from echo_jax.config import defaults as config_defaults  # pylint: disable=import-outside-toplevel
  data = config_defaults.default_data_config()
  data.root = str(tmp_path)
  data.synth_num_utterances = 3
  data.synth_engines = ("espeak-ng",)
  data.synth_noise_snr_db = -1.0  # < 0: no noise
  data.synth_sox_pitch = False
  summary = synth_corpus.build_from_config(data, progress=False)
  assert summary["written"] == 3 and summary["params"]["noise_snr_db"] is None
  assert summary["params"]["engines"] == ["espeak-ng"] and not summary["params"]["sox_pitch"]
  rows = synth_corpus.read_manifest(str(tmp_path / "echo_speech_corpus"))
  assert len(rows) == 3 and all(r["engine"] == "espeak-ng" for r in rows)

