"""Long audio: split into overlapping chunks the model can take, then stitch the chunk transcripts.

Chunking: chunks of `chunk_samples` start every `chunk_samples - overlap_samples` samples; the
last chunk ends at the end of the audio (it is shifted left to keep a full length when the audio
allows, so no chunk is a tiny tail). Audio that fits in one chunk is one chunk.

Stitching rule (on words, applied left to right, chunk by chunk):
  1. Align the end of the text so far with the start of the next chunk's text: for every overlap
     size k (1..max_overlap) compare the last k words of the left with the first k words of the
     right position by position and count equal words.
  2. Take the k with the most equal words (ties: the highest fraction of equal words, then the k
     closest to the expected overlap, then the smaller k). It is accepted when at least half of
     the k positions match, with at least one match, and a single matching word only for k <= 2
     (a lone common word far apart is chance).
  3. No accepted alignment (recognition errors or words cut at the chunk edges in the overlap):
     k = the expected overlap, i.e. the overlap's duration times the two chunks' word rate.
  4. Inside the k-word overlap, keep the left's words for the first half and the right's for the
     second half: words near a chunk's edge may be cut mid-word, those near its middle are not.
With no expected overlap given (stitch_pair's default) step 3 joins the texts unchanged.
"""

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np


def chunk_bounds(num_samples: int, chunk_samples: int,
                 overlap_samples: int) -> List[Tuple[int, int]]:
  """[(start, end)) sample ranges covering [0, num_samples) with the overlap described above."""
  if chunk_samples <= 0:
    raise ValueError(f"chunk_samples must be positive, got {chunk_samples}")
  if not 0 <= overlap_samples < chunk_samples:
    raise ValueError(f"overlap_samples must be in [0, chunk_samples={chunk_samples}), "
                     f"got {overlap_samples}; lower config.decode.chunk_overlap_seconds")
  if num_samples <= chunk_samples:
    return [(0, int(num_samples))]
  stride = chunk_samples - overlap_samples
  bounds = []
  start = 0
  while True:
    end = start + chunk_samples
    if end >= num_samples:
      start = max(0, num_samples - chunk_samples)
      bounds.append((int(start), int(num_samples)))
      return bounds
    bounds.append((int(start), int(end)))
    start += stride


def split_chunks(wave: np.ndarray, chunk_samples: int, overlap_samples: int) -> List[np.ndarray]:
  return [wave[start:end] for start, end in chunk_bounds(len(wave), chunk_samples, overlap_samples)]


def _best_overlap(left: Sequence[str], right: Sequence[str], max_overlap: int,
                  expected: float = 0.0) -> int:
  """Overlap size k accepted by steps 1-2 of the module docstring's rule (0: none)."""
  best_key, best_k = None, 0
  for k in range(1, min(len(left), len(right), max_overlap) + 1):
    tail, head = left[len(left) - k:], right[:k]
    matches = sum(a == b for a, b in zip(tail, head))
    if matches == 0 or 2 * matches < k or (matches == 1 and k > 2):
      continue
    key = (matches, matches / k, -abs(k - expected), -k)
    if best_key is None or key > best_key:
      best_key, best_k = key, k
  return best_k


def stitch_pair(left: Sequence[str], right: Sequence[str], max_overlap: int,
                expected_overlap: Optional[float] = None) -> List[str]:
  """Joins two word sequences whose ends may overlap (see the module docstring);
  expected_overlap: about how many words the overlap holds (None: unknown)."""
  left, right = list(left), list(right)
  k = _best_overlap(left, right, max_overlap, expected_overlap or 0.0)
  if k == 0 and expected_overlap is not None:
    k = min(int(round(expected_overlap)), len(left), len(right), max_overlap)
  half = k // 2
  return left[:len(left) - k + half] + right[half:]


def stitch(chunk_words: Sequence[Sequence[str]], max_overlaps: Union[int, Sequence[int]],
           expected_overlaps: Optional[Sequence[float]] = None) -> List[str]:
  """Stitches consecutive chunks' words into one word list; max_overlaps[i] bounds the overlap
  between chunk i and chunk i+1 (an int applies to every pair), expected_overlaps[i] estimates it."""
  pairs = max(len(chunk_words) - 1, 0)
  if isinstance(max_overlaps, int):
    max_overlaps = [max_overlaps] * pairs
  expected_overlaps = [None] * pairs if expected_overlaps is None else list(expected_overlaps)
  if len(max_overlaps) != pairs or len(expected_overlaps) != pairs:
    raise ValueError(f"need {pairs} overlap bounds and estimates, got {len(max_overlaps)} and "
                     f"{len(expected_overlaps)}")
  out: List[str] = list(chunk_words[0]) if chunk_words else []
  for words, max_overlap, expected in zip(chunk_words[1:], max_overlaps, expected_overlaps):
    out = stitch_pair(out, words, max_overlap, expected)
  return out


def max_overlap_words(overlap_seconds: float, words_per_second: float = 4.0) -> int:
  """Upper bound on the words an overlap can hold (fast speech is about 3-4 words/s), doubled for
  chunk-edge fragments, at least 2."""
  return max(2, int(np.ceil(2.0 * overlap_seconds * words_per_second)))


def pair_overlap_words(bounds: Sequence[Tuple[int, int]], sample_rate: int) -> List[int]:
  """max_overlap_words for each consecutive pair of chunk_bounds (the last overlap can be
  longer)."""
  return [max_overlap_words(max(prev_end - start, 0) / sample_rate)
          for (_, prev_end), (start, _) in zip(bounds[:-1], bounds[1:])]


def expected_overlap_words(chunk_words: Sequence[Sequence[str]],
                           bounds: Sequence[Tuple[int, int]]) -> List[float]:
  """Per consecutive pair: overlap samples x the pair's words per sample."""
  out = []
  for i in range(len(bounds) - 1):
    (start_a, end_a), (start_b, end_b) = bounds[i], bounds[i + 1]
    rate = (len(chunk_words[i]) + len(chunk_words[i + 1])) / max((end_a - start_a) +
                                                                  (end_b - start_b), 1)
    out.append(max(end_a - start_b, 0) * rate)
  return out


def stitch_texts(texts: Sequence[str], bounds: Sequence[Tuple[int, int]], sample_rate: int) -> str:
  """Chunk transcripts (one per chunk_bounds entry) -> one transcript."""
  chunk_words = [text.split() for text in texts]
  return " ".join(stitch(chunk_words, pair_overlap_words(bounds, sample_rate),
                         expected_overlap_words(chunk_words, bounds)))
