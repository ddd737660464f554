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
import multiprocessing
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

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


def semitones_of(name: str) -> float:
  """The shift a condition name stands for (shift_name's inverse; 0 for the test split)."""
  return 0.0 if name == TEST else float(name[len("shift_"):])


def condition_dir(workdir: str, semitones: float) -> str:
  """WORKDIR/conditions/shift_<s>: the shifted wavs (wavs/) and their manifest."""
  return os.path.join(workdir, "conditions", shift_name(semitones))


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


def _manifest_ids(path: str) -> Optional[List[str]]:
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as handle:
    return [str(json.loads(line)["id"]) for line in handle if line.strip()]


def write_shifted_wavs(config, workdir: str, semitones: Sequence[float], ids: Sequence[str],
                       rows: Dict[str, dict], say: Callable[[str], None] = print) -> None:
  """Writes every missing shifted wav of `ids` under WORKDIR/conditions/shift_<s>/wavs/.

  Each utterance is analysed by WORLD once for all its missing shifts, in a pool of
  data.prepare_workers spawned processes (the analysis is the slow part and is single-threaded).
  Wavs already written are kept, so an interrupted build resumes.
  """
  corpus = prepare.corpus_dir(config)
  sample_rate = int(config.data.sample_rate)
  tasks = []
  for key in ids:
    if key not in rows:
      raise UserError(f"test utterance {key!r} of the prepared data is not in "
                      f"{os.path.join(corpus, MANIFEST)}: config.data.corpus_dir must be the "
                      "corpus the data was prepared from")
    targets = []
    for value in semitones:
      target = os.path.join(condition_dir(workdir, value), "wavs", f"{key}.wav")
      if not os.path.isfile(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        targets.append((float(value), target))
    if targets:
      tasks.append((os.path.join(corpus, rows[key]["path"]), sample_rate, targets))
  if not tasks:
    return
  workers = max(1, min(int(config.data.prepare_workers), len(tasks)))
  names = ", ".join(shift_name(v) for v in semitones)
  say(f"pitch-shifting {len(tasks)} test utterances ({names}) with {workers} worker(s) into "
      f"{os.path.join(workdir, 'conditions')}")
  if workers == 1:
    results = map(pitch_shift.write_shifted, tasks)
  else:
    pool = multiprocessing.get_context("spawn").Pool(workers)
    results = pool.imap_unordered(pitch_shift.write_shifted, tasks)
  try:
    for done, _ in enumerate(results, 1):
      if done % 50 == 0 or done == len(tasks):
        say(f"  {done} of {len(tasks)} utterances shifted")
  finally:
    if workers > 1:
      pool.terminate()
      pool.join()


def ensure_shifted(config, out_dir: str, semitones: float, ids: Sequence[str],
                   rows: Dict[str, dict]) -> str:
  """Writes (once) the manifest of `ids`' wavs shifted by `semitones` (the wavs must exist:
  write_shifted_wavs); returns it. The manifest is written last, so a complete condition is one
  whose manifest lists exactly `ids`."""
  manifest = os.path.join(out_dir, MANIFEST)
  if _manifest_ids(manifest) == list(ids):
    return manifest
  out_rows = []
  for key in ids:
    row = rows[key]
    if not os.path.isfile(os.path.join(out_dir, "wavs", f"{key}.wav")):
      raise MissingInputError(f"{out_dir}/wavs/{key}.wav is missing; rerun the study to write it")
    out = {k: v for k, v in row.items() if k not in ("path", "split")}
    out.update(id=key, path=f"wavs/{key}.wav", split=TEST, source_path=row["path"],
               pitch_shift_semitones=float(semitones))
    out_rows.append(out)
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
  missing = [v for v in semitones
             if _manifest_ids(os.path.join(condition_dir(workdir, v), MANIFEST)) != list(ids)]
  write_shifted_wavs(config, workdir, missing, ids, rows, say)
  for value in semitones:
    conditions.append(Condition(shift_name(value), float(value), ensure_shifted(
        config, condition_dir(workdir, value), value, ids, rows)))
  return conditions, None
