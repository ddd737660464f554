"""The out-of-range pitch split: training keeps only utterances whose median voiced F0 is below
data.train_max_f0_hz, evaluation only those at or above data.eval_min_f0_hz, and every evaluation
path (trainer eval batches, evaluate, the ablation's conditions) scores the same utterances."""

import os

import numpy as np
import pytest

from echo_jax.inference import examples as examples_lib
from echo_jax.config import check as config_check
from echo_jax.data import f0_range, pipeline
from echo_jax.experiments import conditions


def test_median_voiced_f0_ignores_unvoiced_frames():
  assert f0_range.median_voiced_f0(np.array([0, 100, 0, 120, 300, 0], np.float32)) == 120.0
  assert f0_range.median_voiced_f0(np.zeros(7, np.float32)) == 0.0
  medians = np.array([0.0, 90.0, 169.9, 170.0, 250.0], np.float32)
  assert f0_range.in_range(medians, max_hz=170).tolist() == [True, True, True, False, False]
  assert f0_range.in_range(medians, min_hz=170).tolist() == [False, False, False, True, True]
  assert f0_range.in_range(medians).all()


def test_split_medians_are_the_records_medians_and_are_cached(tiny_data_config, tiny_prepared,
                                                              monkeypatch):
  records = list(pipeline.iterate_examples(tiny_data_config, "train", prepared=tiny_prepared))
  expected = [f0_range.median_voiced_f0(r["f0"]) for r in records]
  medians = f0_range.split_medians(tiny_prepared, "train")
  np.testing.assert_allclose(medians, expected, atol=1e-3)
  assert len(set(np.round(medians))) > 3  # a spread of voices to split
  assert os.path.exists(os.path.join(tiny_prepared.builder_dir, f0_range.MEDIANS_FILE))

  def no_reading(*args, **kwargs):
    raise AssertionError("the cached medians were not used")

  monkeypatch.setattr(type(tiny_prepared), "data_source", no_reading)
  np.testing.assert_array_equal(f0_range.split_medians(tiny_prepared, "train"), medians)


def _threshold(prepared, split):
  """A threshold with utterances on both sides."""
  return float(np.median(f0_range.split_medians(prepared, split))) + 0.5


def test_training_sees_only_utterances_below_the_limit(tiny_data_config, tiny_prepared):
  config = tiny_data_config
  config.data.bucket_batch_sizes = (1, 1, 1)
  limit = _threshold(tiny_prepared, "train")
  config.data.train_max_f0_hz = limit
  medians = f0_range.split_medians(tiny_prepared, "train")
  index, _ = tiny_prepared.split_lengths("train")
  low = set(index[medians < limit].tolist())
  assert 0 < len(low) < len(index)
  iterator = pipeline.make_train_iterator(config, tiny_prepared, 0, 1)
  seen = set()
  for _ in range(2 * iterator.per_epoch):
    seen.update(next(iterator)["example_index"].tolist())
  iterator.close()
  assert seen == low  # every low utterance, and nothing else, over two epochs


def test_every_evaluation_path_scores_the_same_high_utterances(tiny_data_config, tiny_prepared):
  config = tiny_data_config
  split = "test"
  limit = _threshold(tiny_prepared, split)
  config.data.eval_min_f0_hz = limit
  medians = f0_range.split_medians(tiny_prepared, split)
  index, _ = tiny_prepared.split_lengths(split)
  high_positions = np.flatnonzero(medians >= limit)
  assert 0 < len(high_positions) < len(index)
  for max_examples in (-1, 1):
    expected = high_positions if max_examples < 0 else high_positions[:max_examples]
    batches = pipeline.make_eval_batches(config, split, prepared=tiny_prepared,
                                         max_examples=max_examples)
    scored = sorted(int(i) for b in batches for i in b["example_index"][b["valid"]])
    assert scored == sorted(index[expected].tolist())
    ids = [e.key for e in examples_lib.split_examples(config, split, max_examples)]
    assert ids == conditions.split_ids(config, split, max_examples)
    assert len(ids) == len(expected)


def test_negative_limits_are_rejected(tiny_data_config):
  config = tiny_data_config
  config.data.train_max_f0_hz = -1.0
  with pytest.raises(config_check.ConfigError, match="data.train_max_f0_hz"):
    config_check.validate_config(config)
