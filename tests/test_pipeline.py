"""tf.data pipeline: host sharding, bucket shapes, tokens, resumable position, eval coverage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from echo_jax.data import pipeline


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def in_range(num_frames, edges):
  return int(np.sum(np.asarray(num_frames) <= edges[-1]))


def test_two_hosts_split_each_epoch_without_overlap(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  config.data.bucket_batch_sizes = (2, 2, 2)
  hosts = [pipeline.make_train_iterator(config, tiny_prepared, p, 2) for p in range(2)]
  per_epoch = hosts[0].per_epoch
  index, num_frames = tiny_prepared.split_lengths("train")
  seen = [[], []]
  for _ in range(per_epoch):
    batches = [next(h) for h in hosts]
    assert batches[0]["mel"].shape == batches[1]["mel"].shape  # same bucket at the same step
    assert batches[0]["mel"].shape[0] == 1  # global 2 over 2 hosts
    for p in range(2):
      seen[p] += batches[p]["example_index"].tolist()
  assert not set(seen[0]) & set(seen[1])
  union = set(seen[0]) | set(seen[1])
  assert len(seen[0]) + len(seen[1]) == len(union)  # nothing twice within the epoch
  assert union <= set(index.tolist())
  # Remainders move up a bucket: at most last-size - 1 = 1 example waits for the next epoch.
  assert in_range(num_frames, config.data.bucket_frames) - 1 <= len(union)


def test_one_host_sees_what_two_hosts_see_together(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  config.data.bucket_batch_sizes = (2, 2, 2)
  single = take(pipeline.make_train_iterator(config, tiny_prepared, 0, 1), 4)
  halves = [take(pipeline.make_train_iterator(config, tiny_prepared, p, 2), 4) for p in range(2)]
  for whole, first, second in zip(single, *halves):
    for key in whole:
      np.testing.assert_array_equal(whole[key], np.concatenate([first[key], second[key]]), key)


def test_batch_shapes_come_only_from_the_bucket_set(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  edges = list(config.data.bucket_frames)
  sizes = dict(zip(edges, config.data.bucket_batch_sizes))
  n_mels, length = config.data.n_mels, config.data.max_target_length
  iterator = pipeline.make_train_iterator(config, tiny_prepared, 0, 1)
  for batch in take(iterator, 3 * iterator.per_epoch):
    rows, frames = batch["mel"].shape[:2]
    assert frames in sizes and rows == sizes[frames]
    assert batch["mel"].shape == (rows, frames, n_mels)
    assert batch["f0"].shape == (rows, frames)
    assert batch["decoder_input_tokens"].shape == (rows, length)
    assert batch["decoder_target_tokens"].shape == (rows, length)
    assert batch["valid"].all()
    assert np.all(batch["num_frames"] <= frames)
    pad = np.arange(frames)[None, :] >= batch["num_frames"][:, None]
    assert not batch["mel"][pad].any() and not batch["f0"][pad].any()
    assert {k: v.dtype for k, v in batch.items()} == {
        "mel": np.float32, "f0": np.float32, "num_frames": np.int32,
        "decoder_input_tokens": np.int32, "decoder_target_tokens": np.int32,
        "example_index": np.int64, "valid": np.bool_}


def test_tokens_are_bos_ids_and_ids_eos(tiny_prepared, tiny_data_config):
  tokenizer = tiny_prepared.load_tokenizer()
  texts = {int(r["index"]): r["text"] for r in pipeline.iterate_examples(
      tiny_data_config, "train", prepared=tiny_prepared)}
  batch = next(pipeline.make_train_iterator(tiny_data_config, tiny_prepared, 0, 1))
  for inputs, targets, index in zip(batch["decoder_input_tokens"], batch["decoder_target_tokens"],
                                    batch["example_index"]):
    n = int(np.sum(targets != 0))
    assert targets[n - 1] == pipeline.EOS_ID and inputs[0] == pipeline.BOS_ID
    np.testing.assert_array_equal(inputs[1:n], targets[:n - 1])
    assert tokenizer.decode(targets[:n - 1].tolist()) == texts[int(index)]


def test_long_transcripts_are_cut_but_keep_eos():
  inputs, targets = pipeline.target_tokens(np.arange(10, 30), 8)
  np.testing.assert_array_equal(inputs, [1, 10, 11, 12, 13, 14, 15, 16])
  np.testing.assert_array_equal(targets, [10, 11, 12, 13, 14, 15, 16, 2])
  inputs, targets = pipeline.target_tokens(np.array([7, 8]), 5)
  np.testing.assert_array_equal(inputs, [1, 7, 8, 0, 0])
  np.testing.assert_array_equal(targets, [7, 8, 2, 0, 0])


def test_resumed_iterator_continues_with_the_same_batches(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  first = pipeline.make_train_iterator(config, tiny_prepared, 1, 2)
  k = first.per_epoch + 1  # resume across an epoch boundary
  take(first, k)
  state = json.loads(json.dumps(first.get_state()))  # survives the checkpoint's JSON
  assert state["position"] == k
  expected = take(first, 3)
  resumed = pipeline.make_train_iterator(config, tiny_prepared, 1, 2, state=state)
  for a, b in zip(expected, take(resumed, 3)):
    assert_batches_equal(a, b)


def test_shuffle_is_deterministic_by_seed_and_changes_by_epoch():
  num_frames = np.random.default_rng(0).integers(50, 1000, 64)
  plan = lambda seed, epoch: [p.tolist() for _, p in pipeline.epoch_plan(  # noqa: E731
      num_frames, (256, 512, 1024), (4, 4, 2), seed, epoch)]
  # The plan is a function of (seed, epoch) only: another interpreter, with other global numpy
  # and hash seeds, plans the same epoch (every host of a run must agree on it).
  script = ("import json, sys, numpy as np; np.random.seed(123); from echo_jax.data import "
            "pipeline; n = np.array(json.loads(sys.argv[1])); print(json.dumps([p.tolist() for "
            "_, p in pipeline.epoch_plan(n, (256, 512, 1024), (4, 4, 2), 0, 0)]))")
  other = subprocess.run([sys.executable, "-c", script, json.dumps(num_frames.tolist())],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "7"}).stdout
  assert json.loads(other) == plan(0, 0)
  # Every example once per epoch (all fit the last edge; at most last-size - 1 = 1 left out), each
  # batch of examples that fit its bucket's edge.
  seen = sum(plan(0, 0), [])
  assert len(seen) == len(set(seen)) >= len(num_frames) - 1
  edges = (256, 512, 1024)
  for bucket, rows in pipeline.epoch_plan(num_frames, edges, (4, 4, 2), 0, 0):
    assert all(num_frames[r] <= edges[bucket] for r in rows)
  assert plan(0, 0) != plan(0, 1)
  assert plan(0, 0) != plan(1, 0)
  assert sorted(sum(plan(0, 0), [])) != sum(plan(0, 0), [])  # shuffled, not sorted


def test_shortest_first_epoch_sorts_the_same_batches_by_length():
  num_frames = np.random.default_rng(5).integers(50, 1000, 64)
  edges, sizes = (256, 512, 1024), (4, 4, 2)
  sorted_plan = pipeline.epoch_plan(num_frames, edges, sizes, 0, 0, shortest_first=True)
  shuffled_plan = pipeline.epoch_plan(num_frames, edges, sizes, 0, 0)
  # The same examples in the same buckets and number of batches, each batch within its edge ...
  assert len(sorted_plan) == len(shuffled_plan)
  assert ({int(r) for _, p in sorted_plan for r in p}
          == {int(r) for _, p in shuffled_plan for r in p})
  assert sorted(b for b, _ in sorted_plan) == sorted(b for b, _ in shuffled_plan)
  for bucket, rows in sorted_plan:
    assert all(num_frames[r] <= edges[bucket] for r in rows)
  # ... handed out shortest first: buckets in order, lengths never decreasing.
  assert [b for b, _ in sorted_plan] == sorted(b for b, _ in sorted_plan)
  lengths = np.concatenate([num_frames[p] for _, p in sorted_plan])
  assert np.all(np.diff(lengths) >= 0)
  assert [b for b, _ in shuffled_plan] != sorted(b for b, _ in shuffled_plan)


def test_iterator_sorts_only_its_shortest_first_epochs(tiny_prepared, tiny_data_config):
  config = tiny_data_config.copy_and_resolve_references()
  config.data.shortest_first_epochs = 1
  curriculum = pipeline.make_train_iterator(config, tiny_prepared)
  plain = pipeline.make_train_iterator(tiny_data_config, tiny_prepared)
  per_epoch = curriculum.per_epoch
  assert curriculum.fingerprint != plain.fingerprint  # a resume notices the changed plan
  frames = lambda batch: batch["num_frames"][batch["valid"]]  # noqa: E731
  first = take(curriculum, per_epoch)
  firsts = np.concatenate([frames(b) for b in first])
  assert np.all(np.diff(firsts) >= 0)
  # Epoch 1 onwards is the ordinary shuffled plan of the same seed.
  take(plain, per_epoch)
  for a, b in zip(take(curriculum, per_epoch), take(plain, per_epoch)):
    assert_batches_equal(a, b)


def test_examples_longer_than_the_last_edge_are_dropped_and_counted():
  num_frames = np.array([100, 300, 2000, 600, 5000])
  plan = pipeline.epoch_plan(num_frames, (256, 1024), (1, 1), seed=0, epoch=0)
  assert sorted(int(p[0]) for _, p in plan) == [0, 1, 3]
  assert pipeline.batches_per_epoch(num_frames, (256, 1024), (1, 1)) == 3


def test_bucket_remainders_move_up_instead_of_being_dropped():
  edges, sizes = (100, 200, 300), (4, 4, 4)
  num_frames = np.array([50] * 3 + [150] * 3 + [250] * 3)  # no bucket fills a batch on its own
  for epoch in range(3):
    plan = pipeline.epoch_plan(num_frames, edges, sizes, seed=0, epoch=epoch)
    assert [b for b, _ in plan] in ([1, 2], [2, 1])
    used = np.concatenate([p for _, p in plan])
    assert len(set(used.tolist())) == 8  # 9 in range, 1 left for a later epoch
    for bucket, positions in plan:
      assert np.all(num_frames[positions] <= edges[bucket])
  assert pipeline.batches_per_epoch(num_frames, edges, sizes) == 2


def test_eval_plan_pads_only_the_last_batch():
  num_frames = np.random.default_rng(3).integers(10, 300, 23)
  plan = pipeline.eval_plan(num_frames, (100, 200, 300), 4)
  rows = np.concatenate([p for _, p in plan])
  assert sorted(rows[rows >= 0].tolist()) == list(range(23))
  assert np.all(np.concatenate([p for _, p in plan[:-1]]) >= 0) and np.sum(rows < 0) == 1
  for bucket, positions in plan:
    real = positions[positions >= 0]
    assert num_frames[real].max() <= (100, 200, 300)[bucket]


@pytest.mark.parametrize("process_count, batch_size, max_examples", [
    (1, 4, -1), (2, 4, -1), (2, 6, -1),
    (2, 8, 3),  # host 1's rows are all padding
])
def test_eval_sees_each_example_exactly_once(tiny_prepared, tiny_data_config, process_count,
                                             batch_size, max_examples):
  config = tiny_data_config
  config.data.eval_batch_size = batch_size
  index, _ = tiny_prepared.split_lengths("train")
  expected = index.tolist() if max_examples < 0 else index[:max_examples].tolist()
  per_host = [list(pipeline.make_eval_batches(config, "train", p, process_count,
                                              prepared=tiny_prepared, max_examples=max_examples))
              for p in range(process_count)]
  assert len({len(b) for b in per_host}) == 1  # every host runs the same number of steps
  seen = []
  for step in zip(*per_host):
    assert len({b["mel"].shape for b in step}) == 1
    for b in step:
      assert b["mel"].shape[0] == batch_size // process_count
      assert b["mel"].shape[1] in config.data.bucket_frames
      seen += b["example_index"][b["valid"]].tolist()
      assert np.all(b["example_index"][~b["valid"]] == -1)
      assert np.all(b["num_frames"] > 0) and np.all(np.isfinite(b["mel"]))  # padding rows too
  assert sorted(seen) == sorted(expected)


def test_eval_max_examples_keeps_the_first_examples(tiny_prepared, tiny_data_config):
  index, _ = tiny_prepared.split_lengths("train")
  batches = pipeline.make_eval_batches(tiny_data_config, "train", 0, 1, prepared=tiny_prepared,
                                       max_examples=5)
  seen = sorted(i for b in batches for i in b["example_index"][b["valid"]].tolist())
  assert seen == sorted(index[:5].tolist())


def test_on_the_fly_features_equal_precomputed(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  stored = take(pipeline.make_train_iterator(config, tiny_prepared, 0, 1), 3)
  config.data.on_the_fly_features = True
  computed = take(pipeline.make_train_iterator(config, tiny_prepared, 0, 1), 3)
  for a, b in zip(stored, computed):
    assert_batches_equal(a, b)


def test_waveform_stream_matches_frames(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  config.model.features = ("spectrogram", "waveform")
  hop = config.data.hop_length
  batch = next(pipeline.make_train_iterator(config, tiny_prepared, 0, 1))
  rows, frames = batch["mel"].shape[:2]
  assert batch["waveform"].shape == (rows, frames * hop)
  np.testing.assert_array_equal(batch["num_frames"], batch["num_samples"] // hop + 1)
  after = np.arange(frames * hop)[None, :] >= batch["num_samples"][:, None]
  assert not batch["waveform"][after].any()
  assert np.all(np.abs(batch["waveform"]).max(axis=1) > 1e-3)


def test_bucket_batch_sizes_must_split_over_hosts(tiny_prepared, tiny_data_config):
  tiny_data_config.data.bucket_batch_sizes = (4, 3, 2)
  with pytest.raises(ValueError, match="bucket_batch_sizes"):
    pipeline.make_train_iterator(tiny_data_config, tiny_prepared, 0, 2)


def test_planning_frames_pick_the_first_bucket_that_fits_frames_and_tokens():
  edges, lengths = (100, 200, 300), (10, 20, 30)
  # (frames, tokens before BOS/EOS) -> bucket; 3 = past the last edge, never planned
  cases = {(50, 5): 0, (50, 9): 0, (50, 10): 1, (150, 5): 1, (50, 25): 2, (250, 0): 2,
           (50, 45): 2,  # longer than every bucket's length: the last bucket, cut there
           (350, 5): 3}
  frames = np.array([f for f, _ in cases])
  tokens = np.array([t for _, t in cases])
  planned = pipeline.planning_frames(frames, tokens, edges, lengths)
  np.testing.assert_array_equal(pipeline.bucket_ids(planned, edges), list(cases.values()))
  assert np.all(planned >= frames)  # only ever raised: every example still fits its bucket
  np.testing.assert_array_equal(pipeline.planning_frames(frames, None, edges, lengths), frames)


def _needed_tokens(config, prepared, split="train"):
  """Each record's padded token length (ids + BOS/EOS) and frame bucket."""
  _, frames = prepared.split_lengths(split)
  tokens = prepared.split_token_counts(split)
  return tokens + 1, pipeline.bucket_ids(frames, config.data.bucket_frames)


