"""Offline multi-speaker synthetic speech corpus: TTS voices x sentences -> wav + manifest.

    python -m echo_jax.data.synth_corpus --out data/echo_speech_corpus --num_utterances 1200

Writes `<out>/wavs/<id>.wav` (16 kHz mono PCM16), `<out>/manifest.jsonl` and `<out>/summary.json`.
Sentences come from fortunes and WordNet usage examples (`corpus_text`). The whole plan (split,
voice, sentence, pitch, pitch range, rate, sox shift and acoustic augmentation of every utterance)
is drawn from the seed before any audio is made, so a seed gives the same corpus whatever the
worker count. Whole voices are held out for the validation and test splits (see `tts_engines`),
and sentences too: a sentence's split is fixed by a hash of its transcript. A failing
voice/sentence is skipped with its reason counted in `summary["skipped"]`; nothing aborts the build.
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import soundfile as sf

from echo_jax.data import augment as augment_lib
from echo_jax.data import corpus_text
from echo_jax.data import text as text_lib
from echo_jax.data import tts_engines
from echo_jax.data.tts_engines import SPLITS, SynthesisError, Voice
from echo_jax.errors import MissingInputError, UserError, run_cli

SAMPLE_RATE = 16000
FORMAT_VERSION = 2  # 2: text sources, pitch range, acoustic augmentation
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
ENGINE_WEIGHTS = {"espeak-ng": 0.5, "flite": 0.3, "festival": 0.2}
SOX_PITCH_PROBABILITY = 0.5  # voices without native pitch control are always shifted
SOX_PITCH_MAX_CENTS = 300
PITCH_RANGE = (0.5, 1.5)  # intonation swing relative to the engine's default
BABBLE_TALKERS = 6
BABBLE_SENTENCES_PER_TALKER = 4
MIN_SECONDS = 0.3
SILENCE_PEAK = 1e-3  # a peak below -60 dBFS counts as silent output
DITHER_MIN_RUN = 16  # exact-zero runs at least this long (1 ms) get +-1 LSB noise
MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"
STATE = ".build_state.json"
WAV_DIR = "wavs"


@dataclasses.dataclass(frozen=True)
class PlannedUtterance:
  index: int
  id: str
  split: str
  voice: Voice
  raw_text: str
  text: str
  pitch: float | None
  rate: float
  sox_pitch_cents: int
  text_source: str = corpus_text.CUSTOM_SOURCE
  pitch_range: float | None = None
  augment: dict = dataclasses.field(default_factory=dict)

  @property
  def path(self) -> str:
    return f"{WAV_DIR}/{self.id}.wav"

  @property
  def expected_f0_hz(self) -> float:
    """The settings' median F0, speed perturbation included (it scales every frequency)."""
    return (self.voice.expected_f0(self.pitch, self.sox_pitch_cents, self.pitch_range)
            * augment_lib.speed_factor(self.augment))


# ---------------------------------------------------------------------------------------------
# Planning


def sentence_split(text: str) -> str:
  """A sentence's split, fixed by its transcript (independent of seed and corpus size)."""
  bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100
  if bucket < 80:
    return "train"
  return "validation" if bucket < 90 else "test"


def _apportion(total: int, weights: dict[str, float]) -> dict[str, int]:
  """Integer counts summing to `total`, proportional to `weights` (largest remainder)."""
  norm = sum(weights.values())
  exact = {k: total * w / norm for k, w in weights.items()}
  counts = {k: int(v) for k, v in exact.items()}
  for k in sorted(exact, key=lambda k: (counts[k] - exact[k], list(weights).index(k)))[
      :total - sum(counts.values())]:
    counts[k] += 1
  return counts


