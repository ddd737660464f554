"""The tf.data input pipeline: per-host shards of length-bucketed, padded numpy batches.

Every host computes the same *global* batch plan from the split's frame counts (stored at prepare
time), so all hosts take the same bucket at the same step (one compiled shape per bucket, global
arrays assemble) and each host reads only its own contiguous rows of every global batch:

- train: for epoch e, the split (examples longer than the last bucket edge dropped, counted) is
  permuted with rng(seed, e); each bucket's examples are cut into global batches of its size
  (the remainder moves up to the next bucket; the last bucket's is left for the next epoch), and
  the batches of all buckets are permuted (the first data.shortest_first_epochs epochs instead
  hand them out shortest first: a SortaGrad curriculum). Host p of P takes rows
  [p*b, (p+1)*b) with b = global / P. Epochs repeat forever. The position is one number, the
  count of batches handed out, so `get_state()` / `make_train_iterator(..., state=...)` resume
  with exactly the batches an uninterrupted run would have seen next.
- batch sizes: data.bucket_batch_sizes and data.eval_batch_size are global batches, or rows per
  device with data.batch_size_unit = "per_device" (`global_batch_sizes` resolves them).
- eval: examples sorted by length are cut into global batches of data.eval_batch_size, each padded
  to the bucket of its longest example; the last batch is filled with copies of a real row marked
  valid=False and example_index=-1, so every example is seen exactly once over all hosts.

Reading goes through the TFDS ArrayRecord data source (random access) inside a tf.numpy_function;
tf.data runs batch assembly on parallel threads and prefetches. With
data.on_the_fly_features (or data prepared without features) the same numpy function computes
log-mel and F0 from the stored waveform with `features.compute_features`, so both paths give
identical arrays. With data.f0_source = "shuffled" (a placebo for the pitch ablation) every row's
`f0` is another record's track of the same split, stretched to the row's frames
(echo_jax.data.f0_source); batches and `iterate_examples` alike.

Tokens: decoder_input_tokens = [BOS] + ids, decoder_target_tokens = ids + [EOS], padded with 0 to
data.max_target_length; longer transcripts are cut to max_target_length - 1 ids and still end
with EOS. With data.bucket_target_lengths each bucket pads its tokens to its own length instead
(short utterances have short transcripts; the decoder's cost scales with the padded length), and
an example goes to the first bucket that fits both its frames and its tokens (`planning_frames`).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import threading
import weakref
from typing import Iterator, NamedTuple

import numpy as np

from echo_jax.data import f0_range
from echo_jax.data import f0_source
from echo_jax.data import features as features_lib
from echo_jax.data.prepare import DAMAGED_DATA_MARKER, DamagedDataError, ensure_prepared
from echo_jax.errors import UserError
from echo_jax.token_ids import BOS_ID, EOS_ID


# ----------------------------------------------------------------------------------------------
# Planning (pure numpy, identical on every host).


def bucket_ids(num_frames: np.ndarray, edges) -> np.ndarray:
  """Index of the smallest edge >= num_frames; len(edges) for examples longer than the last."""
  return np.searchsorted(np.asarray(edges, np.int64), np.asarray(num_frames, np.int64), side="left")


def per_bucket_lengths(data) -> tuple[int, ...]:
  """data.bucket_target_lengths as ints; () (the default, and configs older than the field) when
  every bucket pads to data.max_target_length."""
  return tuple(int(n) for n in data.get("bucket_target_lengths", ()))


def target_lengths(data) -> tuple[int, ...]:
  """The token length each bucket pads to: data.bucket_target_lengths, or (by default, empty)
  data.max_target_length for every bucket."""
  return per_bucket_lengths(data) or (int(data.max_target_length),) * len(data.bucket_frames)


def planning_frames(num_frames: np.ndarray, num_tokens: np.ndarray | None, edges,
                    lengths) -> np.ndarray:
  """num_frames raised so that `bucket_ids` picks the first bucket fitting both the frames and
  the num_tokens + 1 padded tokens (BOS or EOS added) of each example; a transcript longer than
  every bucket's length goes to the last bucket (cut there as at data.max_target_length).
  Without token counts (every bucket pads to the same length) the frames alone decide."""
  num_frames = np.asarray(num_frames, np.int64)
  if num_tokens is None:
    return num_frames.astype(np.int32)
  token_bucket = np.minimum(
      np.searchsorted(np.asarray(lengths, np.int64), np.asarray(num_tokens, np.int64) + 1,
                      side="left"), len(lengths) - 1)
  lowest_frames = np.concatenate([[0], np.asarray(edges, np.int64)[:-1] + 1])[token_bucket]
  return np.maximum(num_frames, lowest_frames).astype(np.int32)


def _split_planning_frames(config, prepared, split: str, num_frames: np.ndarray) -> np.ndarray:
  """`planning_frames` of a split: token counts are read only when buckets pad differently."""
  data = config.data
  if not per_bucket_lengths(data):
    return np.asarray(num_frames, np.int32)
  return planning_frames(num_frames, prepared.split_token_counts(split)[:len(num_frames)],
                         [int(e) for e in data.bucket_frames], target_lengths(data))


BATCH_SIZE_UNITS = ("global", "per_device")


class GlobalBatchSizes(NamedTuple):
  buckets: tuple[int, ...]  # one per data.bucket_frames edge
  eval: int


def global_batch_sizes(data, num_devices: int | None = None) -> GlobalBatchSizes:
  """The global batch of every bucket and of eval: the one place data.batch_size_unit is read.

  "global" (the default): data.bucket_batch_sizes and data.eval_batch_size as written;
  "per_device": each times `num_devices` (default: every device of every process), so the same
  config fills a slice of any size.
  """
  buckets = tuple(int(b) for b in data.bucket_batch_sizes)
  eval_size = int(data.eval_batch_size)
  unit = data.get("batch_size_unit", "global")  # runs saved before the option mean "global"
  if unit == "global":
    return GlobalBatchSizes(buckets, eval_size)
  if unit != "per_device":
    raise UserError(f"config.data.batch_size_unit={unit!r} is invalid: use one of "
                    f"{', '.join(map(repr, BATCH_SIZE_UNITS))}")
  if num_devices is None:
    import jax  # only per-device sizes need the device count; the rest of the pipeline is numpy

    num_devices = jax.device_count()
  n = int(num_devices)
  return GlobalBatchSizes(tuple(b * n for b in buckets), eval_size * n)


def local_batch_size(global_size: int, process_count: int, what: str) -> int:
  if global_size % process_count:
    raise ValueError(f"{what}={global_size} is not divisible by the {process_count} processes; "
                     f"use a multiple of {process_count}")
  return global_size // process_count


def _bucket_counts(num_frames: np.ndarray, edges, global_sizes) -> list[tuple[int, int]]:
  """[(full batches, examples carried up)] per bucket; the last bucket's carry is dropped."""
  ids = bucket_ids(num_frames, edges)
  out, carry = [], 0
  for b, size in enumerate(global_sizes):
    pool = carry + int(np.sum(ids == b))
    out.append((pool // int(size), pool % int(size)))
    carry = pool % int(size)
  return out


def batches_per_epoch(num_frames: np.ndarray, edges, global_sizes) -> int:
  """Global batches in every training epoch (the same for every epoch and seed)."""
  return sum(n for n, _ in _bucket_counts(num_frames, edges, global_sizes))


def epoch_plan(num_frames: np.ndarray, edges, global_sizes, seed: int, epoch: int,
               shortest_first: bool = False) -> list[tuple[int, np.ndarray]]:
  """[(bucket, record positions of one global batch)] of one training epoch, in order.

  The examples a bucket cannot fill a batch with move up to the next bucket (they fit its
  longer edge), so an epoch leaves out at most last-size - 1 examples, all of the last bucket.
  shortest_first (SortaGrad, Deep Speech 2): the same epoch's examples in batches of
  non-decreasing length (ties in the shuffled order) instead of shuffled batches.
  """
  rng = np.random.default_rng([int(seed), int(epoch)])
  ids = bucket_ids(num_frames, edges)
  perm = rng.permutation(np.flatnonzero(ids < len(edges)))
  batches = []
  carry = perm[:0]
  for b, size in enumerate(global_sizes):
    members = np.concatenate([carry, perm[ids[perm] == b]])
    if shortest_first:  # the carry came from a shorter bucket, so it stays in front
      members = members[np.argsort(num_frames[members], kind="stable")]
    full = len(members) // int(size)
    batches += [(b, members[i * size:(i + 1) * size]) for i in range(full)]
    carry = members[full * size:]
  if shortest_first:
    return batches
  order = rng.permutation(len(batches))
  return [batches[i] for i in order]


def eval_plan(num_frames: np.ndarray, edges, global_size: int) -> list[tuple[int, np.ndarray]]:
  """[(bucket, positions with -1 for padding rows)]: every in-range record exactly once.

  Records sorted by length are cut into consecutive batches, each padded to the bucket of its
  longest record; only the last batch has padding rows.
  """
  ids = bucket_ids(num_frames, edges)
  order = np.argsort(num_frames, kind="stable")
  order = order[ids[order] < len(edges)]
  batches = []
  for start in range(0, len(order), global_size):
    chunk = order[start:start + global_size]
    rows = np.concatenate([chunk, -np.ones(global_size - len(chunk), np.int64)])
    batches.append((int(ids[chunk].max()), rows))
  return batches


def host_rows(positions: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
  size = len(positions) // process_count
  return positions[process_index * size:(process_index + 1) * size]


# ----------------------------------------------------------------------------------------------
# Batch assembly (numpy).


def target_tokens(ids: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """(decoder inputs, decoder targets), each [max_length] int32: BOS+ids / ids+EOS, 0-padded."""
  ids = np.asarray(ids, np.int32)[:max_length - 1]
  inputs = np.zeros(max_length, np.int32)
  targets = np.zeros(max_length, np.int32)
  inputs[0] = BOS_ID
  inputs[1:1 + len(ids)] = ids
  targets[:len(ids)] = ids
  targets[len(ids)] = EOS_ID
  return inputs, targets


class _Assembler:
  """Reads records of one split and pads them into a batch dict for a bucket edge."""

  def __init__(self, config, prepared, split: str):
    self.prepared = prepared
    self.split = split
    self.params = features_lib.FeatureParams(**prepared.feature_params)
    self.max_length = int(config.data.max_target_length)
    self.with_waveform = "waveform" in tuple(config.model.features)
    self.on_the_fly = bool(config.data.on_the_fly_features) or not prepared.store_features
    if (self.with_waveform or self.on_the_fly) and not prepared.store_waveform:
      raise ValueError(
          "the model reads the waveform (model.features) or data.on_the_fly_features is set, but "
          f"{prepared.builder_dir} was prepared without waveforms; set data.store_waveform=True "
          "and prepare again")
    source_name = str(config.data.get("f0_source", "own"))
    if source_name not in f0_source.F0_SOURCES:
      raise UserError(f"config.data.f0_source={source_name!r} is invalid: use one of "
                      f"{', '.join(map(repr, f0_source.F0_SOURCES))}")
    self.shuffled_f0 = source_name == "shuffled"
    self._local = threading.local()  # one data source per reader thread
    self._split_size = None

  @property
  def source(self):
    if not hasattr(self._local, "source"):
      self._local.source = self.prepared.data_source(self.split)
    return self._local.source

  @property
  def split_size(self) -> int:
    if self._split_size is None:
      self._split_size = len(self.source)
    return self._split_size

  def donors(self, positions) -> dict[int, int]:
    """{position: the record whose F0 it is fed}; empty unless data.f0_source is shuffled."""
    if not self.shuffled_f0:
      return {}
    return {int(p): f0_source.donor_position(p, self.split_size) for p in positions}

  def donor_f0(self, donor_record, frames: int) -> np.ndarray:
    """The donor record's F0 track stretched to `frames` (f0_source.stretch_f0)."""
    return f0_source.stretch_f0(self.features_of(donor_record)[1], frames)

  def features_of(self, record) -> tuple[np.ndarray, np.ndarray]:
    if self.on_the_fly:
      feats = features_lib.compute_features(record["waveform"], self.params)
      return feats["mel"], feats["f0"]
    return record["mel"], record["f0"]

  def keys(self) -> list[str]:
    keys = ["mel", "f0", "num_frames", "decoder_input_tokens", "decoder_target_tokens",
            "example_index", "valid"]
    if self.with_waveform:
      keys += ["waveform", "num_samples"]
    return keys

  def dtypes(self) -> list[np.dtype]:
    table = {"mel": np.float32, "f0": np.float32, "num_frames": np.int32,
             "decoder_input_tokens": np.int32, "decoder_target_tokens": np.int32,
             "example_index": np.int64, "valid": np.bool_, "waveform": np.float32,
             "num_samples": np.int32}
    return [table[k] for k in self.keys()]

  def assemble(self, positions: np.ndarray, edge: int, filler: int | None = None,
               target_length: int | None = None) -> dict[str, np.ndarray]:
    """Batch of the records at `positions` padded to `edge` frames and `target_length` tokens
    (default data.max_target_length).

    A position -1 is a padding row: a copy of record `filler` (default: the first real row) with
    valid=False and example_index=-1, so every row stays finite through the model.
    """
    rows = len(positions)
    real = [int(p) for p in positions if p >= 0]
    filler = int(filler) if filler is not None else (real[0] if real else -1)
    if filler < 0:
      raise ValueError("a batch without real rows needs a filler record")
    wanted = sorted(set(real) | {filler})
    donors = self.donors(wanted)
    to_read = sorted(set(wanted) | set(donors.values()))
    records = self.prepared.read_records(self.source, self.split, to_read)
    by_position = dict(zip(to_read, records))
    hop = self.params.hop_length
    length = int(target_length or self.max_length)
    batch = {
        "mel": np.zeros([rows, edge, self.params.n_mels], np.float32),
        "f0": np.zeros([rows, edge], np.float32),
        "num_frames": np.zeros([rows], np.int32),
        "decoder_input_tokens": np.zeros([rows, length], np.int32),
        "decoder_target_tokens": np.zeros([rows, length], np.int32),
        "example_index": np.full([rows], -1, np.int64),
        "valid": np.zeros([rows], np.bool_),
    }
    if self.with_waveform:
      batch["waveform"] = np.zeros([rows, edge * hop], np.float32)
      batch["num_samples"] = np.zeros([rows], np.int32)
    features_by_position = {}  # padding rows repeat a record: featurise it once
    for row, position in enumerate(positions):
      valid = position >= 0
      key = int(position) if valid else filler
      record = by_position[key]
      if key not in features_by_position:
        mel, f0 = self.features_of(record)
        if donors:
          f0 = self.donor_f0(by_position[donors[key]], mel.shape[0])
        features_by_position[key] = mel, f0
      mel, f0 = features_by_position[key]
      frames = int(record["num_frames"])
      if frames > edge or mel.shape[0] != frames:
        raise ValueError(f"record {record['id']!r}: {mel.shape[0]} frames (stored {frames}) do not "
                         f"fit bucket edge {edge}")
      batch["mel"][row, :frames] = mel
      batch["f0"][row, :frames] = f0
      batch["num_frames"][row] = frames
      batch["decoder_input_tokens"][row], batch["decoder_target_tokens"][row] = target_tokens(
          record["tokens"], length)
      batch["example_index"][row] = int(record["index"]) if valid else -1
      batch["valid"][row] = valid
      if self.with_waveform:
        wave = record["waveform"]
        batch["waveform"][row, :wave.size] = wave
        batch["num_samples"][row] = wave.size
    return batch


def _hide_accelerators_from_tf() -> None:
  """tf.data runs on the host; a GPU build of TensorFlow must not claim JAX's accelerator memory."""
  import tensorflow as tf

  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices; nothing to change any more
    pass


def _tf_dataset(assembler: _Assembler, steps, batch_of, num_parallel: int, prefetch: int):
  """tf.data over step numbers -> assembled batch dicts (numpy_function), ordered, prefetched."""
  import tensorflow as tf

  _hide_accelerators_from_tf()
  keys = assembler.keys()
  dtypes = assembler.dtypes()

  def load(step):
    batch = batch_of(int(step))
    return tuple(batch[k] for k in keys)

  def to_dict(step):
    arrays = tf.numpy_function(load, [step], [tf.as_dtype(d) for d in dtypes], stateful=False)
    return dict(zip(keys, arrays))

  ds = steps.map(to_dict, num_parallel_calls=max(int(num_parallel), 1), deterministic=True)
  options = tf.data.Options()
  options.experimental_optimization.map_parallelization = False
  options.threading.private_threadpool_size = max(int(num_parallel), 1) + 1
  return ds.with_options(options).prefetch(max(int(prefetch), 1))


class _Batches:
  """A tf.data numpy iterator that can be closed, and is closed at interpreter exit.

  A prefetch thread still inside the numpy function while Python shuts down aborts the process
  ("terminate called without an active exception"); closing first lets the threads finish.
  """

  def __init__(self, dataset):
    global _EXIT_HOOK_REGISTERED
    if not _EXIT_HOOK_REGISTERED:  # after TensorFlow's own hooks, so it runs before them
      atexit.register(_close_open_iterators)
      _EXIT_HOOK_REGISTERED = True
    self._iterator = dataset.as_numpy_iterator()
    _OPEN.add(self)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._iterator is None:
      raise StopIteration
    try:
      return next(self._iterator)
    except Exception as e:  # pylint: disable=broad-except - re-raised unless it is our message
      # A DamagedDataError raised in the numpy function reaches here wrapped in a tf error.
      text = str(e)
      if DAMAGED_DATA_MARKER not in text:
        raise
      raise DamagedDataError(text[text.index(DAMAGED_DATA_MARKER):].splitlines()[0]) from None

  def close(self) -> None:
    self._iterator = None  # drops the tf.data iterator, which joins its threads
    _OPEN.discard(self)


_OPEN: "weakref.WeakSet[_Batches]" = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def _close_open_iterators() -> None:
  for batches in list(_OPEN):
    batches.close()


def _prepared_for(config, prepared):
  if prepared is not None and hasattr(prepared, "builder_dir"):
    return prepared
  return ensure_prepared(config)


# ----------------------------------------------------------------------------------------------
# Train.


class TrainIterator:
  """Endless iterator of this host's training batches; `get_state()` is its JSON position."""

  def __init__(self, config, prepared, process_index: int, process_count: int, state=None,
               split: str = "train", num_parallel: int = 2, num_devices: int | None = None):
    data = config.data
    self.edges = [int(e) for e in data.bucket_frames]
    self.global_sizes = list(global_batch_sizes(data, num_devices).buckets)
    if len(self.edges) != len(self.global_sizes) or list(self.edges) != sorted(set(self.edges)):
      raise ValueError(f"data.bucket_frames={tuple(data.bucket_frames)} must be increasing and "
                       f"match data.bucket_batch_sizes={tuple(data.bucket_batch_sizes)} in length")
    self.local_sizes = [local_batch_size(g, process_count, f"data.bucket_batch_sizes[{b}]")
                        for b, g in enumerate(self.global_sizes)]
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.seed = int(data.seed)
    self.prepared = prepared
    index, self.num_frames = prepared.split_lengths(split)
    too_long = int(np.sum(bucket_ids(self.num_frames, self.edges) == len(self.edges)))
    selected = f0_range.selection(prepared, split,
                                  max_hz=float(data.get("train_max_f0_hz", 0.0)))
    if not selected.all():
      # Left out like overlong examples: past the last edge, so no epoch plans them.
      logging.info("train: %d of %d examples have a median F0 at or above "
                   "data.train_max_f0_hz=%s and are left out", int(np.sum(~selected)),
                   len(selected), data.train_max_f0_hz)
      self.num_frames = np.where(selected, self.num_frames, self.edges[-1] + 1).astype(np.int32)
    self.target_lengths = target_lengths(data)
    self.num_frames = _split_planning_frames(config, prepared, split, self.num_frames)
    self.num_dropped = too_long
    if too_long:
      logging.warning("train: %d of %d examples are longer than the last bucket edge %d frames and "
                      "are never used; raise data.bucket_frames or lower data.max_audio_seconds",
                      too_long, len(self.num_frames), self.edges[-1])
    self.per_epoch = batches_per_epoch(self.num_frames, self.edges, self.global_sizes)
    if self.per_epoch == 0:
      raise ValueError(
          f"train split has {len(self.num_frames)} usable examples, too few for one global batch "
          f"of any bucket (sizes {self.global_sizes}, edges {self.edges}); lower "
          "data.bucket_batch_sizes or make more data")
    plan_inputs = [index.tolist(), self.num_frames.tolist(), self.edges, self.global_sizes,
                   self.seed, self.process_count]
    if per_bucket_lengths(data):  # (runs without it keep their fingerprint)
      plan_inputs.append(list(self.target_lengths))
    self.shortest_first_epochs = int(data.get("shortest_first_epochs", 0))
    if self.shortest_first_epochs:  # (likewise)
      plan_inputs.append(["shortest_first_epochs", self.shortest_first_epochs])
    self.fingerprint = hashlib.sha256(json.dumps(plan_inputs).encode()).hexdigest()[:16]
    self.position = 0
    if state is not None:
      self.position = int(state["position"])
      if state.get("fingerprint") != self.fingerprint:
        logging.warning("train pipeline state %s was saved for another data/bucket/seed setting "
                        "(%s now); continuing at batch %d of the new plan",
                        state.get("fingerprint"), self.fingerprint, self.position)
    self._assembler = _Assembler(config, prepared, split)
    self._plan = functools.lru_cache(maxsize=4)(self._epoch_plan)
    import tensorflow as tf

    steps = tf.data.Dataset.range(self.position, 2**62)
    self._dataset = _tf_dataset(self._assembler, steps, self.batch_at, num_parallel,
                                int(data.prefetch))
    self._batches = _Batches(self._dataset)

  def _epoch_plan(self, epoch: int):
    return epoch_plan(self.num_frames, self.edges, self.global_sizes, self.seed, epoch,
                      shortest_first=epoch < self.shortest_first_epochs)

  def batch_at(self, position: int) -> dict[str, np.ndarray]:
    """This host's batch number `position` (counted from the start of training)."""
    epoch, k = divmod(int(position), self.per_epoch)
    bucket, positions = self._plan(epoch)[k]
    rows = host_rows(positions, self.process_index, self.process_count)
    return self._assembler.assemble(rows, self.edges[bucket],
                                    target_length=self.target_lengths[bucket])

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._batches)
    self.position += 1
    return batch

  def close(self) -> None:
    """Stops the background reading (also done at interpreter exit)."""
    self._batches.close()

  def get_state(self) -> dict:
    """JSON-able position: the next batch to hand out (prefetched batches are not counted)."""
    return {"position": int(self.position), "fingerprint": self.fingerprint,
            "batches_per_epoch": int(self.per_epoch), "epoch": int(self.position // self.per_epoch)}


def make_train_iterator(config, prepared=None, process_index: int = 0, process_count: int = 1,
                        state: dict | None = None, num_devices: int | None = None
                        ) -> TrainIterator:
  """This host's endless training batches (numpy dicts, docs/architecture.md), resumable from
  `state` (a previous iterator's get_state()). `num_devices` scales per-device batch sizes
  (default: every device of every process)."""
  return TrainIterator(config, _prepared_for(config, prepared), process_index, process_count, state,
                       num_devices=num_devices)


# ----------------------------------------------------------------------------------------------
# Eval.


def make_eval_batches(config, split: str, process_index: int = 0, process_count: int = 1,
                      prepared=None, max_examples: int | None = None,
                      num_devices: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """This host's eval batches over `split`: each example exactly once over all hosts.

  max_examples (default config.eval.max_examples; -1 = all) keeps the split's first examples.
  Every host yields the same number of batches with the same shapes. `num_devices` scales a
  per-device data.eval_batch_size (default: every device of every process).
  """
  prepared = _prepared_for(config, prepared)
  data = config.data
  edges = [int(e) for e in data.bucket_frames]
  global_size = global_batch_sizes(data, num_devices).eval
  local_batch_size(global_size, process_count, "data.eval_batch_size")
  _, num_frames = prepared.split_lengths(split)
  if max_examples is None:
    max_examples = int(config.eval.max_examples)
  selected = eval_selection(config, prepared, split, max_examples)
  num_frames = num_frames[:int(np.flatnonzero(selected)[-1]) + 1 if selected.any() else 0]
  selected = selected[:len(num_frames)]
  too_long = int(np.sum(bucket_ids(num_frames[selected], edges) == len(edges)))
  # Records outside the selection are placed past the last edge: eval_plan leaves them out.
  num_frames = np.where(selected, num_frames, edges[-1] + 1).astype(np.int32)
  num_frames = _split_planning_frames(config, prepared, split, num_frames)
  lengths = target_lengths(data)
  if too_long:
    logging.warning("eval %s: %d of %d examples are longer than the last bucket edge %d frames and "
                    "are not evaluated", split, too_long, len(num_frames), edges[-1])
  plan = eval_plan(num_frames, edges, global_size)
  assembler = _Assembler(config, prepared, split)

  def batch_of(k: int):
    bucket, positions = plan[k]
    return assembler.assemble(host_rows(positions, process_index, process_count), edges[bucket],
                              filler=positions[0],  # a host whose rows are all padding
                              target_length=lengths[bucket])

  if not plan:
    return iter(())
  import tensorflow as tf

  ds = _tf_dataset(assembler, tf.data.Dataset.range(len(plan)), batch_of, 2, int(data.prefetch))
  return _Batches(ds)


def eval_selection(config, prepared, split: str, max_examples: int) -> np.ndarray:
  """[N] bool: the records of `split` an evaluation scores: those data.eval_min_f0_hz keeps
  (all by default), of which the first `max_examples` (-1: all) in record order."""
  selected = f0_range.selection(prepared, split,
                                min_hz=float(config.data.get("eval_min_f0_hz", 0.0)))
  if max_examples >= 0:
    selected &= np.cumsum(selected) <= max_examples
  return selected


def iterate_examples(config, split: str, prepared=None) -> Iterator[dict]:
  """The split's stored examples in record order as numpy dicts, text fields as str (mel/f0
  computed when the data was prepared without features; f0 another record's with
  data.f0_source = "shuffled", as in batches)."""
  prepared = _prepared_for(config, prepared)
  assembler = _Assembler(config, prepared, split)
  source = assembler.source
  for position in range(len(source)):
    record = dict(prepared.read_records(source, split, [position])[0])
    for key in ("id", "text", "speaker"):
      if isinstance(record.get(key), bytes):
        record[key] = record[key].decode("utf-8")
    if "mel" not in record or assembler.on_the_fly:
      record["mel"], record["f0"] = assembler.features_of(record)
      record["voiced"] = record["f0"] > 0
    donors = assembler.donors([position])
    if donors:
      donor = prepared.read_records(source, split, [donors[position]])[0]
      record["f0"] = assembler.donor_f0(donor, np.asarray(record["mel"]).shape[0])
      record["voiced"] = record["f0"] > 0
    yield record
