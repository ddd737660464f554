"""Where utterances come from: the synthetic corpus, a user manifest or folder, a TFDS catalog.

Each source lists `SourceItem`s per split (text only; audio is read later, in the worker
processes). `index` is the item's position in its split's list, which is stable for the same
input, so it identifies the example in the prepared data (`example_index` in batches).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
import zlib
from typing import Iterable, Iterator

import numpy as np

from echo_jax.errors import MissingInputError, UserError

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "validation", "valid": "validation",
                  "val": "validation", "validation": "validation", "test": "test", "eval": "test"}
_PATH_KEYS = ("path", "audio", "audio_filepath", "file", "filename", "wav")
_TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "raw_text")
_SPEAKER_KEYS = ("speaker", "speaker_id", "client_id")


@dataclasses.dataclass
class SourceItem:
  index: int  # position in its split's item list
  key: str  # the utterance id
  split: str
  raw_text: str
  speaker: str = ""
  audio_path: str = ""  # a file to decode, or
  audio: np.ndarray | None = None  # samples already in memory (catalog datasets)
  audio_rate: int = 0


def canonical_split(name: str, where: str = "") -> str:
  split = _SPLIT_ALIASES.get(str(name).strip().lower())
  if split is None:
    raise UserError(f"{where}: unknown split {name!r}; use one of {sorted(_SPLIT_ALIASES)}")
  return split


def hash_split(key: str) -> str:
  """Split for items without one: 90 % train, 5 % validation, 5 % test by a hash of the id."""
  bucket = zlib.crc32(key.encode("utf-8")) % 100
  return "train" if bucket < 90 else ("validation" if bucket < 95 else "test")


def _first(record: dict, keys: Iterable[str], default=None):
  for k in keys:
    if k in record and record[k] is not None:
      return record[k]
  return default


def _group(records: list[dict], where: str) -> dict[str, list[SourceItem]]:
  """records (key, split, raw_text, speaker, audio_path) -> items per split with indices."""
  out: dict[str, list[SourceItem]] = {s: [] for s in SPLITS}
  seen = set()
  for r in records:
    if r["key"] in seen:
      raise UserError(f"{where}: duplicate utterance id {r['key']!r}; ids must be unique")
    seen.add(r["key"])
    items = out[r["split"]]
    items.append(SourceItem(index=len(items), key=r["key"], split=r["split"],
                            raw_text=r["raw_text"], speaker=r["speaker"],
                            audio_path=r["audio_path"]))
  return out


def corpus_items(corpus_dir: str) -> dict[str, list[SourceItem]]:
  """Items of a synthetic corpus (<corpus_dir>/manifest.jsonl), in manifest order."""
  return jsonl_items(os.path.join(corpus_dir, "manifest.jsonl"), text_keys=("text",) + _TEXT_KEYS)


def jsonl_items(path: str, text_keys=_TEXT_KEYS) -> dict[str, list[SourceItem]]:
  base = os.path.dirname(os.path.abspath(path))
  records = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{line_no}"
      try:
        r = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f"{where}: not JSON ({e})") from e
      audio = _first(r, _PATH_KEYS)
      if audio is None:
        raise UserError(f"{where}: no audio path field (one of {_PATH_KEYS})")
      key = str(r.get("id", os.path.splitext(str(audio))[0]))
      split = canonical_split(r["split"], where) if r.get("split") else hash_split(key)
      records.append(dict(key=key, split=split, raw_text=str(_first(r, text_keys, "")),
                          speaker=str(_first(r, _SPEAKER_KEYS, "")),
                          audio_path=os.path.join(base, str(audio))))
  return _group(records, path)


def tsv_items(path: str, audio_dir: str | None = None, split: str | None = None
              ) -> dict[str, list[SourceItem]]:
  """A TSV with a header naming a path and a transcript column, or headerless path<TAB>text."""
  base = audio_dir or os.path.dirname(os.path.abspath(path))
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
  rows = [r for r in rows if r and any(c.strip() for c in r)]
  if not rows:
    return {s: [] for s in SPLITS}
  header = [c.strip().lower() for c in rows[0]]
  if any(k in header for k in _PATH_KEYS):
    col = {name: i for i, name in enumerate(header)}
    body = [dict((name, r[i] if i < len(r) else "") for name, i in col.items()) for r in rows[1:]]
  else:
    body = [{"path": r[0], "text": r[1] if len(r) > 1 else ""} for r in rows]
  records = []
  for line_no, r in enumerate(body, 2):
    where = f"{path}:{line_no}"
    audio = _first(r, _PATH_KEYS)
    if not audio:
      raise UserError(f"{where}: empty audio path")
    key = str(r.get("id") or os.path.splitext(audio)[0])
    if split:
      item_split = split
    else:
      item_split = canonical_split(r["split"], where) if r.get("split") else hash_split(key)
    records.append(dict(key=key, split=item_split, raw_text=str(_first(r, _TEXT_KEYS, "")),
                        speaker=str(_first(r, _SPEAKER_KEYS, "")),
                        audio_path=os.path.join(base, audio)))
  return _group(records, path)


def librispeech_items(root: str) -> dict[str, list[SourceItem]]:
  """LibriSpeech layout: <subset>/<speaker>/<chapter>/<spk>-<chap>.trans.txt + <id>.flac.

  The split comes from the subset folder: train-* -> train, dev-* -> validation, test-* -> test.
  """
  records = []
  for trans in sorted(glob.glob(os.path.join(root, "**", "*.trans.txt"), recursive=True)):
    rel = os.path.relpath(trans, root).split(os.sep)
    subset = next((p for p in rel if p.split("-")[0] in ("train", "dev", "test")), "train")
    split = canonical_split(subset.split("-")[0], trans)
    folder = os.path.dirname(trans)
    with open(trans, encoding="utf-8") as f:
      for line in f:
        if not line.strip():
          continue
        key, _, text = line.strip().partition(" ")
        candidates = [os.path.join(folder, key + ext) for ext in (".flac", ".wav", ".mp3", ".ogg")]
        audio = next((c for c in candidates if os.path.exists(c)), candidates[0])
        records.append(dict(key=key, split=split, raw_text=text, speaker=key.split("-")[0],
                            audio_path=audio))
  return _group(records, root)


def common_voice_items(root: str) -> dict[str, list[SourceItem]]:
  """Common Voice layout: train.tsv / dev.tsv / test.tsv (path, sentence, client_id) + clips/."""
  out: dict[str, list[SourceItem]] = {s: [] for s in SPLITS}
  clips = os.path.join(root, "clips")
  for name, split in (("train.tsv", "train"), ("dev.tsv", "validation"), ("test.tsv", "test")):
    path = os.path.join(root, name)
    if os.path.exists(path):
      audio_dir = clips if os.path.isdir(clips) else root
      out[split] = tsv_items(path, audio_dir=audio_dir, split=split)[split]
  return out


def manifest_items(manifest_path: str) -> dict[str, list[SourceItem]]:
  """Any supported user layout: a .jsonl / .tsv file, or a LibriSpeech / Common Voice folder."""
  if not manifest_path:
    raise UserError("data.manifest_path is empty; point it at a .jsonl/.tsv manifest or a "
                     "LibriSpeech / Common Voice folder (docs/data.md)")
  if os.path.isdir(manifest_path):
    tsvs = ("train.tsv", "dev.tsv", "test.tsv")
    if any(os.path.exists(os.path.join(manifest_path, n)) for n in tsvs):
      return common_voice_items(manifest_path)
    if glob.glob(os.path.join(manifest_path, "**", "*.trans.txt"), recursive=True):
      return librispeech_items(manifest_path)
    raise UserError(f"{manifest_path}: a folder without train/dev/test.tsv (Common Voice) or "
                     "*.trans.txt files (LibriSpeech); write a manifest.jsonl instead "
                     "(docs/data.md)")
  if not os.path.exists(manifest_path):
    raise MissingInputError(f"data.manifest_path {manifest_path!r} does not exist")
  if manifest_path.endswith((".jsonl", ".json")):
    return jsonl_items(manifest_path)
  return tsv_items(manifest_path)


def items_fingerprint(items: dict[str, list[SourceItem]]) -> str:
  """A hash of every item's id, split, text and audio path (file sources' identity)."""
  h = hashlib.sha256()
  for split in SPLITS:
    for it in items.get(split, []):
      row = [split, it.index, it.key, it.raw_text, it.speaker, it.audio_path]
      h.update(json.dumps(row).encode())
  return h.hexdigest()


# TFDS catalog datasets -----------------------------------------------------------------------


def catalog_keys(info) -> tuple[str, str, str | None]:
  """(audio feature, text feature, speaker feature or None) of a catalog dataset's features."""
  import tensorflow_datasets as tfds

  audio_key = next((k for k, f in info.features.items()
                    if isinstance(f, tfds.features.Audio)), None)
  text_key = next((k for k in _TEXT_KEYS if k in info.features), None)
  if audio_key is None or text_key is None:
    raise UserError(f"TFDS dataset {info.name} has no Audio feature and a text feature "
                     f"({_TEXT_KEYS}); its features: {list(info.features)}")
  speaker_key = next((k for k in _SPEAKER_KEYS if k in info.features), None)
  return audio_key, text_key, speaker_key


