"""The utterances `evaluate` scores, with their features, references and breakdown metadata.

  examples = split_examples(config, "test")                 # a prepared split (stored features)
  examples = manifest_examples(read_manifest(path), config)  # any manifest layout (audio files)

A prepared split's examples carry the stored features and token ids; a manifest's are computed
from the audio as `transcribe` does (long audio chunked). Metadata (engine, speaker, text source,
augmentations, expected F0) comes from the JSONL manifest joined on the utterance id, for the
per-group breakdown. A run trained with data.f0_source = "shuffled" gets another utterance's F0,
as in its training. Also the padded bucket batches the encoder-only passes read.
"""

import dataclasses
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from echo_jax.data import f0_source
from echo_jax.data import pipeline
from echo_jax.data import prepare
from echo_jax.data.builders import sources
from echo_jax.inference import audio_input
from echo_jax.inference import error_breakdown
from echo_jax.inference.scoring import normalise


@dataclasses.dataclass
class Example:
  key: str  # utterance id or audio path
  reference: str  # the transcript as stored
  items: List[Dict[str, np.ndarray]]  # chunk features (one item unless long manifest audio)
  bounds: List[tuple]  # chunk sample bounds (for stitching)
  result: Optional[audio_input.FileResult] = None
  token_ids: Optional[np.ndarray] = None  # stored target ids (prepared splits); else encoded
  # engine, speaker, augment, ... (error_breakdown.MANIFEST_FIELDS) and, once evaluated, the
  # measured f0_median_hz and f0_band
  metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)


def example_tokens(example: Example, tokenizer, max_length: int):
  """(decoder_input_tokens, decoder_target_tokens) [max_length] as the training pipeline builds
  them: BOS + ids / ids + EOS, pad 0; ids are the stored ones, else the normalised reference's."""
  ids = example.token_ids
  if ids is None:
    ids = np.asarray(tokenizer.encode(normalise(example.reference)), np.int32)
  return pipeline.target_tokens(ids, max_length)


def bucket_batches(single: Sequence[Example], config, batch_size: int):
  """(examples, padded batch) per `batch_size` single-chunk examples of one length bucket, each
  batch padded to its bucket edge and to `batch_size` rows (one compile per bucket)."""
  items = [ex.items[0] for ex in single]
  for group, batch in audio_input.padded_batches(items, config, batch_size):
    yield [single[i] for i in group], batch


def read_manifest(path: str, split: Optional[str] = None) -> List[Dict[str, Any]]:
  """Rows {id, path, text, split, metadata} of a manifest in any layout the data part reads
  (echo_jax.data.builders.sources.manifest_items: .jsonl, .tsv with or without header, LibriSpeech
  or Common Voice folders); `split` keeps only that split. metadata: the row's breakdown fields
  (manifest_metadata for JSONL files, else the speaker when the layout names one)."""
  path = os.path.abspath(path)
  items = sources.manifest_items(path)
  extra = manifest_metadata(path) if os.path.isfile(path) else {}
  wanted = [sources.canonical_split(split, "--split")] if split else list(sources.SPLITS)
  rows = []
  for name in wanted:
    for item in items.get(name, []):
      metadata = {"speaker": item.speaker} if item.speaker else {}
      metadata.update(extra.get(item.key, {}))
      rows.append({"id": item.key, "path": item.audio_path, "text": item.raw_text, "split": name,
                   "metadata": metadata})
  return rows


def manifest_metadata(path: str) -> Dict[str, Dict[str, Any]]:
  """{utterance id: {field: value}} of error_breakdown.MANIFEST_FIELDS from a JSONL manifest,
  ids as the data part derives them. Anything else (TSV, a folder, a missing file, a line that is
  not a JSON object) gives no metadata instead of an error: the breakdown is optional."""
  if not path.endswith((".jsonl", ".json")):
    return {}
  out = {}
  try:
    with open(path, encoding="utf-8") as handle:
      for line in handle:
        try:
          row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
          continue
        if not isinstance(row, dict):
          continue
        key = row.get("id")
        if key is None:  # the same fallback id as sources.jsonl_items
          audio = next((row[k] for k in sources._PATH_KEYS if row.get(k) is not None), None)
          if audio is None:
            continue
          key = os.path.splitext(str(audio))[0]
        out[str(key)] = {k: row[k] for k in error_breakdown.MANIFEST_FIELDS if k in row}
  except OSError as e:
    print(f"no breakdown metadata from {path}: {e}", file=sys.stderr)
    return {}
  return out


