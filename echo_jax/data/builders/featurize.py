"""One utterance -> one stored example, or a skip reason. Runs in the prepare worker processes.

Kept free of TensorFlow imports so spawned workers start quickly.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from echo_jax.data import audio as audio_lib
from echo_jax.data import features as features_lib
from echo_jax.data.text import is_speakable, normalise_transcript
from echo_jax.data.tokenizer import Tokenizer

# Transcript skip reasons (audio ones are in audio.SKIP_REASONS).
EMPTY_TRANSCRIPT = "empty_transcript"  # nothing but white space
UNSPEAKABLE_TRANSCRIPT = "unspeakable_transcript"  # no letters left after normalisation
FEATURE_ERROR = "feature_error"  # the feature step itself failed (reported with the exception)
SKIP_REASONS = audio_lib.SKIP_REASONS + (EMPTY_TRANSCRIPT, UNSPEAKABLE_TRANSCRIPT, FEATURE_ERROR)

_LETTER = re.compile(r"[a-z]")
_TOKENIZERS: dict[str, object] = {}


@dataclasses.dataclass
class ItemResult:
  split: str
  index: int
  key: str
  example: dict | None  # the stored feature dict, None when skipped
  reason: str = ""
  detail: str = ""
  seconds: float = 0.0  # audio seconds processed


def _tokenizer(path: str):
  if path not in _TOKENIZERS:
    _TOKENIZERS[path] = Tokenizer.load(path)
  return _TOKENIZERS[path]


def featurize_item(item, params: features_lib.FeatureParams, tokenizer_path: str,
                   store_features: bool = True, store_waveform: bool = False) -> ItemResult:
  """Checks, loads and featurises `item` (a sources.SourceItem); never raises."""

  def skip(reason, detail=""):
    return ItemResult(item.split, item.index, item.key, None, reason, detail)

  if not item.raw_text or not item.raw_text.strip():
    return skip(EMPTY_TRANSCRIPT)
  text = normalise_transcript(item.raw_text)
  if not is_speakable(item.raw_text) or not _LETTER.search(text):
    return skip(UNSPEAKABLE_TRANSCRIPT, repr(item.raw_text[:80]))
  try:
    tokens = np.asarray(_tokenizer(tokenizer_path).encode(text), dtype=np.int32)
    if item.audio is not None:
      wave = audio_lib.condition_waveform(item.audio, item.audio_rate, params.sample_rate,
                                          name=item.key, max_seconds=params.max_audio_seconds)
    else:
      wave = audio_lib.load_audio(item.audio_path, params.sample_rate,
                                  max_seconds=params.max_audio_seconds)
  except audio_lib.AudioError as e:
    return skip(e.reason, e.detail)
  except Exception as e:  # noqa: BLE001 - one bad item must not stop the build
    return skip(FEATURE_ERROR, f"{type(e).__name__}: {e}")
  if tokens.size == 0:
    return skip(UNSPEAKABLE_TRANSCRIPT, f"no tokens for {text!r}")
  example = {
      "id": item.key,
      "index": np.int64(item.index),
      "text": text,
      "speaker": item.speaker,
      "duration": np.float32(wave.size / params.sample_rate),
      "num_samples": np.int32(wave.size),
      "num_frames": np.int32(features_lib.num_frames(wave.size, params.hop_length)),
      "tokens": tokens,
  }
  if store_features:
    try:
      example.update(features_lib.compute_features(wave, params))
    except Exception as e:  # noqa: BLE001
      return skip(FEATURE_ERROR, f"{type(e).__name__}: {e}")
  if store_waveform:
    example["waveform"] = wave
  seconds = wave.size / params.sample_rate
  return ItemResult(item.split, item.index, item.key, example, seconds=seconds)


def featurize_star(args) -> ItemResult:
  """Pool.imap helper: featurize_item(*args)."""
  return featurize_item(*args)
