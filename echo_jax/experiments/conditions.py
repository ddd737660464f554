"""The ablation's test conditions: the test split as prepared, and pitch-shifted copies of it.

Every run is scored on the same utterances in every condition, so differences between variants
and between conditions are paired. The utterances are the first `max_test_examples` records of
the prepared test split (the set `evaluate --split test --max_examples N` scores); the shifted
conditions are those utterances' corpus wavs passed through pitch_shift.shift_pitch (formants
kept), written once under WORKDIR/conditions/shift_<s>/ with a manifest.jsonl that keeps each
utterance's id, transcript and corpus metadata, so every run's predictions join on the id.

Shifting needs the source audio, which only the synthetic corpus (dataset echo_speech) keeps
beside a manifest with ids; for other datasets the shifted conditions are skipped and the reason
is logged and reported.
"""

import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import soundfile

from echo_jax.data import audio as audio_lib
from echo_jax.data import pipeline
from echo_jax.data import prepare
from echo_jax.errors import MissingInputError, UserError
from echo_jax.experiments import pitch_shift

TEST = "test"
MANIFEST = "manifest.jsonl"


@dataclasses.dataclass(frozen=True)
class Condition:
  name: str  # "test" or "shift_<s>"
  semitones: float  # 0 for the test split as prepared
  manifest: Optional[str] = None  # None: the prepared split itself


def shift_name(semitones: float) -> str:
  """shift_-6, shift_+3, shift_+1.5."""
  return f"shift_{float(semitones):+g}"


def split_ids(config, split: str, max_examples: int) -> List[str]:
  """Ids of the records of the prepared `split` an evaluation scores (the first `max_examples`,
  -1: all, of those data.eval_min_f0_hz keeps), in record order."""
  prepared = prepare.ensure_prepared(config)
  source = prepared.data_source(split)
  positions = np.flatnonzero(pipeline.eval_selection(config, prepared, split, int(max_examples)))
  records = prepared.read_records(source, split, [int(p) for p in positions])
  return [r["id"].decode() if isinstance(r["id"], bytes) else str(r["id"]) for r in records]


def corpus_rows(config) -> Dict[str, dict]:
  """{id: row} of the synthetic corpus manifest the prepared dataset was built from."""
  path = os.path.join(prepare.corpus_dir(config), MANIFEST)
  if not os.path.isfile(path):
    raise MissingInputError(f"{path} is missing: the pitch-shifted conditions are made from the "
                            "corpus wavs; set config.data.corpus_dir to the corpus the data was "
                            "prepared from (or rerun python -m echo_jax.data.prepare)")
  return read_jsonl_by_id(path)


def read_jsonl_by_id(path: str) -> Dict[str, dict]:
  """{id: row} of a JSON-lines file whose rows carry an "id" (a manifest, predictions.jsonl)."""
  rows = {}
  with open(path, encoding="utf-8") as handle:
    for line in handle:
      if line.strip():
        row = json.loads(line)
        rows[str(row["id"])] = row
  return rows


def why_no_shifts(config) -> Optional[str]:
  """The reason the shifted conditions cannot be made for this dataset, else None."""
  dataset = str(config.data.dataset)
  if dataset != "echo_speech":
    return (f"config.data.dataset={dataset!r}: pitch-shifted conditions are made only for the "
            "synthetic corpus (echo_speech), whose manifest maps test ids to their wavs")
  return None


def _write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
  """PCM-16 WAV, written to a temporary name first so a half-written file is never used."""
  tmp = path + ".tmp.wav"
  soundfile.write(tmp, np.clip(samples, -1.0, 1.0), int(sample_rate), subtype="PCM_16",
                  format="WAV")
  os.replace(tmp, path)


def _manifest_ids(path: str) -> Optional[List[str]]:
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as handle:
    return [str(json.loads(line)["id"]) for line in handle if line.strip()]


def ensure_shifted(config, out_dir: str, semitones: float, ids: Sequence[str],
                   rows: Dict[str, dict], say: Callable[[str], None] = print) -> str:
  """Writes (once) `ids`' corpus wavs shifted by `semitones` and their manifest; returns it.

  Resumable: wavs already written are kept; the manifest is written last, so a complete
  condition is one whose manifest lists exactly `ids`.
  """
  manifest = os.path.join(out_dir, MANIFEST)
  if _manifest_ids(manifest) == list(ids):
    return manifest
  wav_dir = os.path.join(out_dir, "wavs")
  os.makedirs(wav_dir, exist_ok=True)
  corpus = prepare.corpus_dir(config)
  sample_rate = int(config.data.sample_rate)
  out_rows = []
  for done, key in enumerate(ids):
    if key not in rows:
      raise UserError(f"test utterance {key!r} of the prepared data is not in "
                      f"{os.path.join(corpus, MANIFEST)}: config.data.corpus_dir must be the "
                      "corpus the data was prepared from")
    row = rows[key]
    target = os.path.join(wav_dir, f"{key}.wav")
    if not os.path.isfile(target):
      samples = audio_lib.load_audio(os.path.join(corpus, row["path"]), sample_rate)
      _write_wav(target, pitch_shift.shift_pitch(samples, sample_rate, semitones), sample_rate)
    out = {k: v for k, v in row.items() if k not in ("path", "split")}
    out.update(id=key, path=f"wavs/{key}.wav", split=TEST, source_path=row["path"],
               pitch_shift_semitones=float(semitones))
    out_rows.append(out)
    if (done + 1) % 50 == 0:
      say(f"  {shift_name(semitones)}: {done + 1} of {len(ids)} wavs")
  tmp = manifest + ".tmp"
  with open(tmp, "w", encoding="utf-8") as handle:
    for out in out_rows:
      handle.write(json.dumps(out, sort_keys=True) + "\n")
  os.replace(tmp, manifest)
  return manifest


def build(config, workdir: str, semitones: Sequence[float], max_examples: int,
          say: Callable[[str], None] = print) -> tuple:
  """([Condition], skipped reason or None): the test split and, when possible, each shift."""
  conditions = [Condition(TEST, 0.0)]
  reason = why_no_shifts(config) if semitones else None
  if reason is not None:
    say(f"no pitch-shifted conditions: {reason}")
    return conditions, reason
  if not semitones:
    return conditions, None
  ids = split_ids(config, TEST, max_examples)
  rows = corpus_rows(config)
  for value in semitones:
    name = shift_name(value)
    out_dir = os.path.join(workdir, "conditions", name)
    if _manifest_ids(os.path.join(out_dir, MANIFEST)) != list(ids):
      say(f"writing {len(ids)} test wavs shifted by {float(value):+g} semitones to {out_dir}")
    conditions.append(Condition(name, float(value),
                                ensure_shifted(config, out_dir, value, ids, rows, say)))
  return conditions, None