def source_manifest(config) -> Optional[str]:
  """The JSONL manifest a prepared dataset was built from, when it has one."""
  dataset = str(config.data.dataset)
  if dataset == "echo_speech":
    return os.path.join(prepare.corpus_dir(config), "manifest.jsonl")
  if dataset == "manifest" and str(config.data.manifest_path).endswith((".jsonl", ".json")):
    return os.path.abspath(str(config.data.manifest_path))
  return None


def manifest_examples(rows: Sequence[Dict[str, Any]], config) -> List[Example]:
  """Features of each row's audio; with data.f0_source = "shuffled" (a run trained on another
  utterance's F0) each example then gets another row's F0 (shuffle_f0)."""
  return examples_from_files(rows, [audio_input.prepare_file(row["path"], config) for row in rows],
                             config)


def examples_from_files(rows: Sequence[Dict[str, Any]],
                        files: Sequence[audio_input.PreparedFile], config) -> List[Example]:
  """Examples of manifest rows from their already prepared files (copied, so the same files can
  be evaluated by several runs), F0 shuffled for a data.f0_source = "shuffled" run."""
  examples = [Example(row["id"], row["text"], [dict(item) for item in prepared.items],
                      list(prepared.bounds), dataclasses.replace(prepared.result),
                      metadata=dict(row.get("metadata") or {}))
              for row, prepared in zip(rows, files)]
  if str(config.data.get("f0_source", "own")) == "shuffled":
    shuffle_f0(examples)
  return examples


def shuffle_f0(examples: Sequence[Example]) -> None:
  """Feeds each readable example the F0 of another (f0_source's donor rule over the readable
  examples in order, the donor's chunk tracks joined and stretched over this example's chunks),
  as the training pipeline did for a run with data.f0_source = "shuffled"."""
  usable = [ex for ex in examples if ex.items]
  tracks = [np.concatenate([np.ravel(item["f0"]) for item in ex.items]) for ex in usable]
  for ex, track in zip(usable, f0_source.shuffled_tracks(tracks)):
    ends = np.cumsum([np.ravel(item["f0"]).size for item in ex.items])[:-1]
    for item, part in zip(ex.items, np.split(track, ends)):
      item["f0"] = part.reshape(np.shape(item["f0"])).astype(np.float32)


def split_examples(config, split: str, max_examples: int = -1) -> List[Example]:
  """Prepared TFDS examples of a split (the features the model trained on): the first
  `max_examples` (-1: all) of those data.eval_min_f0_hz keeps (all by default)."""
  manifest = source_manifest(config)
  by_id = manifest_metadata(manifest) if manifest else {}
  examples = []
  prepared = prepare.ensure_prepared(config)
  selected = pipeline.eval_selection(config, prepared, split, max_examples)
  wanted = int(selected.sum())
  for position, record in enumerate(pipeline.iterate_examples(config, split, prepared=prepared)):
    if len(examples) == wanted:
      break
    if not selected[position]:  # beyond max_examples, or outside data.eval_min_f0_hz
      continue
    item = {"mel": np.asarray(record["mel"], np.float32),
            "f0": np.asarray(record["f0"], np.float32)}
    if "waveform" in tuple(config.model.features):
      item["waveform"] = np.asarray(record["waveform"], np.float32)
    key = record["id"].decode() if isinstance(record["id"], bytes) else str(record["id"])
    text = record["text"].decode() if isinstance(record["text"], bytes) else str(record["text"])
    seconds = item["mel"].shape[0] * int(config.data.hop_length) / int(config.data.sample_rate)
    speaker = record.get("speaker", "")
    speaker = speaker.decode() if isinstance(speaker, bytes) else str(speaker)
    metadata = {"speaker": speaker} if speaker else {}
    metadata.update(by_id.get(key, {}))
    examples.append(Example(key, text, [item], [(0, 0)],
                            audio_input.FileResult(path=key, num_chunks=1, duration_s=seconds),
                            token_ids=np.asarray(record["tokens"], np.int32), metadata=metadata))
  return examples


def add_measured_f0(example: Example) -> None:
  """Sets metadata f0_median_hz (median over the voiced frames of the features the example is
  decoded from, all chunks) and f0_band (of that, else of the manifest's expected F0)."""
  f0 = [np.ravel(item["f0"]) for item in example.items if "f0" in item]
  median = error_breakdown.median_voiced_f0(np.concatenate(f0)) if f0 else None
  if median is not None:
    example.metadata[error_breakdown.MEASURED_F0_FIELD] = round(median, 1)
  band = error_breakdown.utterance_f0_band(example.metadata)
  if band is not None:
    example.metadata["f0_band"] = band