def plan_corpus(num_utterances: int, seed: int, voices: Sequence[Voice],
                sentences: Sequence[str | corpus_text.Sentence], sox_pitch: bool = True,
                augment: bool = True, noise_snr_db: float | None = None
                ) -> tuple[list[PlannedUtterance], list[str]]:
  """Every utterance's split, voice, sentence, settings and augmentation, drawn from `seed`.

  Returns the plan and the splits that had no voice (their share goes to train). Sentences of a
  split come from that split's hash bucket, in a shuffled order that uses every sentence once
  before any is used again; only a list too small to fill a bucket (tests) falls back to all
  sentences. Plain strings count as source `custom`. `augment` draws an acoustic augmentation per
  utterance (its own generator per utterance: the dicts do not depend on the corpus size);
  `noise_snr_db` adds white noise at that SNR to every utterance.
  """
  rng = np.random.default_rng(seed)
  sentences = corpus_text.as_sentences(sentences)
  voices_by_split = {s: [v for v in voices if v.split == s] for s in SPLITS}
  empty_splits = [s for s in SPLITS if not voices_by_split[s]]
  if not voices_by_split["train"]:
    raise UserError("no training voice among the selected engines; check --engines")
  fractions = {s: (0.0 if s in empty_splits else f) for s, f in SPLIT_FRACTIONS.items()}
  split_counts = _apportion(num_utterances, fractions)
  if num_utterances >= 3:  # every non-empty split gets at least one utterance
    for s in SPLITS:
      if s not in empty_splits and split_counts[s] == 0:
        split_counts[s], split_counts["train"] = 1, split_counts["train"] - 1
  labels = [s for s in SPLITS for _ in range(split_counts[s])]
  labels = [labels[i] for i in rng.permutation(len(labels))]

  sentences_by_split = {s: [] for s in SPLITS}
  for sentence in sentences:
    sentences_by_split[sentence_split(text_lib.normalise_transcript(sentence.raw))].append(sentence)
  # Each split gets an engine sequence (apportioned, shuffled), a cycling voice order per engine
  # and a cycling sentence order, so even a tiny corpus covers every engine and spreads voices.
  engine_seq, voice_cycle, sentence_cycle = {}, {}, {}
  for s in SPLITS:
    engines = {v.engine for v in voices_by_split[s]}
    weights = {e: ENGINE_WEIGHTS.get(e, 0.1) for e in sorted(engines)}
    counts = _apportion(split_counts[s], weights)
    seq = [e for e in weights for _ in range(counts[e])]
    engine_seq[s] = [seq[i] for i in rng.permutation(len(seq))]
    for e in weights:
      pool = [v for v in voices_by_split[s] if v.engine == e]
      voice_cycle[s, e] = [pool[i] for i in rng.permutation(len(pool))]
    pool = sentences_by_split[s] or list(sentences)
    sentence_cycle[s] = [pool[i] for i in rng.permutation(len(pool))]

  taken = collections.Counter()
  plan = []
  for index, split in enumerate(labels):
    engine = engine_seq[split][taken[split]]
    voice_pool = voice_cycle[split, engine]
    voice = voice_pool[taken[split, engine] % len(voice_pool)]
    sentence = sentence_cycle[split][taken[split] % len(sentence_cycle[split])]
    taken[split] += 1
    taken[split, engine] += 1
    effects = augment_lib.draw(np.random.default_rng([seed, index, 1])) if augment else {}
    if noise_snr_db is not None:
      effects["noise"] = {"type": "white", "snr_db": float(noise_snr_db)}
    effects = augment_lib.ordered(effects)
    pitch_range = (round(float(rng.uniform(*PITCH_RANGE)), 2)
                   if augment and voice.has_pitch_range else None)
    # Pitch range and speed move F0 too: the bounds keep the final F0 inside the target range.
    f0_scale = voice.range_f0_factor(pitch_range) * augment_lib.speed_factor(effects)
    bounds = voice.pitch_bounds(f0_scale)
    pitch = None if bounds is None else int(rng.integers(bounds[0], bounds[1] + 1))
    low, high = voice.rate_range
    rate = (int(rng.integers(low, high + 1)) if voice.rate_unit == "wpm"
            else round(float(rng.uniform(low, high)), 3))
    cents = 0
    if sox_pitch and (bounds is None or rng.random() < SOX_PITCH_PROBABILITY):
      # Keep the shifted F0 inside the target range.
      base = voice.expected_f0(pitch, 0, pitch_range) * augment_lib.speed_factor(effects)
      f0_low, f0_high = tts_engines.TARGET_F0_RANGE
      lo = max(-SOX_PITCH_MAX_CENTS, int(np.ceil(1200 * np.log2(f0_low / base))))
      hi = min(SOX_PITCH_MAX_CENTS, int(np.floor(1200 * np.log2(f0_high / base))))
      cents = int(rng.integers(lo, hi + 1)) if lo <= hi else 0
    plan.append(PlannedUtterance(
        index=index, id=f"utt{index:06d}", split=split, voice=voice, raw_text=sentence.raw,
        text=text_lib.normalise_transcript(sentence.raw), pitch=pitch, rate=rate,
        sox_pitch_cents=cents, text_source=sentence.source, pitch_range=pitch_range,
        augment=effects))
  return plan, empty_splits


