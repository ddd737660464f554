"""Bootstrap intervals for multi-seed WER/CER, checked against cases with a known answer."""

import numpy as np
import pytest

from echo_jax.experiments import stats

Z95 = 1.959964


def width(interval) -> float:
  return interval[2] - interval[1]


def test_one_seed_binomial_errors_match_the_normal_interval():
  # 1000 utterances of 10 words, each word wrong with probability 0.2: the corpus rate is a
  # proportion over 10000 words, so the 95 % interval is about 2 * 1.96 * sqrt(p (1 - p) / N).
  rng = np.random.default_rng(0)
  lengths = np.full(1000, 10)
  errors = rng.binomial(10, 0.2, size=(1, lengths.size))
  rate, low, high = stats.bootstrap_interval(errors, lengths, num_resamples=4000, seed=1)
  assert rate == pytest.approx(errors.sum() / lengths.sum())
  expected = 2 * Z95 * np.sqrt(rate * (1 - rate) / lengths.sum())
  assert high - low == pytest.approx(expected, rel=0.08)
  assert low < rate < high
  assert (low + high) / 2 == pytest.approx(rate, abs=0.1 * expected)


def test_seed_level_matches_the_interval_of_a_mean():
  # Each seed makes the same error rate on every utterance, so only the seed resampling varies:
  # the interval is that of a mean of S values, about 2 * 1.96 * sd / sqrt(S).
  rng = np.random.default_rng(2)
  seed_rates = rng.normal(0.15, 0.02, size=300)
  lengths = np.full(50, 8.0)
  errors = seed_rates[:, None] * lengths[None, :]
  rate, low, high = stats.bootstrap_interval(errors, lengths, num_resamples=4000, seed=3)
  assert rate == pytest.approx(seed_rates.mean())
  assert high - low == pytest.approx(2 * Z95 * seed_rates.std() / np.sqrt(seed_rates.size),
                                     rel=0.08)


def test_constant_error_rate_gives_a_zero_width_interval():
  lengths = np.array([3, 7, 12, 5, 9, 20])
  errors = np.tile(0.25 * lengths, (4, 1))  # every seed, every utterance: 25 % of its words
  assert stats.bootstrap_interval(errors, lengths, num_resamples=500) == pytest.approx(
      (0.25, 0.25, 0.25), abs=1e-12)


def test_a_variant_against_itself_differs_by_exactly_zero():
  rng = np.random.default_rng(4)
  lengths = rng.integers(1, 30, size=200)
  errors = rng.binomial(lengths, 0.3, size=(3, lengths.size))
  assert stats.paired_difference_interval(errors, errors.copy(), lengths,
                                          num_resamples=500) == (0.0, 0.0, 0.0)


def shared_difficulty(seed: int, num_seeds_a: int = 3, num_seeds_b: int = 3):
  """Two variants on utterances of widely varying difficulty; b makes 10 % fewer errors."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(5, 25, size=400)
  difficulty = rng.beta(0.6, 2.0, size=lengths.size)  # per-utterance error probability
  errors_a = rng.binomial(lengths, difficulty, size=(num_seeds_a, lengths.size))
  errors_b = rng.binomial(lengths, 0.9 * difficulty, size=(num_seeds_b, lengths.size))
  return errors_a, errors_b, lengths


def test_pairing_narrows_the_interval_when_difficulty_is_shared():
  errors_a, errors_b, lengths = shared_difficulty(5)
  paired = stats.paired_difference_interval(errors_a, errors_b, lengths, seed=6)
  unpaired = stats.paired_difference_interval(errors_a, errors_b, lengths, seed=6, paired=False)
  assert paired[0] == unpaired[0] == pytest.approx(
      stats.corpus_rate(errors_a, lengths) - stats.corpus_rate(errors_b, lengths))
  assert width(paired) < 0.6 * width(unpaired)
  assert paired[1] > 0  # the 10 % improvement is resolved only when paired
  assert unpaired[1] < 0


def test_different_seed_counts_are_resampled_independently():
  errors_a, errors_b, lengths = shared_difficulty(7, num_seeds_a=3, num_seeds_b=2)
  difference, low, high = stats.paired_difference_interval(errors_a, errors_b, lengths, seed=8)
  assert low < difference < high
  assert difference == pytest.approx(
      stats.corpus_rate(errors_a, lengths) - stats.corpus_rate(errors_b, lengths))


def test_results_are_fixed_by_the_seed_and_not_by_the_chunking(monkeypatch):
  errors_a, errors_b, lengths = shared_difficulty(9)
  first = stats.bootstrap_interval(errors_a, lengths, num_resamples=300, seed=11)
  assert stats.bootstrap_interval(errors_a, lengths, num_resamples=300, seed=11) == first
  assert stats.bootstrap_interval(errors_a, lengths, num_resamples=300, seed=12) != first
  difference = stats.paired_difference_interval(errors_a, errors_b, lengths, num_resamples=300,
                                                seed=11)
  monkeypatch.setattr(stats, "MAX_CHUNK_ELEMENTS", 7 * lengths.size)  # 7 replicates per chunk
  assert stats.bootstrap_interval(errors_a, lengths, num_resamples=300, seed=11) == first
  assert stats.paired_difference_interval(errors_a, errors_b, lengths, num_resamples=300,
                                          seed=11) == difference


def test_one_dimensional_errors_are_one_seed_and_bad_inputs_are_refused():
  lengths = np.array([4, 6, 10])
  errors = np.array([1, 0, 3])
  assert stats.bootstrap_interval(errors, lengths, num_resamples=50) == stats.bootstrap_interval(
      errors[None], lengths, num_resamples=50)
  with pytest.raises(ValueError, match="utterances"):
    stats.bootstrap_interval(np.ones((2, 4)), lengths)
  with pytest.raises(ValueError, match="non-negative"):
    stats.bootstrap_interval(-errors, lengths)
  with pytest.raises(ValueError, match="lengths"):
    stats.bootstrap_interval(errors, np.zeros(3))
  with pytest.raises(ValueError, match="confidence"):
    stats.bootstrap_interval(errors, lengths, confidence=1.0)