def catalog_builder(name: str, data_dir: str | None):
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir or None)
  if not builder.is_prepared():
    raise MissingInputError(
        f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; download it first "
        f"(`tfds build {name} --data_dir ...`) and set data.catalog_data_dir (docs/data.md)")
  return builder


def catalog_texts(name: str, data_dir: str | None, catalog_split: str) -> list[str]:
  """The raw transcripts of one split, audio not decoded."""
  import tensorflow_datasets as tfds

  builder = catalog_builder(name, data_dir)
  audio_key, text_key, _ = catalog_keys(builder.info)
  ds = builder.as_dataset(split=catalog_split, shuffle_files=False,
                          decoders={audio_key: tfds.decode.SkipDecoding()})
  return [_as_text(ex[text_key]) for ex in tfds.as_numpy(ds)]


def catalog_items(name: str, data_dir: str | None, catalog_split: str, split: str
                  ) -> tuple[Iterator[SourceItem], int]:
  """A lazy stream of the split's items (audio in memory) and its length."""
  import tensorflow_datasets as tfds

  builder = catalog_builder(name, data_dir)
  audio_key, text_key, speaker_key = catalog_keys(builder.info)
  rate = int(builder.info.features[audio_key].sample_rate or 16000)
  total = builder.info.splits[catalog_split].num_examples
  ds = builder.as_dataset(split=catalog_split, shuffle_files=False)

  def stream():
    for index, ex in enumerate(tfds.as_numpy(ds)):
      key = _as_text(ex["id"]) if "id" in ex else f"{catalog_split}-{index}"
      yield SourceItem(index=index, key=key, split=split, raw_text=_as_text(ex[text_key]),
                       speaker=_as_text(ex[speaker_key]) if speaker_key else "",
                       audio=np.asarray(ex[audio_key]), audio_rate=rate)

  return stream(), total


def _as_text(value) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray) and value.shape == ():
    return _as_text(value.item())
  return str(value)
