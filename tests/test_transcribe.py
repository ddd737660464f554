"""Transcription: chunk boundaries on arrays, the stitching rule on words, and the file pipeline."""

import ml_collections
import numpy as np
import pytest

from echo_jax.errors import UserError
from echo_jax.inference import audio_input
from echo_jax.inference import longform
from random_runs import save_random_run, tiny_config

WORDS = ("the quick brown fox jumps over the lazy dog while seven wizards quietly judge "
         "boxing matches in the old town hall and nobody notices the rain").split()


@pytest.mark.parametrize("num_samples,chunk,overlap", [
    (1, 30, 10), (30, 30, 10), (31, 30, 10), (100, 30, 10), (95, 30, 10), (1000, 64, 0),
    (12345, 1000, 250), (16000 * 40, 16000 * 8, 16000 * 2)])
def test_chunk_bounds_cover_everything_with_at_least_the_overlap(num_samples, chunk, overlap):
  bounds = longform.chunk_bounds(num_samples, chunk, overlap)
  assert bounds[0][0] == 0 and bounds[-1][1] == num_samples
  for start, end in bounds:
    assert 0 <= start < end <= num_samples
    assert end - start == min(chunk, num_samples)  # every chunk full length (no tiny tail)
  for (start_a, end_a), (start_b, end_b) in zip(bounds[:-1], bounds[1:]):
    assert start_a < start_b
    assert end_a - start_b >= overlap  # consecutive chunks overlap by at least `overlap`
  # Minimal count: one more chunk would not be needed.
  stride = chunk - overlap
  expected = 1 if num_samples <= chunk else 1 + int(np.ceil((num_samples - chunk) / stride))
  assert len(bounds) == expected


def test_split_chunks_are_slices_of_the_concatenated_input():
  rng = np.random.default_rng(0)
  # A synthetic long input built by concatenating "utterances" (noise bursts of different lengths).
  parts = [rng.normal(size=n).astype(np.float32) for n in (7000, 12000, 5000, 9000)]
  wave = np.concatenate(parts)
  bounds = longform.chunk_bounds(len(wave), 8000, 2000)
  chunks = longform.split_chunks(wave, 8000, 2000)
  assert len(chunks) == len(bounds)
  for (start, end), chunk in zip(bounds, chunks):
    np.testing.assert_array_equal(chunk, wave[start:end])
  covered = np.zeros(len(wave), bool)
  for start, end in bounds:
    covered[start:end] = True
  assert covered.all()


def test_bad_chunk_settings_name_the_fix():
  with pytest.raises(ValueError, match="chunk_overlap_seconds"):
    longform.chunk_bounds(100, 30, 30)
  with pytest.raises(ValueError, match="chunk_samples"):
    longform.chunk_bounds(100, 0, 0)


def _windows(words, size, step):
  """Word windows of `size` starting every `step` (the last one ends at the end)."""
  out, start = [], 0
  while True:
    end = min(start + size, len(words))
    out.append((start, end))
    if end == len(words):
      return out
    start += step


@pytest.mark.parametrize("size,step", [(6, 4), (8, 5), (10, 7), (5, 3), (12, 9)])
def test_stitch_recovers_the_text_without_duplicated_overlap_words(size, step):
  windows = _windows(WORDS, size, step)
  chunks = [WORDS[start:end] for start, end in windows]
  stitched = longform.stitch(chunks, max_overlaps=size)
  assert stitched == WORDS


