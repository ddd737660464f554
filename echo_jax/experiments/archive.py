"""A study's finished runs kept as small files that can live in the repository.

A study outlasts the machine it started on: checkpoints and prepared data are large and local,
but what the report needs from a finished run is small: its done.json and timing, its training
curve, and per condition the scored predictions. The archive holds exactly that, compressed, so a
study continued on a fresh checkout (or another machine) skips every archived run and the report
can be rebuilt without any model or corpus.

Layout under the archive folder:
  study.json                         the study's settings and the fingerprint of its corpus
  <variant>/seed<k>/done.json, timing.json
  <variant>/seed<k>/curve.jsonl      the training run's logged train/eval rows (metrics.jsonl)
  <variant>/seed<k>/<condition>.predictions.jsonl.gz   scored fields of evaluate's predictions
  <variant>/seed<k>/<condition>.summary.json.gz        evaluate's summary

Runs are only comparable on identical data, so the archive records a fingerprint of the corpus
(every utterance's id, split, text, speaker and augmentation record, not its local paths) and
refuses runs trained on another one, e.g. a corpus synthesised by other TTS engine versions.
"""

import gzip
import hashlib
import json
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence

from echo_jax.errors import UserError

STUDY = "study.json"
DONE = "done.json"
TIMING = "timing.json"
CURVE = "curve.jsonl"
METRICS = "metrics.jsonl"
PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
# Per-utterance fields the archive drops: duplicates of kept fields or local detail.
DROPPED_FIELDS = ("reference", "hypothesis", "detail", "chunks", "wer", "path", "audio_path")
# Corpus manifest fields that are local to a machine, left out of the fingerprint.
LOCAL_FIELDS = ("path", "audio_path", "wav", "file")
# Config fields added after studies were recorded, each with the value that means what its
# absence meant: a study recorded without the field matches a config holding that value.
ADDED_FIELDS = {"data.bucket_target_lengths": []}


def read_json(path: str) -> Optional[dict]:
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as handle:
    return json.load(handle)


def write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as handle:
    json.dump(obj, handle, indent=2, sort_keys=True)
    handle.write("\n")
  os.replace(path + ".tmp", path)


def _write_bytes(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as handle:
    handle.write(data)
  os.replace(path + ".tmp", path)


def settings_changes(before: Dict[str, Any], after: Dict[str, Any]) -> str:
  """"field: old -> new; ..." for the first five fields that differ ("" when none do)."""
  def value(settings, key):
    return settings.get(key, ADDED_FIELDS.get(key))

  changed = sorted(k for k in set(before) | set(after) if value(before, k) != value(after, k))
  return "; ".join(f"{k}: {value(before, k)!r} -> {value(after, k)!r}" for k in changed[:5])


def corpus_fingerprint(manifest_path: str) -> str:
  """sha256 of a corpus manifest's rows without their local paths, in id order ("" if absent)."""
  if not os.path.isfile(manifest_path):
    return ""
  rows = []
  with open(manifest_path, encoding="utf-8") as handle:
    for line in handle:
      if line.strip():
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if k not in LOCAL_FIELDS})
  h = hashlib.sha256()
  for row in sorted(rows, key=lambda r: str(r.get("id", ""))):
    h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
  return h.hexdigest()


