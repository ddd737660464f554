"""Prepare the training data: corpus (if synthetic), tokenizer, TFDS build with features, report.

  python -m echo_jax.data.prepare --config configs/default.py [--config.data.prepare_workers=4]

Library: `ensure_prepared(config) -> PreparedData`; a no-op (nothing written) when up to date.
Everything lands under config.data.root (default `data/`):
  <root>/echo_speech_corpus/                         the synthetic corpus (dataset echo_speech)
  <root>/tokenizers/<dataset>-<source hash>-<kind><vocab>...    the tokenizer trained on train text
  <root>/tfds/<builder>/<config>/<version>/         the TFDS data (+ echo_index.json)
  <root>/tfds/prepare_report.json                    the last build's report (skips with reasons)

This module imports TensorFlow lazily so the spawned feature workers stay light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from echo_jax.data import features as features_lib
from echo_jax.data.builders import sources
from echo_jax.data.text import is_speakable, normalise_transcript
from echo_jax.data.tokenizer import Tokenizer
from echo_jax.errors import EXIT_USER_ERROR, UserError, debug_requested, user_message

DAMAGED_DATA_MARKER = "prepared data damaged:"


class DamagedDataError(UserError):
  """A prepared record or file does not read; the message names the file and how to rebuild."""

FILE_DATASETS = ("echo_speech", "manifest")
REPORT_FILE = "prepare_report.json"


def _hash(obj: Any, n: int = 10) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _file_hash(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def data_root(config) -> str:
  return os.path.abspath(str(config.data.root))


def tfds_data_dir(config) -> str:
  return os.path.abspath(str(config.data.tfds_data_dir) or os.path.join(data_root(config), "tfds"))


def corpus_dir(config) -> str:
  return os.path.abspath(str(config.data.corpus_dir) or
                         os.path.join(data_root(config), "echo_speech_corpus"))


def ensure_corpus(config) -> str:
  """Synthesises the corpus (build_corpus is a quick no-op when it is complete); returns its folder.

  In the default folder build_corpus keys the contents by the synthesis settings, so changed
  settings rebuild it. An explicit data.corpus_dir that already has a manifest.jsonl is used as
  it is (never rebuilt over).
  """
  d = config.data
  out = corpus_dir(config)
  if d.corpus_dir and os.path.exists(os.path.join(out, "manifest.jsonl")):
    return out
  # Imported here, past the early return: it pulls in scipy.signal and the TTS engines (~2 s),
  # which neither a trainer on an existing corpus nor a spawned prepare worker needs.
  from echo_jax.data.synth_corpus import build_corpus

  snr = float(d.synth_noise_snr_db)
  build_corpus(out, int(d.synth_num_utterances), seed=int(d.synth_seed),
               engines=tuple(d.synth_engines), sox_pitch=bool(d.synth_sox_pitch),
               noise_snr_db=None if snr < 0 else snr, dither=bool(d.synth_dither),
               workers=max(int(d.prepare_workers), 1), progress=True,
               max_seconds=float(d.max_audio_seconds))
  if not os.path.exists(os.path.join(out, "manifest.jsonl")):
    raise RuntimeError(f"corpus synthesis wrote no {out}/manifest.jsonl")
  return out


# ----------------------------------------------------------------------------------------------
# The prepared dataset handle.


@dataclasses.dataclass
class PreparedData:
  """A prepared TFDS dataset and its tokenizer; what the pipeline and the trainer read."""
  dataset: str  # config.data.dataset
  builder_name: str  # echo_speech | manifest | catalog_speech
  config_name: str
  data_dir: str  # the TFDS data dir
  builder_dir: str  # <data_dir>/<builder>/<config>/<version>
  tokenizer_path: str
  split_sizes: dict  # split -> number of examples
  feature_params: dict
  store_features: bool
  store_waveform: bool
  report_path: str

  def load_tokenizer(self):
    return Tokenizer.load(self.tokenizer_path)

  def builder(self):
    import tensorflow_datasets as tfds

    return tfds.builder_from_directory(self.builder_dir)

  def data_source(self, split: str):
    """Random access to a split's examples (numpy dicts), record i = i-th kept item."""
    return self.builder().as_data_source(split=split)

  def shard_of(self, split: str, position: int) -> str:
    """The ArrayRecord file that holds record `position` of `split`."""
    info = self.builder().info.splits[split]
    ends = np.cumsum(info.shard_lengths)
    return str(info.filepaths[int(np.searchsorted(ends, position, side="right"))])

  def read_records(self, source, split: str, positions: list) -> list:
    """source's records at `positions`; a record that does not read raises DamagedDataError
    naming its shard file and how to rebuild."""
    try:
      return (source.__getitems__(positions) if hasattr(source, "__getitems__")
              else [source[p] for p in positions])
    except Exception as e:  # pylint: disable=broad-except - array_record raises several types
      bad = positions[0]
      for position in positions:  # find the record that fails
        try:
          source[position]
        except Exception:  # pylint: disable=broad-except
          bad = position
          break
      try:
        where = self.shard_of(split, bad)
      except Exception:  # pylint: disable=broad-except - dataset_info may be the damage
        where = self.builder_dir
      raise DamagedDataError(
          f"{DAMAGED_DATA_MARKER} record {bad} of split {split!r} in {where} does not read "
          f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
          f"rebuild it: rm -r {self.builder_dir} and rerun the same command (or python -m "
          "echo_jax.data.prepare --config CONFIG)") from e

  def index(self) -> dict:
    """echo_index.json of the build (rebuilt from the records if a build stopped before it or
    the file is damaged; a damaged one is kept beside it as .damaged)."""
    path = os.path.join(self.builder_dir, _index_file())
    if os.path.exists(path):
      try:
        with open(path) as f:
          index = json.load(f)
        if set(index["splits"]) >= {s for s, n in self.split_sizes.items() if n}:
          return index
        problem = "splits missing"
      except (ValueError, KeyError, TypeError) as e:  # truncated / not JSON / wrong layout
        problem = f"{type(e).__name__}: {e}"
      os.replace(path, path + ".damaged")
      logging.warning("%s is damaged (%s); kept as %s.damaged and rebuilt from the records",
                      path, problem, path)
    if not os.path.exists(path):
      logging.warning("%s is missing; scanning the records for it", path)
      splits = {}
      for split in self.split_sizes:
        source = self.data_source(split)
        records = self.read_records(source, split, list(range(len(source))))
        splits[split] = {"index": [int(r["index"]) for r in records],
                         "num_frames": [int(r["num_frames"]) for r in records],
                         "num_samples": [int(r["num_samples"]) for r in records],
                         "num_tokens": [len(r["tokens"]) for r in records]}
      _write_index(path, {"splits": splits, "skipped": {}, "skip_counts": {}})
    with open(path) as f:
      return json.load(f)

  def split_lengths(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(example index [N] int64, num_frames [N] int32) in record order."""
    if self.split_sizes.get(split, 0) == 0:
      raise UserError(f"split {split!r} has no examples in {self.builder_dir} "
                       f"(splits: {self.split_sizes}); see {self.report_path}")
    info = self.index()["splits"][split]
    return np.asarray(info["index"], np.int64), np.asarray(info["num_frames"], np.int32)

  def split_token_counts(self, split: str) -> np.ndarray:
    """num_tokens [N] int32 in record order: the transcript's ids before BOS/EOS (what
    data.bucket_target_lengths buckets by). A build whose index predates them is read once and
    its index file gains them."""
    self.split_lengths(split)  # the same clear error for an empty split
    path = os.path.join(self.builder_dir, _index_file())
    index = self.index()
    info = index["splits"][split]
    if "num_tokens" not in info:
      from tqdm.auto import tqdm

      source = self.data_source(split)
      counts = []
      with tqdm(total=len(source), desc=f"token counts of {split} (stored once)", unit="utt",
                dynamic_ncols=True) as bar:
        for start in range(0, len(source), 256):
          positions = list(range(start, min(start + 256, len(source))))
          counts += [len(r["tokens"]) for r in self.read_records(source, split, positions)]
          bar.update(len(positions))
      info["num_tokens"] = counts
      _write_index(path, index)
    return np.asarray(info["num_tokens"], np.int32)


def _write_index(path: str, index: dict) -> None:
  """Replaces the index file atomically: readers (other hosts, other jobs) see old or new."""
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w") as f:
    json.dump(index, f)
  os.replace(tmp, path)


def _index_file() -> str:
  # imports tensorflow_datasets: spawned prepare workers re-import this module, must start light
  from echo_jax.data.builders.speech import INDEX_FILE

  return INDEX_FILE


# ----------------------------------------------------------------------------------------------
# Tokenizer.


def _train_texts(config, items_by_split) -> list[str]:
  d = config.data
  if items_by_split is not None:
    raw = [it.raw_text for it in items_by_split.get("train", [])]
  else:
    raw = sources.catalog_texts(str(d.dataset), str(d.catalog_data_dir) or None,
                                str(d.tfds_splits["train"]))
  texts = [normalise_transcript(t) for t in raw if t and is_speakable(t)]
  if not texts:
    raise UserError(f"dataset {d.dataset!r}: the train split has no usable transcript to train "
                     "the tokenizer on")
  return texts


def ensure_tokenizer(config, source_fingerprint: str, items_by_split) -> str:
  """Trains the tokenizer on the train transcripts unless it exists; returns its path."""
  d = config.data
  kind = str(d.tokenizer)
  name = f"{d.dataset}-{source_fingerprint[:10]}-{kind}"
  if kind == "sentencepiece":
    name += f"{int(d.vocab_size)}-{d.spm_model_type}"
  prefix = os.path.join(data_root(config), "tokenizers", name)
  existing = _tokenizer_file(prefix)
  if existing:
    return existing
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  texts = _train_texts(config, items_by_split)
  logging.info("training a %s tokenizer on %d transcripts -> %s", kind, len(texts), prefix)
  Tokenizer.train(texts, prefix, kind=kind, vocab_size=int(d.vocab_size),
                  model_type=str(d.spm_model_type))
  path = _tokenizer_file(prefix)
  if not path:
    raise RuntimeError(f"tokenizer training wrote nothing at {prefix}*")
  return path


def _tokenizer_file(prefix: str) -> str:
  for suffix in (".model", ".json", ""):
    if os.path.isfile(prefix + suffix):
      return prefix + suffix
  return ""


# ----------------------------------------------------------------------------------------------
# The build.


def _builder_kind(dataset: str) -> str:
  return dataset if dataset in FILE_DATASETS else "catalog_speech"


def _source(config):
  """(source string, its fingerprint, items per split or None for catalog datasets)."""
  d = config.data
  dataset = str(d.dataset)
  if dataset == "echo_speech":
    folder = ensure_corpus(config)
    items = sources.corpus_items(folder)
    return folder, sources.items_fingerprint(items), items
  if dataset == "manifest":
    path = os.path.abspath(str(d.manifest_path)) if d.manifest_path else ""
    items = sources.manifest_items(path)
    return path, sources.items_fingerprint(items), items
  builder = sources.catalog_builder(dataset, str(d.catalog_data_dir) or None)
  fingerprint = _hash([dataset, str(builder.version), str(builder.data_dir),
                       dict(d.tfds_splits)], 64)
  return dataset, fingerprint, None


class _DropCustomConfigWarning(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Using custom data configuration")


@contextlib.contextmanager
def _quiet_custom_config_warning():
  absl_logger = logging.getLogger("absl")
  drop = _DropCustomConfigWarning()
  absl_logger.addFilter(drop)
  try:
    yield
  finally:
    absl_logger.removeFilter(drop)


def _split_sizes(builder) -> dict:
  return {name: int(info.num_examples) for name, info in builder.info.splits.items()}


def builder_config_for(config):
  """(builder kind, SpeechConfig) of config.data; makes the corpus and tokenizer if missing.

  The config's name is a hash of everything that determines the stored data (feature parameters,
  source contents, tokenizer file, stored streams); batching fields do not enter it.
  """
  # imports tensorflow_datasets: spawned prepare workers re-import this module, must start light
  from echo_jax.data.builders import speech

  d = config.data
  source, source_fingerprint, items = _source(config)
  tokenizer_path = ensure_tokenizer(config, source_fingerprint, items)
  params = features_lib.FeatureParams.from_config(d).as_dict()
  store_features = not bool(d.on_the_fly_features)
  identity = {"features": params, "source": source_fingerprint,
              "tokenizer": _file_hash(tokenizer_path), "store_features": store_features,
              "store_waveform": bool(d.store_waveform), "version": speech.DATA_VERSION}
  builder_config = speech.SpeechConfig(
      name=f"{int(d.n_mels)}mel-{_hash(identity)}", version=speech.DATA_VERSION,
      description=f"{d.dataset} prepared by echo_jax", features=params, source=source,
      source_fingerprint=source_fingerprint, catalog_data_dir=str(d.catalog_data_dir),
      catalog_splits={k: str(v) for k, v in dict(d.tfds_splits).items()},
      tokenizer_path=tokenizer_path, tokenizer_fingerprint=identity["tokenizer"],
      store_features=store_features, store_waveform=bool(d.store_waveform),
      workers=int(d.prepare_workers))
  return _builder_kind(str(d.dataset)), builder_config


def ensure_prepared(config) -> PreparedData:
  """Makes sure config.data's dataset is prepared (corpus, tokenizer, TFDS build); returns it."""
  # imports tensorflow_datasets: spawned prepare workers re-import this module, must start light
  from echo_jax.data.builders import speech

  d = config.data
  kind, builder_config = builder_config_for(config)
  tokenizer_path = builder_config.tokenizer_path
  params = builder_config.features
  store_features = builder_config.store_features
  data_dir = tfds_data_dir(config)
  with _quiet_custom_config_warning():  # every config here is custom: TFDS warns each time
    try:
      builder = speech.BUILDERS[kind](config=builder_config, data_dir=data_dir)
    except Exception as e:  # pylint: disable=broad-except - protobuf/JSON errors of TFDS
      built = os.path.join(data_dir, kind, builder_config.name)
      infos = [os.path.join(built, v, "dataset_info.json") for v in sorted(os.listdir(built))
               ] if os.path.isdir(built) else []
      if not infos:
        raise
      raise DamagedDataError(
          f"{DAMAGED_DATA_MARKER} {' / '.join(infos)} does not load ({type(e).__name__}: "
          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); rebuild it: rm -r "
          f"{os.path.dirname(infos[-1])} and rerun the same command (or python -m "
          "echo_jax.data.prepare --config CONFIG)") from e
  report_path = os.path.join(data_dir, REPORT_FILE)
  if not builder.is_prepared():
    logging.info("preparing %s/%s in %s", kind, builder_config.name, data_dir)
    builder.download_and_prepare()
    _write_report(report_path, builder, config, tokenizer_path)
  return PreparedData(
      dataset=str(d.dataset), builder_name=kind, config_name=builder_config.name,
      data_dir=data_dir, builder_dir=str(builder.data_dir), tokenizer_path=tokenizer_path,
      split_sizes=_split_sizes(builder), feature_params=params, store_features=store_features,
      store_waveform=bool(d.store_waveform) or not store_features, report_path=report_path)


