"""TFDS builders of featurised speech: `echo_speech`, `manifest` and `catalog_speech`.

All three store the same example (see `example_features`): log-mel, F0, voicing, transcript
ids (+ optional waveform) per utterance. They differ only in where utterances come from:
- `echo_speech`: the offline synthetic corpus (<corpus_dir>/manifest.jsonl + wavs),
- `manifest`: a user's .jsonl/.tsv manifest or LibriSpeech / Common Voice folder,
- `catalog_speech`: a TFDS catalog dataset already downloaded (e.g. librispeech).

A builder config (`SpeechConfig`) carries every parameter that determines the stored data; its
name is a hash of them, so different feature settings never share a directory and an unchanged
setting is found prepared. Features are computed in a pool of spawned processes, items in the
order of their split's list; TFDS shuffling is disabled so record i is the i-th kept item.

After a build, `<builder data_dir>/echo_index.json` holds per split the kept items' `index`,
`num_frames`, `num_samples` and `num_tokens` in record order (the pipeline's bucketing plan needs
no pass over the data) and every skipped item with its reason.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import time
import types
from typing import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from echo_jax.data import features as features_lib
from echo_jax.data.builders import featurize, sources
from echo_jax.errors import MissingInputError, UserError

INDEX_FILE = "echo_index.json"
ITEM_TIMEOUT_S = 900  # one utterance of at most max_audio_seconds takes well under a second
DATA_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class SpeechConfig(tfds.core.BuilderConfig):
  """Everything that determines a prepared dataset (its name is a hash of these)."""
  features: dict = dataclasses.field(default_factory=lambda: features_lib.FeatureParams().as_dict())
  source: str = ""  # corpus dir | manifest path/folder | catalog dataset name
  source_fingerprint: str = ""  # hash of the source's items (or catalog name/version)
  catalog_data_dir: str = ""
  catalog_splits: dict = dataclasses.field(
      default_factory=lambda: dict(zip(sources.SPLITS, sources.SPLITS)))
  tokenizer_path: str = ""
  tokenizer_fingerprint: str = ""
  store_features: bool = True  # False: waveform only, features on the fly in the pipeline
  store_waveform: bool = False
  workers: int = 2  # not part of the identity


def example_features(config: SpeechConfig) -> tfds.features.FeaturesDict:
  n_mels = int(config.features["n_mels"])
  spec = {
      "id": tfds.features.Text(),
      "index": np.int64,
      "text": tfds.features.Text(),
      "speaker": tfds.features.Text(),
      "duration": np.float32,
      "num_samples": np.int32,
      "num_frames": np.int32,
      "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
  }
  if config.store_features:
    spec["mel"] = tfds.features.Tensor(shape=(None, n_mels), dtype=np.float32)
    spec["f0"] = tfds.features.Tensor(shape=(None,), dtype=np.float32)
    spec["voiced"] = tfds.features.Tensor(shape=(None,), dtype=np.bool_)
  if config.store_waveform or not config.store_features:
    spec["waveform"] = tfds.features.Tensor(shape=(None,), dtype=np.float32)
  return tfds.features.FeaturesDict(spec)


@contextlib.contextmanager
def _main_module_hidden():
  """Spawned workers re-import the parent's __main__ (a training script, or a script without a
  main guard, which would recurse). The workers need only featurize, so while they start,
  __main__ is a bare module with nothing to import."""
  main = sys.modules.get("__main__")
  sys.modules["__main__"] = types.ModuleType("__main__")
  try:
    yield
  finally:
    sys.modules["__main__"] = main


class _Ordered:
  """Ordered map over a process pool with at most `window` items in flight (bounded memory)."""

  def __init__(self, pool, window: int):
    self.pool = pool
    self.window = max(int(window), 1)

  def map(self, fn, args: Iterable) -> Iterator:
    if self.pool is None:
      for a in args:
        yield fn(a)
      return
    pending = collections.deque()
    for a in args:
      pending.append(self.pool.apply_async(fn, (a,)))
      if len(pending) >= self.window:
        yield self._get(pending.popleft())
    while pending:
      yield self._get(pending.popleft())

  @staticmethod
  def _get(result):
    try:  # a worker killed mid-item (e.g. out of memory) would otherwise leave .get() waiting
      return result.get(timeout=ITEM_TIMEOUT_S)
    except multiprocessing.TimeoutError as e:
      raise RuntimeError(f"a feature worker gave no result in {ITEM_TIMEOUT_S} s (killed, e.g. "
                         "out of memory?); rerun with fewer data.prepare_workers") from e


class SpeechBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared logic; subclasses define `_split_items`."""

  VERSION = tfds.core.Version(DATA_VERSION)
  RELEASE_NOTES = {DATA_VERSION: "Log-mel, DIO/StoneMask F0, voicing, transcript ids (+ waveform)."}
  # No download checksums to look up; TFDS's lookup would import the py<3.9 backport
  # importlib_resources, which is not installed.
  code_path = None

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self._runner = _Ordered(None, 1)
    self._stats = None

  # -- subclass hook --------------------------------------------------------------------------
  def _split_items(self) -> dict[str, tuple[Iterable[sources.SourceItem], int]]:
    raise NotImplementedError

  # -- TFDS -----------------------------------------------------------------------------------
  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=example_features(cfg),
        description=f"{cfg.description or ''}\nfeature parameters: {json.dumps(cfg.features)}",
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict({
            "features": cfg.features, "source": cfg.source, "tokenizer_path": cfg.tokenizer_path,
            "store_features": cfg.store_features, "store_waveform": cfg.store_waveform}),
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    if not cfg.tokenizer_path or not os.path.exists(cfg.tokenizer_path):
      raise MissingInputError(
          f"tokenizer {cfg.tokenizer_path!r} is missing; build data with "
          "`python -m echo_jax.data.prepare --config ...`, which trains it first")
    generators = {}
    for split, (items, total) in self._split_items().items():
      stream = self._featurized(split, items, total)
      first = next(stream, None)  # TFDS refuses empty splits: only declare splits with an example
      if first is not None:
        generators[split] = self._generate_examples(first, stream)
      else:
        logging.warning("%s split %s: no usable examples (see %s)", self.name, split, INDEX_FILE)
    if not generators:
      raise UserError(f"{self.name}: no usable example in any split; every item was skipped: "
                       f"{dict(self._stats['skip_counts'])}")
    return generators

  def _generate_examples(self, first, stream):
    """(key, example) with key = the item's index in its split, so records keep item order."""
    yield first.index, first.example
    for result in stream:
      yield result.index, result.example

  # -- featurisation --------------------------------------------------------------------------
  def _featurized(self, split: str, items: Iterable[sources.SourceItem], total: int):
    """Yields the split's successful ItemResults in order; records kept and skipped items."""
    from tqdm.auto import tqdm

    cfg = self.builder_config
    params = features_lib.FeatureParams(**cfg.features)
    store_waveform = cfg.store_waveform or not cfg.store_features
    args = ((item, params, cfg.tokenizer_path, cfg.store_features, store_waveform)
            for item in items)
    kept = self._stats["splits"].setdefault(
        split, {"index": [], "num_frames": [], "num_samples": [], "num_tokens": []})
    skipped = self._stats["skipped"].setdefault(split, [])
    bar = tqdm(total=total, desc=f"{self.name} {split}", unit="utt", dynamic_ncols=True)
    try:
      for result in self._runner.map(featurize.featurize_star, args):
        bar.update(1)
        if result.example is None:
          skipped.append({"index": result.index, "id": result.key, "reason": result.reason,
                          "detail": result.detail})
          self._stats["skip_counts"][result.reason] += 1
          continue
        kept["index"].append(int(result.index))
        kept["num_frames"].append(int(result.example["num_frames"]))
        kept["num_samples"].append(int(result.example["num_samples"]))
        kept["num_tokens"].append(len(result.example["tokens"]))
        self._stats["audio_seconds"] += result.seconds
        elapsed = max(time.perf_counter() - self._stats["started"], 1e-9)
        bar.set_postfix(audio_s_per_s=f"{self._stats['audio_seconds'] / elapsed:.1f}")
        yield result
    finally:
      bar.close()

  def download_and_prepare(self, *args, **kwargs):
    """TFDS's download_and_prepare, with the worker pool around it and the index file after."""
    if self.is_prepared():
      return
    self._stats = {"splits": {}, "skipped": {}, "skip_counts": collections.Counter(),
                   "audio_seconds": 0.0, "started": time.perf_counter()}
    workers = int(self.builder_config.workers)
    pool = None
    if workers > 1:
      with _main_module_hidden():
        pool = multiprocessing.get_context("spawn").Pool(workers)
    self._runner = _Ordered(pool, window=8 * max(workers, 1))
    tfds.disable_progress_bar()  # our per-split bar shows items and audio-s/s instead
    try:
      kwargs.setdefault("file_format", "array_record")
      super().download_and_prepare(*args, **kwargs)
    finally:
      tfds.enable_progress_bar()
      if pool is not None:
        pool.terminate()
        pool.join()
      self._runner = _Ordered(None, 1)
    wall = time.perf_counter() - self._stats["started"]
    index = {
        "builder": self.name,
        "config": self.builder_config.name,
        "splits": self._stats["splits"],
        "skipped": self._stats["skipped"],
        "skip_counts": dict(self._stats["skip_counts"]),
        "audio_seconds": self._stats["audio_seconds"],
        "wall_seconds": wall,
        "audio_seconds_per_second": self._stats["audio_seconds"] / max(wall, 1e-9),
        "workers": workers,
    }
    with open(os.path.join(str(self.data_dir), INDEX_FILE), "w") as f:
      json.dump(index, f)
    logging.info("%s: %.1f s of audio in %.1f s (%.1f audio-s/s, %d workers), skipped %s",
                 self.name, index["audio_seconds"], wall, index["audio_seconds_per_second"],
                 workers, index["skip_counts"])