# ---------------------------------------------------------------------------------------------
# Audio


def _to_16k_mono(native_wav: str, out_wav: str, cents: int) -> None:
  # -G: headroom for the resampler's and pitch shifter's overshoot instead of clipping.
  cmd = ["sox", "-G", "-D", "-V1", native_wav, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
         "-e", "signed-integer", out_wav]
  if cents:
    cmd += ["pitch", str(cents)]
  tts_engines.run_tool(cmd + ["rate", "-v", str(SAMPLE_RATE)], "sox")


def dither_digital_silence(pcm: np.ndarray, rng: np.random.Generator,
                           min_run: int = DITHER_MIN_RUN) -> np.ndarray:
  """Replace runs of >= `min_run` exact-zero PCM16 samples with random +-1 LSB."""
  zero = np.concatenate([[False], pcm == 0, [False]])
  edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
  out = pcm.copy()
  for start, stop in zip(edges[::2], edges[1::2]):
    if stop - start >= min_run:
      out[start:stop] = rng.choice(np.array([-1, 1], dtype=pcm.dtype), size=stop - start)
  return out


def _check_audible(pcm: np.ndarray, voice: Voice) -> None:
  if pcm.size == 0 or np.abs(pcm).max() < SILENCE_PEAK * 32768:
    raise SynthesisError("silent_output", voice.speaker)


def synthesise_utterance(voice: Voice, raw_text: str, pitch, rate, sox_pitch_cents: int = 0,
                         pitch_range: float | None = None, augment: dict | None = None,
                         dither: bool = False, rng: np.random.Generator | None = None,
                         babble: np.ndarray | None = None) -> np.ndarray:
  """16 kHz mono int16 audio of `voice` saying `raw_text`; SynthesisError on failure.

  Engine -> sox (16 kHz, pitch shift) -> `augment` (see `augment.apply`; `babble` is the bank
  for babble noise) -> dither. `rng` draws the noise, the room response and the dither.
  """
  with tempfile.TemporaryDirectory(prefix="echo_tts_") as tmp:
    text_path, native, resampled = (os.path.join(tmp, n) for n in ("t.txt", "n.wav", "r.wav"))
    with open(text_path, "w", encoding="ascii") as f:
      f.write(text_lib.engine_text(raw_text) + "\n")
    tts_engines.synthesise(voice, text_path, native, pitch, rate, pitch_range)
    _to_16k_mono(native, resampled, sox_pitch_cents)
    pcm, sr = sf.read(resampled, dtype="int16", always_2d=False)
  if sr != SAMPLE_RATE or pcm.ndim != 1:
    raise SynthesisError("sox_bad_format", f"{sr} Hz, shape {pcm.shape}")
  _check_audible(pcm, voice)
  rng = rng if rng is not None else np.random.default_rng(0)
  if augment:
    if augment.get("noise", {}).get("type") == "babble" and babble is None:
      raise SynthesisError("babble_unavailable", "no voice could make the babble noise")
    wave = augment_lib.apply(pcm.astype(np.float64) / 32768.0, augment, rng, babble, SAMPLE_RATE)
    pcm = np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)
    _check_audible(pcm, voice)
  if dither:
    pcm = dither_digital_silence(pcm, rng)
  return pcm


def _write_wav_atomically(path: str, pcm: np.ndarray) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
  os.replace(tmp, path)