def _write_report(path: str, builder, config, tokenizer_path: str) -> None:
  # imports tensorflow_datasets: spawned prepare workers re-import this module, must start light
  from echo_jax.data.builders.speech import INDEX_FILE

  with open(os.path.join(str(builder.data_dir), INDEX_FILE)) as f:
    index = json.load(f)
  report = {
      "dataset": str(config.data.dataset),
      "builder_dir": str(builder.data_dir),
      "tokenizer_path": tokenizer_path,
      "split_sizes": _split_sizes(builder),
      "skip_counts": index["skip_counts"],
      "skipped": index["skipped"],
      "audio_seconds": index["audio_seconds"],
      "wall_seconds": index["wall_seconds"],
      "audio_seconds_per_second": index["audio_seconds_per_second"],
      "workers": index["workers"],
      "frames_per_split": {s: {"max": max(v["num_frames"]), "mean": float(np.mean(v["num_frames"]))}
                           for s, v in index["splits"].items() if v["num_frames"]},
  }
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(report, f, indent=1)
  os.replace(tmp, path)
  logging.info("prepare report: %s (splits %s, skipped %s)", path, report["split_sizes"],
               report["skip_counts"])


def main(argv=None) -> None:
  from absl import app, flags
  from ml_collections import config_flags

  config_flag = config_flags.DEFINE_config_file("config", None, "config file with get_config()")
  flags.mark_flags_as_required(["config"])

  debug = flags.DEFINE_bool("debug", False, "Show the traceback of user errors too.")

  def run(args):
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments: {args[1:]}")
    logging.getLogger().setLevel(logging.INFO)
    try:
      prepared = ensure_prepared(config_flag.value)
    except UserError as e:  # a bad manifest line, missing audio folder...: the message says how
      if debug.value or debug_requested([]):
        raise
      print(f"error: {user_message(e)}", file=sys.stderr)
      sys.exit(EXIT_USER_ERROR)
    print(json.dumps({"builder_dir": prepared.builder_dir, "tokenizer": prepared.tokenizer_path,
                      "split_sizes": prepared.split_sizes, "report": prepared.report_path},
                     indent=1))

  app.run(run, argv=argv or sys.argv)


if __name__ == "__main__":
  main()
