"""Utterances selected by their median voiced F0: the pitch ablation's out-of-range split.

`data.train_max_f0_hz` keeps only training utterances whose median voiced F0 is below it, and
`data.eval_min_f0_hz` only evaluated ones (validation, test) at or above it, so a model can be
trained on low voices and tested on high ones it never heard. The criterion is the utterance's
own median (the synthetic voices are re-pitched per utterance, so a voice has no single F0); an
utterance with no voiced frame has median 0. The medians are computed once per prepared split
from the stored F0 tracks and cached beside the records (MEDIANS_FILE).
"""

import json
import os

import numpy as np
from absl import logging

MEDIANS_FILE = "echo_f0_medians.json"
_CHUNK = 256  # records read per call while computing the medians


def median_voiced_f0(f0: np.ndarray) -> float:
  """Median of the voiced (> 0) frames of an F0 track in Hz; 0 when nothing is voiced."""
  voiced = np.asarray(f0, np.float32)
  voiced = voiced[voiced > 0]
  return float(np.median(voiced)) if voiced.size else 0.0


def split_medians(prepared, split: str) -> np.ndarray:
  """[N] median voiced F0 of every record of the prepared `split`, in record order (cached)."""
  path = os.path.join(prepared.builder_dir, MEDIANS_FILE)
  cached = {}
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        cached = json.load(f)
    except ValueError:
      cached = {}  # a damaged cache is only a cache: recompute it
  size = int(prepared.split_sizes.get(split, 0))
  if len(cached.get(split, [])) == size:
    return np.asarray(cached[split], np.float32)
  logging.info("median F0 of the %d records of split %s (once; cached in %s)", size, split, path)
  source = prepared.data_source(split)
  medians = []
  for start in range(0, size, _CHUNK):
    positions = list(range(start, min(start + _CHUNK, size)))
    medians += [median_voiced_f0(r["f0"]) for r in prepared.read_records(source, split, positions)]
  cached[split] = [round(m, 3) for m in medians]
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(cached, f)
  os.replace(tmp, path)
  return np.asarray(cached[split], np.float32)


def in_range(medians: np.ndarray, max_hz: float = 0.0, min_hz: float = 0.0) -> np.ndarray:
  """[N] bool: median < max_hz (when max_hz > 0) and median >= min_hz (when min_hz > 0)."""
  keep = np.ones(len(medians), bool)
  if max_hz > 0:
    keep &= medians < max_hz
  if min_hz > 0:
    keep &= medians >= min_hz
  return keep


def selection(prepared, split: str, max_hz: float = 0.0, min_hz: float = 0.0) -> np.ndarray:
  """[N] bool: the records of the prepared `split` within the limits (all when both are 0; the
  medians are only computed when a limit is set)."""
  if max_hz <= 0 and min_hz <= 0:
    return np.ones(int(prepared.split_sizes.get(split, 0)), bool)
  return in_range(split_medians(prepared, split), max_hz=max_hz, min_hz=min_hz)