def _default_config(source: str) -> SpeechConfig:
  return SpeechConfig(name="default", version=DATA_VERSION, source=source,
                      description="default feature parameters (echo_jax.config.defaults)")


class EchoSpeech(SpeechBuilder):
  """The offline synthetic multi-speaker corpus (echo_jax.data.synth_corpus)."""

  BUILDER_CONFIGS = [_default_config(os.path.join("data", "echo_speech_corpus"))]

  def _split_items(self):
    items = sources.corpus_items(self.builder_config.source)
    return {s: (v, len(v)) for s, v in items.items() if v}


class Manifest(SpeechBuilder):
  """Any folder of audio with a .jsonl/.tsv manifest, or a LibriSpeech / Common Voice folder."""

  BUILDER_CONFIGS = [_default_config("manifest.jsonl")]

  def _split_items(self):
    items = sources.manifest_items(self.builder_config.source)
    return {s: (v, len(v)) for s, v in items.items() if v}


class CatalogSpeech(SpeechBuilder):
  """A TFDS catalog speech dataset (audio + text features) already in the user's TFDS dir."""

  BUILDER_CONFIGS = [_default_config("librispeech")]

  def _split_items(self):
    cfg = self.builder_config
    out = {}
    for split, catalog_split in cfg.catalog_splits.items():
      if catalog_split:
        out[split] = sources.catalog_items(cfg.source, cfg.catalog_data_dir or None,
                                           catalog_split, split)
    return out


BUILDERS = {"echo_speech": EchoSpeech, "manifest": Manifest, "catalog_speech": CatalogSpeech}