@pytest.mark.parametrize("seed", range(6))
def test_stitch_handles_words_cut_at_chunk_edges(seed):
  # A chunk edge inside a word gives a fragment at the end of the left chunk and at the start of
  # the right one; the stitched text keeps the whole words from the overlap's middle.
  rng = np.random.default_rng(seed)
  size, step = 9, 6
  chunks = []
  for start, end in _windows(WORDS, size, step):
    words = list(WORDS[start:end])
    if end < len(WORDS) and rng.random() < 0.7:  # cut the word after the chunk's end in half
      words.append(WORDS[end][: max(1, len(WORDS[end]) // 2)] + "-")
    if start > 0 and rng.random() < 0.7:  # the right chunk begins inside the previous word
      words.insert(0, "-" + WORDS[start - 1][len(WORDS[start - 1]) // 2:])
    chunks.append(words)
  assert longform.stitch(chunks, max_overlaps=size + 2) == WORDS


def test_stitch_with_recognition_errors_in_the_overlap_keeps_one_copy():
  left = "we walked to the old town hall".split()
  right = "the olt town hall was closed".split()  # one word misrecognised in the overlap
  assert longform.stitch_pair(left, right, 6) == "we walked to the old town hall was closed".split()


def test_stitch_without_a_credible_alignment_joins_as_is():
  left = "alpha beta gamma".split()
  right = "delta epsilon zeta".split()
  assert longform.stitch_pair(left, right, 4) == left + right
  # A single repeated common word far apart is not an alignment.
  left = "the cat sat on a mat".split()
  right = "over the hills and far away".split()
  assert longform.stitch_pair(left, right, 6) == left + right


def test_stitch_texts_uses_the_real_overlap_of_each_pair():
  sample_rate = 100
  bounds = longform.chunk_bounds(1000, 400, 100)  # the last chunk overlaps more than 1 s
  overlaps = longform.pair_overlap_words(bounds, sample_rate)
  assert len(overlaps) == len(bounds) - 1
  real = [prev_end - start for (_, prev_end), (start, _) in zip(bounds[:-1], bounds[1:])]
  assert overlaps == [longform.max_overlap_words(r / sample_rate) for r in real]
  assert longform.max_overlap_words(2.0) == 16
  text = "one two three four five six seven eight nine ten"
  words = text.split()
  parts = [" ".join(words[0:4]), " ".join(words[3:7]), " ".join(words[5:10])]
  assert longform.stitch_texts(parts, [(0, 400), (300, 700), (600, 1000)], sample_rate) == text


def _recognise_chunks(seed: int, error_rate: float):
  """Words of 0.25-0.7 s with pauses, laid end to end into a 40-75 s "recording", cut into 8 s
  chunks overlapping by 2 s; each chunk's transcript is what a recogniser would say for its
  samples: whole words (each wrong with probability error_rate), plus the recognisable part (> 60 %
  inside) of a word cut by the chunk edge, while smaller pieces come out garbled or not at all.
  Returns (true words, chunk texts, chunk bounds, sample rate)."""
  rng = np.random.default_rng(seed)
  sample_rate = 16000
  vocabulary = WORDS + "crisp lemon river silver candle meadow orbit".split()
  words, spans, t = [], [], 0.0
  duration = rng.uniform(40.0, 75.0)
  while t < duration:
    t += rng.uniform(0.0, 0.3)  # pause
    length = rng.uniform(0.25, 0.7)
    words.append(str(rng.choice(vocabulary)))
    spans.append((t, t + length))
    t += length
  bounds = longform.chunk_bounds(int(t * sample_rate) + 1, 8 * sample_rate, 2 * sample_rate)
  texts = []
  for start, end in bounds:
    start_s, end_s = start / sample_rate, end / sample_rate
    heard = []
    for word, (w_start, w_end) in zip(words, spans):
      inside = max(0.0, min(end_s, w_end) - max(start_s, w_start)) / (w_end - w_start)
      if inside > 0.6:
        heard.append(word if rng.random() >= error_rate else "zzz")
      elif inside > 0.0 and rng.random() < 0.5:
        heard.append(word[:2] + "x")  # garbled fragment at a chunk edge
    texts.append(" ".join(heard))
  return words, texts, bounds, sample_rate


@pytest.mark.parametrize("seed", range(5))
def test_long_input_of_concatenated_utterances_stitches_to_every_word_once(seed):
  words, texts, bounds, sample_rate = _recognise_chunks(seed, error_rate=0.0)
  assert len(bounds) >= 5
  assert longform.stitch_texts(texts, bounds, sample_rate).split() == words


def test_stitching_with_recognition_errors_rarely_duplicates_or_drops_words():
  # 5 % of the words misrecognised, independently in each chunk (so overlaps disagree): the
  # stitched text may carry the errors but should almost never repeat or lose a word.
  import jiwer
  edits = pairs = 0
  for seed in range(20):
    words, texts, bounds, sample_rate = _recognise_chunks(seed, error_rate=0.05)
    out = jiwer.process_words(" ".join(words), longform.stitch_texts(texts, bounds, sample_rate))
    edits += out.insertions + out.deletions
    pairs += len(bounds) - 1
  assert edits <= 0.05 * pairs, (edits, pairs)


def test_without_an_alignment_the_expected_overlap_is_cut_in_its_middle():
  left = "one two three four xx".split()
  right = "yy five six seven".split()  # the overlap "four xx" / "yy five" has no equal word
  assert longform.stitch_pair(left, right, 4, expected_overlap=2) == \
      "one two three four five six seven".split()
  assert longform.stitch_pair(left, right, 4) == left + right  # unknown overlap: joined as is


# ----------------------------------------------------------------------------------------------
# The file pipeline with a tiny randomly initialised run saved like a training run.

SAMPLE_RATE = 16000




def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
  """A speech-like test signal: harmonics of a gliding F0 under a syllable envelope, plus noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
  pitch = f0 * (1.0 + 0.1 * np.sin(2 * np.pi * 1.5 * t))
  phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
  wave = sum(np.sin(k * phase) / k for k in range(1, 8))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
  return (0.2 * wave * envelope + 0.005 * rng.normal(size=t.size)).astype(np.float32)


def build_tiny_run(workdir, step: int = 5):
  """A workdir as the trainer leaves it (resolved config, tokenizer copy, one checkpoint) holding
  a random tiny model; returns (config, tokenizer, model, params)."""
  import shutil

  from echo_jax.data.tokenizer import Tokenizer

  workdir = str(workdir)
  tokenizer = Tokenizer.train(["the cat sat on the mat", "hello world"],
                              f"{workdir}/tok/chars", kind="char")
  shutil.copy(tokenizer.path, f"{workdir}/tokenizer.json")
  config = tiny_config()
  config.model.vocab_size = tokenizer.vocab_size
  config.data.bucket_frames = (128,)
  config.data.bucket_batch_sizes = (4,)
  config.data.eval_batch_size = 4
  config.decode.max_length = 8
  config.decode.chunk_seconds = 1.0
  config.decode.chunk_overlap_seconds = 0.25
  model, params = save_random_run(config, workdir, step)
  return config, tokenizer, model, params


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config, tokenizer, model, params = build_tiny_run(workdir)
  return workdir, config, tokenizer, model, params


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory):
  import soundfile as sf
  folder = tmp_path_factory.mktemp("audio")
  a = voice(0.6, 140.0, 0)
  b = voice(0.8, 210.0, 1)
  files = {}
  files["a"] = str(folder / "a.wav")
  sf.write(files["a"], a, SAMPLE_RATE)
  files["b_stereo_44k"] = str(folder / "b.flac")  # b resampled to 44.1 kHz, two equal channels
  import soxr
  b44 = soxr.resample(b, SAMPLE_RATE, 44100, quality="VHQ")
  sf.write(files["b_stereo_44k"], np.stack([b44, b44], axis=1), 44100)
  files["b"] = str(folder / "b_mono.wav")
  sf.write(files["b"], b, SAMPLE_RATE, subtype="FLOAT")  # exact samples
  files["c"] = str(folder / "sub" / "c.ogg")
  (folder / "sub").mkdir()
  sf.write(files["c"], voice(0.5, 120.0, 2), SAMPLE_RATE, format="OGG", subtype="VORBIS")
  files["d"] = str(folder / "sub" / "d.mp3")
  sf.write(files["d"], voice(0.7, 180.0, 3), SAMPLE_RATE, format="MP3")
  # A long input built by concatenating utterances: 2.9 s, four 1 s chunks.
  files["long"] = str(folder / "long.wav")
  long_wave = np.concatenate([a, b, voice(0.9, 160.0, 4), a])
  sf.write(files["long"], long_wave, SAMPLE_RATE, subtype="FLOAT")
  files["empty"] = str(folder / "empty.wav")
  sf.write(files["empty"], np.zeros(0, np.float32), SAMPLE_RATE)
  files["silent"] = str(folder / "silent.wav")
  sf.write(files["silent"], np.zeros(8000, np.float32), SAMPLE_RATE)
  files["garbage"] = str(folder / "garbage.wav")
  with open(files["garbage"], "wb") as handle:
    handle.write(b"this is not audio at all" * 10)
  files["missing"] = str(folder / "missing.wav")
  return folder, files, {"a": a, "b": b, "long": long_wave}


@pytest.fixture(scope="session")
def transcriber(tiny_run):
  from echo_jax import transcribe
  _, config, tokenizer, model, params = tiny_run
  return transcribe.BatchTranscriber(config, model, {"params": params}, tokenizer, beam_size=1,
                                     batch_size=4)


def test_load_run_restores_what_was_saved(tiny_run):
  import jax
  from echo_jax.inference import loading
  workdir, config, tokenizer, _, params = tiny_run
  run = loading.load_run(str(workdir))
  assert run.step == 5
  assert run.tokenizer.vocab_size == tokenizer.vocab_size
  assert tuple(run.config.data.bucket_frames) == (128,)
  assert run.config.decode.chunk_seconds == 1.0
  for saved, loaded in zip(jax.tree_util.tree_leaves(params),
                           jax.tree_util.tree_leaves(run.variables["params"])):
    np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))
  with pytest.raises(ValueError, match="step 7"):
    loading.load_run(str(workdir), 7)
  with pytest.raises(FileNotFoundError, match="config"):
    loading.load_run(str(workdir / "tok"))


def test_prepare_file_downmixes_resamples_and_computes_training_features(tiny_run, audio_files):
  from echo_jax.data.features import compute_features
  _, config, *_ = tiny_run
  _, files, waves = audio_files
  mono = audio_input.prepare_file(files["b"], config)
  stereo = audio_input.prepare_file(files["b_stereo_44k"], config)
  assert mono.result.error is None and stereo.result.error is None
  expected = compute_features(waves["b"], config.data)
  np.testing.assert_allclose(mono.items[0]["mel"], expected["mel"], atol=1e-6)
  np.testing.assert_allclose(mono.items[0]["f0"], expected["f0"], atol=1e-6)
  # 44.1 kHz stereo of the same signal: same frame count, nearly the same log-mel and F0.
  assert stereo.items[0]["mel"].shape == mono.items[0]["mel"].shape
  assert np.mean(np.abs(stereo.items[0]["mel"] - mono.items[0]["mel"])) < 0.02
  both = (stereo.items[0]["f0"] > 0) & (mono.items[0]["f0"] > 0)
  assert both.mean() > 0.5
  np.testing.assert_allclose(stereo.items[0]["f0"][both], mono.items[0]["f0"][both], rtol=0.02)
  # Long audio: chunks are the features of the overlapping slices (1 s chunks, 0.25 s overlap).
  long = audio_input.prepare_file(files["long"], config)
  assert long.bounds == longform.chunk_bounds(len(waves["long"]), 16000, 4000)
  assert long.result.num_chunks == len(long.bounds) == 4  # 2.9 s: starts 0, .75, 1.5, 1.9 s
  for (start, end), item in zip(long.bounds, long.items):
    np.testing.assert_allclose(item["mel"],
                               compute_features(waves["long"][start:end], config.data)["mel"],
                               atol=1e-6)


def test_prepare_file_cuts_edge_silence_as_configured(tiny_run, audio_files, tmp_path):
  """A second of near silence around an utterance is cut to 0.1 s (decode.trim_silence_db), the
  reported duration stays the file's, and 0 keeps every sample; so does a run saved before
  the field existed, at the default of 40 dB."""
  import soundfile as sf
  from echo_jax import transcribe
  from echo_jax.data.features import compute_features
  _, config, *_ = tiny_run
  _, _, waves = audio_files
  quiet = lambda seed: (1e-4 * np.random.default_rng(seed).standard_normal(SAMPLE_RATE)
                        ).astype(np.float32)
  padded = np.concatenate([quiet(0), waves["b"], quiet(1)])
  path = str(tmp_path / "padded.wav")
  sf.write(path, padded, SAMPLE_RATE, subtype="FLOAT")
  trimmed = audio_input.prepare_file(path, transcribe.apply_trim_silence(config, 40.0))
  kept = audio_input.prepare_file(path, transcribe.apply_trim_silence(config, 0.0))
  assert trimmed.result.duration_s == kept.result.duration_s == len(padded) / SAMPLE_RATE
  # Chunk bounds index the audio the features were computed from (1 s chunks in this config).
  assert kept.bounds[-1][1] == len(padded)
  start, end = kept.bounds[0]
  np.testing.assert_allclose(kept.items[0]["mel"],
                             compute_features(padded[start:end], config.data)["mel"], atol=1e-6)
  assert abs(trimmed.bounds[-1][1] - (len(waves["b"]) + 0.2 * SAMPLE_RATE)) <= 1024
  old_run = ml_collections.ConfigDict(config.to_dict())
  del old_run.decode["trim_silence_db"]
  assert audio_input.prepare_file(path, old_run).bounds == trimmed.bounds
  with pytest.raises(UserError, match="--trim_silence_db=-1"):
    transcribe.apply_trim_silence(config, -1.0)


def test_transcribe_reports_bad_files_and_completes_the_others(tiny_run, audio_files, transcriber):
  from echo_jax import transcribe
  _, config, *_ = tiny_run
  folder, files, _ = audio_files
  order = ["a", "empty", "b_stereo_44k", "silent", "garbage", "c", "missing", "d", "long"]
  prepared = [audio_input.prepare_file(files[name], config) for name in order]
  results = transcribe.transcribe_prepared(prepared, transcriber, SAMPLE_RATE)
  by_name = dict(zip(order, results))
  assert by_name["empty"].error == "empty"
  assert by_name["silent"].error == "silent"
  assert by_name["garbage"].error == "unreadable"
  assert by_name["missing"].error == "unreadable" and "not found" in by_name["missing"].detail
  for name in ("a", "b_stereo_44k", "c", "d", "long"):
    assert by_name[name].error is None and isinstance(by_name[name].text, str), name
    assert set(by_name[name].text) <= set("abcdefghijklmnopqrstuvwxyz' ") | set(
        "".join(["the cat sat on the mat", "hello world"]))
  assert by_name["long"].num_chunks == 4 and by_name["a"].num_chunks == 1
  # Batching must not change any transcript: each file alone gives the same text.
  for name in ("a", "c", "long"):
    alone = transcribe.transcribe_prepared([audio_input.prepare_file(files[name], config)],
                                           transcriber, SAMPLE_RATE)[0]
    assert alone.text == by_name[name].text
  # The long file's text is the stitched transcripts of its chunks.
  long = audio_input.prepare_file(files["long"], config)
  chunk_texts = transcriber(long.items)
  assert by_name["long"].text == longform.stitch_texts(chunk_texts, long.bounds, SAMPLE_RATE)
  # Every batch had one shape (one bucket, padded to the batch size): compiled once.
  assert transcriber.decoder.traces() == 1
  assert transcribe.expand_inputs([str(folder / "sub")]) == [files["c"], files["d"]]


def test_transcribe_cli_plain_and_json(tiny_run, audio_files, capsys):
  import json
  from echo_jax import transcribe
  workdir = str(tiny_run[0])
  folder, files, _ = audio_files
  code = transcribe.main(["--workdir", workdir, "--json", files["a"], files["silent"],
                          str(folder / "sub"), files["missing"]])
  out, err = capsys.readouterr()
  assert code == 1
  rows = [json.loads(line) for line in out.strip().splitlines()]
  assert [r["path"] for r in rows] == [files["a"], files["silent"], files["c"], files["d"],
                                       files["missing"]]
  assert rows[1]["error"] == "silent" and rows[4]["error"] == "unreadable"
  assert all(isinstance(r["text"], str) and r["chunks"] == 1 for r in (rows[0], rows[2], rows[3]))
  # No LM in this run: the attention decoder's transcript, and the rows say so.
  assert [r.get("hypothesis") for r in rows] == ["attention", None, "attention", "attention", None]
  assert f"{files['silent']}: silent" in err and f"{files['missing']}: unreadable" in err
  assert "2 of 5 files failed" in err
  code = transcribe.main(["--workdir", workdir, "--checkpoint", "5", files["a"], files["d"]])
  out, err = capsys.readouterr()
  assert code == 0
  lines = out.rstrip("\n").split("\n")
  assert [line.split("\t")[0] for line in lines] == [files["a"], files["d"]]
  assert lines[0].split("\t", 1)[1] == rows[0]["text"]


def test_ctc_hypotheses_and_lm_on_a_run_without_ctc_head_name_the_fix(tiny_run, audio_files,
                                                                     tmp_path):
  """--hypothesis ctc/ctc_lm and --lm read the CTC head: on a run without one, transcribe and
  evaluate stop with the fix instead of silently printing the attention transcript."""
  from echo_jax import evaluate
  from echo_jax import transcribe
  from echo_jax.errors import UserError
  workdir = str(tiny_run[0])
  _, files, _ = audio_files
  assert not tiny_run[1].model.get("ctc_head", False)
  lm = tmp_path / "words.arpa"
  lm.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1 <s>\n-0.5 </s>\n-0.5 cat\n\n\\end\\\n")
  for hypothesis in ("ctc", "ctc_lm"):
    with pytest.raises(UserError, match="--hypothesis attention"):
      transcribe.main(["--workdir", workdir, "--hypothesis", hypothesis, files["a"]])
  with pytest.raises(UserError, match="--lm none"):  # an LM makes ctc_lm the default
    transcribe.main(["--workdir", workdir, "--lm", str(lm), files["a"]])
  manifest = tmp_path / "m.tsv"
  manifest.write_text(f"{files['a']}\tthe cat\n")
  with pytest.raises(UserError, match="--lm none"):
    evaluate.main(["--workdir", workdir, "--manifest", str(manifest), "--lm", str(lm)])
