"""Bootstrap confidence intervals for WER/CER of several training seeds on one test set.

An ablation variant is trained with S seeds and every seed is scored on the same U test
utterances, so its inputs are per-utterance edit counts errors [S, U] (word or character edits)
and the reference lengths lengths [U]. A seed's corpus rate is sum(errors) / sum(lengths) and a
variant's rate is the mean of its seeds' corpus rates.

Two sources of uncertainty matter, so the bootstrap has two levels: seeds are resampled with
replacement (training noise) and utterances are resampled with replacement (which test sentences
were drawn), one utterance resample shared by every seed of a replicate since all seeds saw the
same sentences. The interval is the percentile interval of the replicates.

Comparing two variants, pairing is what makes small effects visible: each replicate applies the
same utterance resample to both, so per-utterance difficulty (a hard sentence is hard for every
model) cancels in the difference. Seeds are paired too when both variants have the same count
(seed k of each shares the data order and initialisation draw); otherwise each variant's seeds are
resampled on their own.

Replicates are drawn as resample counts per utterance (and per seed), so a replicate's rate is a
matrix product; they are processed in chunks of at most MAX_CHUNK_ELEMENTS counts, and the draws do
not depend on the chunking.
"""

from typing import Optional, Tuple

import numpy as np

MAX_CHUNK_ELEMENTS = 1 << 22  # utterance counts held at once (32 MiB as int64)

Interval = Tuple[float, float, float]  # (point estimate, low, high)


def _check_errors(errors, num_utterances: Optional[int], name: str) -> np.ndarray:
  errors = np.asarray(errors, np.float64)
  if errors.ndim == 1:  # one seed
    errors = errors[None, :]
  if errors.ndim != 2 or errors.shape[0] == 0 or errors.shape[1] == 0:
    raise ValueError(f"{name} must be [seeds, utterances] and non-empty, got {errors.shape}")
  if num_utterances is not None and errors.shape[1] != num_utterances:
    raise ValueError(f"{name} has {errors.shape[1]} utterances but lengths has {num_utterances}")
  if not np.all(np.isfinite(errors)) or np.any(errors < 0):
    raise ValueError(f"{name} must hold finite non-negative edit counts")
  return errors


def _check_lengths(lengths) -> np.ndarray:
  lengths = np.asarray(lengths, np.float64)
  if lengths.ndim != 1 or lengths.size == 0:
    raise ValueError(f"lengths must be [utterances] and non-empty, got {lengths.shape}")
  if not np.all(np.isfinite(lengths)) or np.any(lengths < 0) or lengths.sum() <= 0:
    raise ValueError("lengths must be finite, non-negative and not all zero")
  return lengths


def _check_settings(num_resamples: int, confidence: float) -> None:
  if int(num_resamples) < 1:
    raise ValueError(f"num_resamples must be at least 1, got {num_resamples}")
  if not 0.0 < float(confidence) < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def corpus_rate(errors, lengths) -> float:
  """Mean over seeds of each seed's corpus rate sum(errors) / sum(lengths)."""
  lengths = _check_lengths(lengths)
  errors = _check_errors(errors, lengths.size, "errors")
  return float(np.mean(errors.sum(axis=1) / lengths.sum()))


def _resample_counts(rng: np.random.Generator, num_rows: int, size: int) -> np.ndarray:
  """[num_rows, size] float64: how often each of `size` items is drawn in `size` draws with
  replacement, one row per replicate."""
  picks = rng.integers(0, size, size=(num_rows, size))
  picks += np.arange(num_rows)[:, None] * size
  return np.bincount(picks.ravel(), minlength=num_rows * size).reshape(num_rows, size).astype(
      np.float64)


