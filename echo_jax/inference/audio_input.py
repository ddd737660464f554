"""Audio files to padded model batches: read, check, chunk, featurise, bucket and pad.

  prepared = prepare_file("speech.flac", config)   # PreparedFile: result, chunk features, bounds
  for indices, batch in padded_batches(prepared.items, config, batch_size=8):
    ...  # batch: the items at `indices`, padded to their bucket edge and to 8 rows

Shared by `transcribe` and `evaluate` (and the ablation's conditions): any sample rate and channel
count is downmixed and resampled to data.sample_rate, silence at either end is cut
(decode.trim_silence_db), the features are the training ones
(echo_jax.data.features), long audio is cut into overlapping chunks (echo_jax.inference.longform),
and a file that cannot be used sets FileResult.error (an AudioError reason) instead of raising.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from echo_jax.config.defaults import default_config
from echo_jax.data.audio import AudioError, load_audio, trim_edge_silence
from echo_jax.data.features import compute_features
from echo_jax.inference import longform


_DEFAULT_TRIM_SILENCE_DB = float(default_config().decode.trim_silence_db)


@dataclasses.dataclass
class FileResult:
  path: str
  text: Optional[str] = None
  duration_s: float = 0.0
  num_chunks: int = 0
  error: Optional[str] = None  # an AudioError reason: unreadable, empty, silent, non_finite
  detail: str = ""
  hypothesis: str = ""  # which decoder wrote text (transcribe --hypothesis)

  def to_json(self) -> Dict:
    if self.error is not None:
      return {"path": self.path, "error": self.error, "detail": self.detail}
    out = {"path": self.path, "text": self.text, "duration_s": round(self.duration_s, 3),
           "chunks": self.num_chunks}
    if self.hypothesis:
      out["hypothesis"] = self.hypothesis
    return out


def bucket_edge(num_frames: int, edges: Sequence[int]) -> int:
  """Smallest bucket edge holding num_frames frames."""
  for edge in sorted(edges):
    if num_frames <= edge:
      return int(edge)
  raise ValueError(f"{num_frames} frames exceed the largest bucket edge {max(edges)}; "
                   "chunking should have prevented this (check config.data.bucket_frames)")


def padded_batches(items: Sequence[Dict[str, np.ndarray]], config, batch_size: int):
  """(indices into items, padded batch) per `batch_size` feature dicts of one length bucket, each
  batch padded to its bucket edge and to `batch_size` rows, so each bucket compiles once."""
  by_edge: Dict[int, List[int]] = {}
  for index, item in enumerate(items):
    by_edge.setdefault(bucket_edge(item["mel"].shape[0], config.data.bucket_frames),
                       []).append(index)
  for edge, indices in sorted(by_edge.items()):
    for start in range(0, len(indices), batch_size):
      group = indices[start:start + batch_size]
      yield group, pad_batch([items[i] for i in group], edge, batch_size, config)


def max_chunk_samples(config) -> int:
  """Longest chunk whose frame count (samples // hop + 1) fits the largest bucket edge."""
  data = config.data
  by_bucket = (max(data.bucket_frames) - 1) * data.hop_length
  by_config = int(round(config.decode.chunk_seconds * data.sample_rate))
  return int(min(by_bucket, by_config) if by_config > 0 else by_bucket)


def overlap_samples(config, chunk_samples: int) -> int:
  wanted = int(round(config.decode.chunk_overlap_seconds * config.data.sample_rate))
  return int(min(max(wanted, 0), chunk_samples // 2))


def features_of(wave: np.ndarray, config) -> Dict[str, np.ndarray]:
  """The training features of one waveform (echo_jax.data.features)."""
  features = compute_features(wave, config.data)
  out = {"mel": np.asarray(features["mel"], np.float32),
         "f0": np.asarray(features["f0"], np.float32)}
  if "waveform" in tuple(config.model.features):
    out["waveform"] = np.asarray(wave, np.float32)
  return out


def pad_batch(items: Sequence[Dict[str, np.ndarray]], edge: int, batch_size: int, config) -> Dict:
  """Pads items to `edge` frames and the batch to `batch_size` rows (repeating row 0, whose
  outputs are discarded, so every batch of a bucket has one shape)."""
  n_mels = config.data.n_mels
  hop = config.data.hop_length
  rows = list(items) + [items[0]] * (batch_size - len(items))
  batch = {
      "mel": np.zeros((batch_size, edge, n_mels), np.float32),
      "f0": np.zeros((batch_size, edge), np.float32),
      "num_frames": np.zeros((batch_size,), np.int32),
  }
  with_wave = "waveform" in rows[0]
  if with_wave:
    batch["waveform"] = np.zeros((batch_size, edge * hop), np.float32)
    batch["num_samples"] = np.zeros((batch_size,), np.int32)
  for i, item in enumerate(rows):
    frames = item["mel"].shape[0]
    batch["mel"][i, :frames] = item["mel"]
    batch["f0"][i, :frames] = item["f0"]
    batch["num_frames"][i] = frames
    if with_wave:
      samples = min(item["waveform"].shape[0], edge * hop)
      batch["waveform"][i, :samples] = item["waveform"][:samples]
      batch["num_samples"][i] = samples
  return batch


@dataclasses.dataclass
class PreparedFile:
  """One input file read and cut into chunk feature dicts (empty when result.error is set)."""
  result: FileResult
  items: List[Dict[str, np.ndarray]]
  bounds: List[tuple]


def prepare_file(path: str, config) -> PreparedFile:
  """Loads, checks and chunks one file; an unusable file sets result.error instead of raising."""
  sample_rate = int(config.data.sample_rate)
  result = FileResult(path=path)
  try:
    wave = load_audio(path, sample_rate)
  except AudioError as error:
    result.error, result.detail = error.reason, error.detail
    return PreparedFile(result, [], [])
  except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
    result.error, result.detail = "unreadable", f"{type(error).__name__}: {error}"
    return PreparedFile(result, [], [])
  result.duration_s = len(wave) / sample_rate
  # A run saved before the field existed trims as today's default does (training never trims).
  trim_db = float(config.decode.get("trim_silence_db", _DEFAULT_TRIM_SILENCE_DB))
  if trim_db > 0:
    wave = trim_edge_silence(wave, sample_rate, trim_db)
  chunk = max_chunk_samples(config)
  bounds = longform.chunk_bounds(len(wave), chunk, overlap_samples(config, chunk))
  result.num_chunks = len(bounds)
  items = [features_of(wave[start:end], config) for start, end in bounds]
  return PreparedFile(result, items, bounds)
