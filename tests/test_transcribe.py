"""Transcription: chunk boundaries on arrays, the stitching rule on words, and the file pipeline."""

import numpy as np
import pytest

from echo_jax import longform

WORDS = ("the quick brown fox jumps over the lazy dog while seven wizards quietly judge "
         "boxing matches in the old town hall and nobody notices the rain").split()


@pytest.mark.parametrize("num_samples,chunk,overlap", [
    (1, 30, 10), (30, 30, 10), (31, 30, 10), (100, 30, 10), (95, 30, 10), (1000, 64, 0),
    (12345, 1000, 250), (16000 * 40, 16000 * 8, 16000 * 2)])
def test_chunk_bounds_cover_everything_with_at_least_the_overlap(num_samples, chunk, overlap):
  bounds = longform.chunk_bounds(num_samples, chunk, overlap)
  assert bounds[0][0] == 0 and bounds[-1][1] == num_samples
  for start, end in bounds:
    assert 0 <= start < end <= num_samples
    assert end - start == min(chunk, num_samples)  # every chunk full length (no tiny tail)
  for (start_a, end_a), (start_b, end_b) in zip(bounds[:-1], bounds[1:]):
    assert start_a < start_b
    assert end_a - start_b >= overlap  # consecutive chunks overlap by at least `overlap`
  # Minimal count: one more chunk would not be needed.
  stride = chunk - overlap
  expected = 1 if num_samples <= chunk else 1 + int(np.ceil((num_samples - chunk) / stride))
  assert len(bounds) == expected


def test_split_chunks_are_slices_of_the_concatenated_input():
  rng = np.random.default_rng(0)
  # A synthetic long input built by concatenating "utterances" (noise bursts of different lengths).
  parts = [rng.normal(size=n).astype(np.float32) for n in (7000, 12000, 5000, 9000)]
  wave = np.concatenate(parts)
  bounds = longform.chunk_bounds(len(wave), 8000, 2000)
  chunks = longform.split_chunks(wave, 8000, 2000)
  assert len(chunks) == len(bounds)
  for (start, end), chunk in zip(bounds, chunks):
    np.testing.assert_array_equal(chunk, wave[start:end])
  covered = np.zeros(len(wave), bool)
  for start, end in bounds:
    covered[start:end] = True
  assert covered.all()


def test_bad_chunk_settings_name_the_fix():
  with pytest.raises(ValueError, match="chunk_overlap_seconds"):
    longform.chunk_bounds(100, 30, 30)
  with pytest.raises(ValueError, match="chunk_samples"):
    longform.chunk_bounds(100, 0, 0)


def _windows(words, size, step):
  """Word windows of `size` starting every `step` (the last one ends at the end)."""
  out, start = [], 0
  while True:
    end = min(start + size, len(words))
    out.append((start, end))
    if end == len(words):
      return out
    start += step


@pytest.mark.parametrize("size,step", [(6, 4), (8, 5), (10, 7), (5, 3), (12, 9)])
def test_stitch_recovers_the_text_without_duplicated_overlap_words(size, step):
  windows = _windows(WORDS, size, step)
  chunks = [WORDS[start:end] for start, end in windows]
  stitched = longform.stitch(chunks, max_overlaps=size)
  assert stitched == WORDS


@pytest.mark.parametrize("seed", range(6))
def test_stitch_handles_words_cut_at_chunk_edges(seed):
  # A chunk edge inside a word gives a fragment at the end of the left chunk and at the start of
  # the right one; the stitched text keeps the whole words from the overlap's middle.
  rng = np.random.default_rng(seed)
  size, step = 9, 6
  chunks = []
  for start, end in _windows(WORDS, size, step):
    words = list(WORDS[start:end])
    if end < len(WORDS) and rng.random() < 0.7:  # cut the word after the chunk's end in half
      words.append(WORDS[end][: max(1, len(WORDS[end]) // 2)] + "-")
    if start > 0 and rng.random() < 0.7:  # the right chunk begins inside the previous word
      words.insert(0, "-" + WORDS[start - 1][len(WORDS[start - 1]) // 2:])
    chunks.append(words)
  assert longform.stitch(chunks, max_overlaps=size + 2) == WORDS


def test_stitch_with_recognition_errors_in_the_overlap_keeps_one_copy():
  left = "we walked to the old town hall".split()
  right = "the olt town hall was closed".split()  # one word misrecognised in the overlap
  assert longform.stitch_pair(left, right, 6) == "we walked to the old town hall was closed".split()


def test_stitch_without_a_credible_alignment_joins_as_is():
  left = "alpha beta gamma".split()
  right = "delta epsilon zeta".split()
  assert longform.stitch_pair(left, right, 4) == left + right
  # A single repeated common word far apart is not an alignment.
  left = "the cat sat on a mat".split()
  right = "over the hills and far away".split()
  assert longform.stitch_pair(left, right, 6) == left + right


def test_stitch_texts_uses_the_real_overlap_of_each_pair():
  sample_rate = 100
  bounds = longform.chunk_bounds(1000, 400, 100)  # the last chunk overlaps more than 1 s
  overlaps = longform.pair_overlap_words(bounds, sample_rate)
  assert len(overlaps) == len(bounds) - 1
  real = [prev_end - start for (_, prev_end), (start, _) in zip(bounds[:-1], bounds[1:])]
  assert overlaps == [longform.max_overlap_words(r / sample_rate) for r in real]
  assert longform.max_overlap_words(2.0) == 16
  text = "one two three four five six seven eight nine ten"
  words = text.split()
  parts = [" ".join(words[0:4]), " ".join(words[3:7]), " ".join(words[5:10])]
  assert longform.stitch_texts(parts, [(0, 400), (300, 700), (600, 1000)], sample_rate) == text