def test_bucket_target_lengths_pad_each_bucket_to_its_own_length(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  d = config.data
  need, frame_bucket = _needed_tokens(config, tiny_prepared)
  longest_first = int(need[frame_bucket == 0].max())
  assert 3 < longest_first <= d.max_target_length  # a valid, non-decreasing setting below
  # The first bucket is one token short of its longest transcript: that example moves up.
  d.bucket_target_lengths = (longest_first - 1, d.max_target_length, d.max_target_length)
  lengths = dict(zip(d.bucket_frames, d.bucket_target_lengths))
  texts = {int(r["index"]): r["text"] for r in pipeline.iterate_examples(config, "train",
                                                                            tiny_prepared)}
  index, _ = tiny_prepared.split_lengths("train")
  need_of = dict(zip(index.tolist(), need.tolist()))
  tokenizer = tiny_prepared.load_tokenizer()
  iterator = pipeline.make_train_iterator(config, tiny_prepared, 0, 1)
  moved_up = set(index[(frame_bucket == 0) & (need == longest_first)].tolist())
  seen = set()
  for batch in take(iterator, 2 * iterator.per_epoch):
    length = lengths[batch["mel"].shape[1]]
    assert batch["decoder_target_tokens"].shape == batch["decoder_input_tokens"].shape == (
        batch["mel"].shape[0], length)
    for targets, example in zip(batch["decoder_target_tokens"], batch["example_index"]):
      n = int(np.sum(targets != 0))
      assert targets[n - 1] == pipeline.EOS_ID
      if need_of[int(example)] > d.max_target_length:  # cut as without per-bucket lengths
        assert length == n == d.max_target_length
      else:  # never cut by a shorter bucket
        assert n == need_of[int(example)]
        assert tokenizer.decode(targets[:n - 1].tolist()) == texts[int(example)]
      if int(example) in moved_up:
        assert batch["mel"].shape[1] > d.bucket_frames[0]
      seen.add(int(example))
  assert moved_up & seen  # the moved example was trained on
  evaluated = set()
  for batch in pipeline.make_eval_batches(config, "train", prepared=tiny_prepared, max_examples=-1):
    assert batch["decoder_target_tokens"].shape[1] == lengths[batch["mel"].shape[1]]
    for targets, example in zip(batch["decoder_target_tokens"][batch["valid"]],
                                batch["example_index"][batch["valid"]]):
      assert int(np.sum(targets != 0)) == min(need_of[int(example)], d.max_target_length)
      evaluated.add(int(example))
  assert evaluated == set(index.tolist())


def test_token_counts_of_an_older_build_are_read_once_and_stored(tiny_prepared, tmp_path):
  import dataclasses
  import shutil

  from echo_jax.data.builders.speech import INDEX_FILE

  copy_dir = tmp_path / "build"
  shutil.copytree(tiny_prepared.builder_dir, copy_dir)
  older = dataclasses.replace(tiny_prepared, builder_dir=str(copy_dir))
  with open(copy_dir / INDEX_FILE) as f:
    index = json.load(f)
  for info in index["splits"].values():
    del info["num_tokens"]  # as written before the index stored token counts
  with open(copy_dir / INDEX_FILE, "w") as f:
    json.dump(index, f)
  counts = older.split_token_counts("train")
  source = older.data_source("train")
  records = older.read_records(source, "train", list(range(len(source))))
  np.testing.assert_array_equal(counts, [len(r["tokens"]) for r in records])
  np.testing.assert_array_equal(counts, tiny_prepared.split_token_counts("train"))
  with open(copy_dir / INDEX_FILE) as f:
    stored = json.load(f)["splits"]
  assert stored["train"]["num_tokens"] == counts.tolist()
  other = [split for split in stored if split != "train"]
  assert other and all("num_tokens" not in stored[split] for split in other)  # read when needed