class Archive:
  """The archive folder of one study."""

  def __init__(self, folder: str):
    self.folder = folder

  def run_dir(self, variant: str, seed: int) -> str:
    return os.path.join(self.folder, variant, f"seed{int(seed)}")

  def has(self, variant: str, seed: int) -> bool:
    return os.path.isfile(os.path.join(self.run_dir(variant, seed), DONE))

  def conditions(self) -> Optional[List[dict]]:
    """[{name, semitones}] the archived runs were scored on; None before the first run."""
    study = read_json(os.path.join(self.folder, STUDY))
    return None if study is None else study.get("conditions")

  def skipped_reason(self) -> Optional[str]:
    study = read_json(os.path.join(self.folder, STUDY)) or {}
    return study.get("skipped_conditions")

  def check_settings(self, settings: Dict[str, Any]) -> None:
    """Refuses a study whose settings differ from the archived one's (as the workdir does)."""
    study = read_json(os.path.join(self.folder, STUDY))
    if study is None:
      return
    shown = settings_changes(study["settings"], settings)
    if shown:
      raise UserError(f"the archive {self.folder} holds a study with other settings ({shown}); "
                      "use the archived settings, or another ablation.archive_dir")

  def record_study(self, settings: Dict[str, Any], fingerprint: str,
                   conditions: Sequence[dict], skipped_reason: Optional[str]) -> None:
    """Writes study.json on the first archived run; later runs must share its corpus."""
    path = os.path.join(self.folder, STUDY)
    study = read_json(path)
    if study is not None:
      if study.get("corpus_fingerprint") != fingerprint:
        raise UserError(
            f"this study's corpus differs from the one the runs in {self.folder} were trained on "
            f"(fingerprint {fingerprint[:12]} vs {str(study.get('corpus_fingerprint'))[:12]}): "
            "other TTS engine versions or synthesis settings make other audio. The run stays in "
            "the workdir; archive it elsewhere (ablation.archive_dir) or rebuild the corpus with "
            "the archived study's settings")
      return
    write_json(path, {"settings": settings, "corpus_fingerprint": fingerprint,
                       "conditions": [dict(c) for c in conditions],
                       "skipped_conditions": skipped_reason})

  def store(self, run_workdir: str, variant: str, seed: int, eval_dirs: Dict[str, str]) -> None:
    """Copies a finished run's record in; done.json is written last, so a half-copied run is
    never taken as archived."""
    out = self.run_dir(variant, seed)
    os.makedirs(out, exist_ok=True)
    for name, folder in eval_dirs.items():
      rows = []
      with open(os.path.join(folder, PREDICTIONS), encoding="utf-8") as handle:
        for line in handle:
          if line.strip():
            row = json.loads(line)
            rows.append({k: v for k, v in row.items() if k not in DROPPED_FIELDS})
      text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
      # mtime 0: the same predictions give the same bytes (no spurious changes in git)
      _write_bytes(os.path.join(out, f"{name}.{PREDICTIONS}.gz"),
                   gzip.compress(text.encode("utf-8"), mtime=0))
      with open(os.path.join(folder, SUMMARY), "rb") as handle:
        _write_bytes(os.path.join(out, f"{name}.{SUMMARY}.gz"),
                     gzip.compress(handle.read(), mtime=0))
    metrics = os.path.join(run_workdir, METRICS)
    if os.path.isfile(metrics):
      shutil.copyfile(metrics, os.path.join(out, CURVE))
    timing = read_json(os.path.join(run_workdir, TIMING))
    if timing is not None:
      write_json(os.path.join(out, TIMING), timing)
    write_json(os.path.join(out, DONE), read_json(os.path.join(run_workdir, DONE)))

  def restore(self, variant: str, seed: int, run_workdir: str,
              eval_dirs: Dict[str, str]) -> None:
    """Writes an archived run's record into its workdir as if it had run there (predictions,
    summaries, curve, timing; done.json last). Its checkpoints are not in the archive."""
    src = self.run_dir(variant, seed)
    for name, folder in eval_dirs.items():
      packed = os.path.join(src, f"{name}.{PREDICTIONS}.gz")
      if not os.path.isfile(packed):
        continue
      with open(packed, "rb") as handle:
        _write_bytes(os.path.join(folder, PREDICTIONS), gzip.decompress(handle.read()))
      with open(os.path.join(src, f"{name}.{SUMMARY}.gz"), "rb") as handle:
        _write_bytes(os.path.join(folder, SUMMARY), gzip.decompress(handle.read()))
    os.makedirs(run_workdir, exist_ok=True)
    if os.path.isfile(os.path.join(src, CURVE)):
      shutil.copyfile(os.path.join(src, CURVE), os.path.join(run_workdir, METRICS))
    timing = read_json(os.path.join(src, TIMING))
    if timing is not None:
      write_json(os.path.join(run_workdir, TIMING), timing)
    write_json(os.path.join(run_workdir, DONE), read_json(os.path.join(src, DONE)))