def _replicate_rates(errors: np.ndarray, lengths: np.ndarray, utterance_counts: np.ndarray,
                     seed_counts: np.ndarray) -> np.ndarray:
  """[R] mean over resampled seeds of each seed's corpus rate on the resampled utterances.

  A replicate whose resampled references are all empty has no rate (NaN)."""
  numerators = utterance_counts @ errors.T  # [R, S]
  denominators = utterance_counts @ lengths  # [R]
  seed_means = np.sum(seed_counts * numerators, axis=1) / errors.shape[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(denominators > 0, seed_means / denominators, np.nan)


def _chunks(num_resamples: int, num_utterances: int):
  rows = max(1, MAX_CHUNK_ELEMENTS // num_utterances)
  for start in range(0, num_resamples, rows):
    yield min(rows, num_resamples - start)


def _percentiles(replicates: np.ndarray, confidence: float) -> Tuple[float, float]:
  replicates = replicates[np.isfinite(replicates)]
  if replicates.size == 0:
    return float("nan"), float("nan")
  tail = (1.0 - confidence) / 2.0
  low, high = np.quantile(replicates, [tail, 1.0 - tail])
  return float(low), float(high)


def _generators(seed: int, count: int):
  return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def bootstrap_interval(errors, lengths, num_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> Interval:
  """(mean over seeds of the corpus rate, low, high) of one variant; errors [S, U], lengths [U].

  Two-level bootstrap: each replicate resamples the S seeds and the U utterances with
  replacement (one utterance resample for all its seeds); the bounds are percentiles of the
  replicate rates. Deterministic given `seed`.
  """
  _check_settings(num_resamples, confidence)
  lengths = _check_lengths(lengths)
  errors = _check_errors(errors, lengths.size, "errors")
  num_seeds, num_utterances = errors.shape
  utterance_rng, seed_rng = _generators(seed, 2)
  replicates = []
  for rows in _chunks(int(num_resamples), num_utterances):
    utterance_counts = _resample_counts(utterance_rng, rows, num_utterances)
    seed_counts = _resample_counts(seed_rng, rows, num_seeds)
    replicates.append(_replicate_rates(errors, lengths, utterance_counts, seed_counts))
  low, high = _percentiles(np.concatenate(replicates), confidence)
  return corpus_rate(errors, lengths), low, high


def paired_difference_interval(errors_a, errors_b, lengths, num_resamples: int = 2000,
                               confidence: float = 0.95, seed: int = 0,
                               paired: bool = True) -> Interval:
  """(rate of a - rate of b, low, high) for two variants scored on the same utterances.

  errors_a [S_a, U], errors_b [S_b, U], lengths [U]. Each replicate applies one utterance
  resample to both variants, and one seed resample to both when S_a == S_b (else each variant's
  seeds are resampled independently). paired=False gives each variant its own utterance resample
  instead: the interval one would get by ignoring that the test set is shared, for comparison.
  Deterministic given `seed`.
  """
  _check_settings(num_resamples, confidence)
  lengths = _check_lengths(lengths)
  errors_a = _check_errors(errors_a, lengths.size, "errors_a")
  errors_b = _check_errors(errors_b, lengths.size, "errors_b")
  num_utterances = lengths.size
  seeds_a, seeds_b = errors_a.shape[0], errors_b.shape[0]
  utterance_rng_a, seed_rng_a, utterance_rng_b, seed_rng_b = _generators(seed, 4)
  share_seeds = paired and seeds_a == seeds_b
  differences = []
  for rows in _chunks(int(num_resamples), num_utterances):
    utterances_a = _resample_counts(utterance_rng_a, rows, num_utterances)
    utterances_b = (utterances_a if paired else
                    _resample_counts(utterance_rng_b, rows, num_utterances))
    seed_counts_a = _resample_counts(seed_rng_a, rows, seeds_a)
    seed_counts_b = seed_counts_a if share_seeds else _resample_counts(seed_rng_b, rows, seeds_b)
    differences.append(_replicate_rates(errors_a, lengths, utterances_a, seed_counts_a) -
                       _replicate_rates(errors_b, lengths, utterances_b, seed_counts_b))
  low, high = _percentiles(np.concatenate(differences), confidence)
  return corpus_rate(errors_a, lengths) - corpus_rate(errors_b, lengths), low, high