def make_babble(voices: Sequence[Voice], sentences: Sequence[str], seed: int,
                talkers: int = BABBLE_TALKERS) -> np.ndarray | None:
  """Several voices talking at once (float, unit power): the bank `babble` noise is cut from.

  Each talker reads a few sentences at its voice's middle settings; talkers are scaled to equal
  speech power, shorter ones looped to the longest. None when no voice could speak.
  """
  rng = np.random.default_rng([seed, 3])
  waves = []
  for i in rng.permutation(len(voices)):
    if len(waves) == talkers or not sentences:
      break
    voice = voices[i]
    picks = rng.choice(len(sentences), min(BABBLE_SENTENCES_PER_TALKER, len(sentences)),
                       replace=False)
    bounds = voice.pitch_bounds()
    pitch = None if bounds is None else int(sum(bounds) // 2)
    rate = sum(voice.rate_range) / 2
    rate = int(rate) if voice.rate_unit == "wpm" else rate
    try:
      pcm = synthesise_utterance(voice, " ".join(sentences[j] for j in picks), pitch, rate)
    except SynthesisError:
      continue
    wave = pcm.astype(np.float64) / 32768.0
    waves.append(wave / np.sqrt(augment_lib.active_power(wave)))
  if not waves:
    return None
  length = max(w.size for w in waves)
  bank = np.sum([np.resize(w, length) for w in waves], axis=0)
  return bank / np.sqrt(np.mean(bank**2))


def _manifest_row(u: PlannedUtterance, duration: float) -> dict:
  v = u.voice
  return {
      "id": u.id, "path": u.path, "text": u.text, "raw_text": u.raw_text,
      "text_source": u.text_source, "engine": v.engine, "voice": v.name, "speaker": v.speaker,
      "pitch": u.pitch, "pitch_unit": v.pitch_unit, "pitch_range": u.pitch_range,
      "rate": u.rate, "rate_unit": v.rate_unit, "sox_pitch_cents": u.sox_pitch_cents,
      "augment": u.augment, "expected_f0_hz": round(u.expected_f0_hz, 1),
      "duration": round(duration, 4), "sample_rate": SAMPLE_RATE, "split": u.split,
  }


def _make_one(u: PlannedUtterance, out_dir: str, seed: int, dither: bool, max_seconds: float,
              unavailable: dict[str, str], babble: np.ndarray | None
              ) -> tuple[dict | None, str | None]:
  """(manifest row, None) or (None, skip reason). Never raises."""
  wav_path = os.path.join(out_dir, u.path)
  try:
    if u.voice.speaker in unavailable:
      return None, "voice_unavailable"
    if os.path.isfile(wav_path):  # finished by an earlier run with the same parameters
      return _manifest_row(u, sf.info(wav_path).frames / SAMPLE_RATE), None
    rng = np.random.default_rng([seed, u.index, 2])
    pcm = synthesise_utterance(u.voice, u.raw_text, u.pitch, u.rate, u.sox_pitch_cents,
                               u.pitch_range, u.augment, dither, rng, babble)
    duration = pcm.size / SAMPLE_RATE
    if duration > max_seconds:
      return None, "too_long"
    if duration < MIN_SECONDS:
      return None, "too_short"
    _write_wav_atomically(wav_path, pcm)
    return _manifest_row(u, duration), None
  except SynthesisError as e:
    return None, e.reason
  except Exception as e:  # noqa: BLE001 - one bad utterance must not stop the build
    return None, f"error:{type(e).__name__}"


# ---------------------------------------------------------------------------------------------
# Build


def _write_json_atomically(path: str, obj, lines: bool = False) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    if lines:
      for row in obj:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    else:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
  os.replace(tmp, path)


def _read_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_manifest(corpus_dir: str) -> list[dict]:
  """The manifest rows of a built corpus, in id order."""
  path = os.path.join(corpus_dir, MANIFEST)
  if not os.path.isfile(path):
    raise MissingInputError(f"no {MANIFEST} in {corpus_dir}; build it with "
                            "`python -m echo_jax.data.synth_corpus --out DIR`")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _clear_outputs(out_dir: str, keep_wavs: bool) -> None:
  """Remove the manifest, summary and temp files (and the wavs unless `keep_wavs`)."""
  for name in (MANIFEST, SUMMARY):
    if os.path.exists(os.path.join(out_dir, name)):
      os.remove(os.path.join(out_dir, name))
  wav_dir = os.path.join(out_dir, WAV_DIR)
  for name in os.listdir(wav_dir):
    if name.startswith("utt") and (".wav.tmp" in name or (name.endswith(".wav") and not keep_wavs)):
      os.remove(os.path.join(wav_dir, name))


def _is_complete(out_dir: str, fingerprint: str) -> dict | None:
  summary = _read_json(os.path.join(out_dir, SUMMARY))
  if not summary or summary.get("fingerprint") != fingerprint:
    return None
  try:
    rows = read_manifest(out_dir)
  except (OSError, ValueError):
    return None
  if len(rows) != summary.get("written") or not all(
      os.path.isfile(os.path.join(out_dir, r["path"])) for r in rows):
    return None
  return summary


def build_corpus(out_dir: str, num_utterances: int, seed: int = 0,
                 engines: Sequence[str] = tts_engines.ENGINES, sox_pitch: bool = True,
                 noise_snr_db: float | None = None, dither: bool = True, workers: int = 2,
                 progress: bool = True, max_seconds: float = 15.0,
                 voices: Sequence[Voice] | None = None,
                 sentences: Sequence[str | corpus_text.Sentence] | None = None,
                 augment: bool = True) -> dict:
  """Build (or reuse, or resume) the corpus in `out_dir`; returns the summary dict.

  `voices` replaces the vetted voice table and `sentences` the fortunes + WordNet sentences
  (both mainly for tests). `augment=False` gives clean audio at the engines' default pitch range;
  `noise_snr_db` adds white noise at that SNR to every utterance. Re-running with the same
  parameters returns the stored summary at once; a run interrupted part-way resumes (finished wavs
  are kept); different parameters start afresh.
  """
  started = time.time()
  engines = (engines,) if isinstance(engines, str) else tuple(engines)
  unknown = [e for e in engines if e not in tts_engines.ENGINES]
  if unknown or not engines:
    raise UserError(f"engines {unknown or list(engines)} not usable; choose from "
                     f"{', '.join(tts_engines.ENGINES)}")
  if int(num_utterances) < 1:
    raise UserError(f"num_utterances must be >= 1, got {num_utterances}")
  if int(workers) < 1:
    raise UserError(f"workers must be >= 1, got {workers}")
  if noise_snr_db is not None and not np.isfinite(noise_snr_db):
    raise UserError(f"noise_snr_db must be a finite number or None, got {noise_snr_db}")
  voice_table = [v for v in (voices if voices is not None else tts_engines.default_voices())
                 if v.engine in engines]
  sentences = (corpus_text.load_sentences() if sentences is None
               else corpus_text.as_sentences(sentences))
  if not sentences:
    raise ValueError("no sentences to synthesise")

  params = {
      "format_version": FORMAT_VERSION, "num_utterances": int(num_utterances), "seed": int(seed),
      "engines": list(engines), "sox_pitch": bool(sox_pitch),
      "noise_snr_db": None if noise_snr_db is None else float(noise_snr_db),
      "dither": bool(dither), "max_seconds": float(max_seconds), "augment": bool(augment),
      "voices": [dataclasses.asdict(v) for v in voice_table],
      "sentences_sha256": hashlib.sha256(
          "\n".join(f"{s.source}\t{s.raw}" for s in sentences).encode()).hexdigest(),
  }
  fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
  os.makedirs(os.path.join(out_dir, WAV_DIR), exist_ok=True)
  done = _is_complete(out_dir, fingerprint)
  if done is not None:
    if progress:
      print(f"corpus in {out_dir} is complete for these parameters; nothing to do",
            file=sys.stderr)
    return done
  # Same parameters as the unfinished run that left wavs here: keep them (resume); otherwise
  # start afresh. Either way the manifest is rewritten only once every job has finished.
  state = _read_json(os.path.join(out_dir, STATE))
  resume = bool(state) and state.get("fingerprint") == fingerprint
  _clear_outputs(out_dir, keep_wavs=resume)
  if not resume:
    _write_json_atomically(os.path.join(out_dir, STATE), {"fingerprint": fingerprint})

  unavailable = {}
  for v in voice_table:
    reason = tts_engines.unavailable_reason(v)
    if reason:
      unavailable[v.speaker] = reason
  plan, empty_splits = plan_corpus(int(num_utterances), int(seed), voice_table, sentences,
                                   sox_pitch, augment, noise_snr_db)
  babble = None
  if any(u.augment.get("noise", {}).get("type") == "babble"
         and not os.path.isfile(os.path.join(out_dir, u.path)) for u in plan):
    # Training voices reading training sentences: nothing of a held-out split leaks into train.
    talkers = [v for v in voice_table if v.split == "train" and v.speaker not in unavailable]
    texts = sorted({u.raw_text for u in plan if u.split == "train"}) or sorted(
        {u.raw_text for u in plan})
    babble = make_babble(talkers, texts, int(seed))

  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  results = [None] * len(plan)
  bar = tqdm(total=len(plan), desc="synthesising", unit="utt", disable=not progress,
             file=sys.stderr)
  # Threads: the work happens in engine subprocesses (the numpy/scipy augmentation takes a few
  # ms), and a caller that already imported JAX or TensorFlow must not fork.
  with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
    futures = {pool.submit(_make_one, u, out_dir, int(seed), dither, max_seconds, unavailable,
                           babble): u.index for u in plan}
    for future in concurrent.futures.as_completed(futures):
      results[futures[future]] = future.result()
      bar.update(1)
  bar.close()

  rows = [row for row, _ in results if row is not None]
  skipped = collections.Counter(reason for _, reason in results if reason is not None)
  _write_json_atomically(os.path.join(out_dir, MANIFEST), rows, lines=True)
  summary = {
      "fingerprint": fingerprint,
      "params": {k: v for k, v in params.items() if k != "voices"},
      "requested": int(num_utterances),
      "written": len(rows),
      "skipped": dict(sorted(skipped.items())),
      "unavailable_voices": dict(sorted(unavailable.items())),
      "empty_splits": empty_splits,
      "splits": dict(collections.Counter(r["split"] for r in rows)),
      "engines": dict(collections.Counter(r["engine"] for r in rows)),
      "text_sources": dict(collections.Counter(r["text_source"] for r in rows)),
      "distinct_sentences": {
          s: len({r["text"] for r in rows if r["split"] == s}) for s in SPLITS},
      "augmented": sum(bool(r["augment"]) for r in rows),
      "speakers_per_split": {
          s: len({r["speaker"] for r in rows if r["split"] == s}) for s in SPLITS},
      "held_out_voices": {
          s: sorted(v.speaker for v in voice_table if v.split == s) for s in SPLITS[1:]},
      "audio_seconds": round(sum(r["duration"] for r in rows), 2),
      "build_seconds": round(time.time() - started, 2),
  }
  _write_json_atomically(os.path.join(out_dir, SUMMARY), summary)
  return summary


def build_from_config(data_config, progress: bool = True) -> dict:
  """Build the corpus named by a `config.data` (ml_collections) into its corpus dir."""
  corpus_dir = data_config.corpus_dir or os.path.join(data_config.root, "echo_speech_corpus")
  snr = float(data_config.synth_noise_snr_db)
  return build_corpus(
      corpus_dir, int(data_config.synth_num_utterances), seed=int(data_config.synth_seed),
      engines=tuple(data_config.synth_engines), sox_pitch=bool(data_config.synth_sox_pitch),
      noise_snr_db=None if snr < 0 else snr, dither=bool(data_config.synth_dither),
      workers=int(data_config.prepare_workers), progress=progress,
      max_seconds=float(data_config.max_audio_seconds),
      augment=bool(data_config.get("synth_augment", True)))


def _print_summary(summary: dict) -> None:
  print(f"written {summary['written']} of {summary['requested']} utterances, "
        f"{summary['audio_seconds'] / 60:.1f} min of audio, in {summary['build_seconds']:.1f} s")
  print("splits:", summary["splits"], " engines:", summary["engines"])
  print("speakers per split:", summary["speakers_per_split"])
  print("text sources:", summary["text_sources"], " distinct sentences:",
        summary["distinct_sentences"], " augmented:", summary["augmented"])
  if summary["skipped"]:
    print("skipped:", summary["skipped"])
  for speaker, reason in summary["unavailable_voices"].items():
    print(f"unavailable voice {speaker}: {reason}")


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="corpus directory")
  parser.add_argument("--num_utterances", type=int, default=1200)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--engines", nargs="+", default=list(tts_engines.ENGINES),
                      choices=tts_engines.ENGINES)
  parser.add_argument("--no_sox_pitch", action="store_true",
                      help="no extra sox pitch shifts (engine pitch settings only)")
  parser.add_argument("--noise_snr_db", type=float, default=None,
                      help="add white noise at this SNR (dB) to every utterance")
  parser.add_argument("--no_augment", action="store_true",
                      help="clean audio: no speed/reverb/noise/band-limit/gain, default "
                      "pitch range")
  parser.add_argument("--no_dither", action="store_true",
                      help="keep exact digital silence instead of +-1 LSB noise")
  parser.add_argument("--max_seconds", type=float, default=15.0)
  parser.add_argument("--workers", type=int, default=2)
  args = parser.parse_args(argv)
  summary = build_corpus(
      args.out, args.num_utterances, seed=args.seed, engines=args.engines,
      sox_pitch=not args.no_sox_pitch, noise_snr_db=args.noise_snr_db, dither=not args.no_dither,
      workers=args.workers, max_seconds=args.max_seconds, augment=not args.no_augment)
  _print_summary(summary)
  return 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
