"""Word errors by how often the word occurs in the training transcripts.

Does a recogniser listen, or does it spell back words it has memorised? Each reference word of
an evaluation is counted as right (jiwer's alignment matches it) or wrong (substituted or
deleted), grouped by the number of times the word occurs in the training transcripts: a model
that listens gets unseen words about as right as rare ones; a model that memorises spellings gets
only its frequent words right. Inserted words belong to no reference word and are counted apart.

Texts are compared after `echo_jax.inference.scoring.normalise`, as every other error rate.
"""

import collections
import json
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jiwer

from echo_jax.errors import UserError
from echo_jax.inference.scoring import normalise

# (label, least count, most count or None for no upper bound)
BANDS: Tuple[Tuple[str, int, Optional[int]], ...] = (
    ("unseen", 0, 0), ("1-2", 1, 2), ("3-10", 3, 10), ("11-100", 11, 100), (">100", 101, None))


def band_of(count: int) -> str:
  for label, low, high in BANDS:
    if count >= low and (high is None or count <= high):
      return label
  raise ValueError(f"a word count must be >= 0, got {count}")


def word_counts(transcripts: Iterable[str]) -> collections.Counter:
  """How often each normalised word occurs in `transcripts`."""
  return collections.Counter(w for text in transcripts for w in normalise(text).split())


def reference_word_hits(reference: str, hypothesis: str) -> Tuple[List[str], List[bool], int]:
  """(reference words, whether each is matched by the alignment, inserted word count)."""
  reference, hypothesis = normalise(reference), normalise(hypothesis)
  words = reference.split()
  if not words:
    return [], [], len(hypothesis.split())
  out = jiwer.process_words(reference, hypothesis)
  hits = [False] * len(words)
  insertions = 0
  for chunk in out.alignments[0]:
    if chunk.type == "equal":
      for i in range(chunk.ref_start_idx, chunk.ref_end_idx):
        hits[i] = True
    elif chunk.type == "insert":
      insertions += chunk.hyp_end_idx - chunk.hyp_start_idx
  return words, hits, insertions


def errors_by_frequency(pairs: Sequence[Tuple[str, str]],
                        train_counts: Mapping[str, int]) -> Dict:
  """{"bands": {label: {words, errors, word_error_rate, distinct_words}}, "insertions",
  "words"} over (reference, hypothesis) pairs; a band's word_error_rate is its substituted and
  deleted reference words over its reference words (None for a band without words)."""
  words = collections.Counter()
  errors = collections.Counter()
  distinct = collections.defaultdict(set)
  insertions = 0
  for reference, hypothesis in pairs:
    ref_words, hits, inserted = reference_word_hits(reference, hypothesis)
    insertions += inserted
    for word, hit in zip(ref_words, hits):
      band = band_of(int(train_counts.get(word, 0)))
      words[band] += 1
      errors[band] += not hit
      distinct[band].add(word)
  bands = {label: {"words": words[label], "errors": errors[label],
                   "word_error_rate": errors[label] / words[label] if words[label] else None,
                   "distinct_words": len(distinct[label])}
           for label, _, _ in BANDS}
  return {"bands": bands, "insertions": insertions, "words": sum(words.values())}


def read_training_transcripts(path: str) -> List[str]:
  """Training transcripts from a corpus manifest (JSONL rows with "text" or "transcript"; rows
  with a "split" other than "train" are skipped) or a plain text file, one transcript a line."""
  try:
    with open(path, encoding="utf-8") as handle:
      lines = [line.strip() for line in handle if line.strip()]
  except OSError as err:
    raise UserError(f"cannot read the training transcripts {path}: {err}; pass the corpus "
                    "manifest (e.g. data/echo_speech_corpus/manifest.jsonl) or a text file")
  if not path.endswith(".jsonl"):
    return lines
  texts = []
  for number, line in enumerate(lines, 1):
    try:
      row = json.loads(line)
    except json.JSONDecodeError as err:
      raise UserError(f"{path}:{number} is not JSON ({err}); a .jsonl manifest has one object "
                      "a line")
    text = row.get("text", row.get("transcript"))
    if text is None:
      raise UserError(f"{path}:{number} has no \"text\" or \"transcript\" field")
    if row.get("split", "train") == "train":
      texts.append(str(text))
  if not texts:
    raise UserError(f"{path} has no training rows (split \"train\")")
  return texts


def read_predictions(path: str, hypothesis_key: str) -> List[Tuple[str, str]]:
  """(reference, hypothesis) pairs of an evaluate predictions.jsonl; rows that failed to decode
  (an "error" field) are left out."""
  pairs = []
  with open(path, encoding="utf-8") as handle:
    for number, line in enumerate(handle, 1):
      if not line.strip():
        continue
      row = json.loads(line)
      if "error" in row:
        continue
      if hypothesis_key not in row:
        keys = sorted(k for k in row if "hypothesis" in k)
        raise UserError(f"{path}:{number} has no {hypothesis_key!r}; this file has {keys}")
      pairs.append((row["reference"], row[hypothesis_key]))
  return pairs


def format_table(result: Mapping) -> str:
  lines = [f"{'training count':<15} {'distinct':>8} {'words':>6} {'wrong':>6} {'word err':>8}"]
  for label, stats in result["bands"].items():
    rate = "-" if stats["word_error_rate"] is None else f"{100 * stats['word_error_rate']:.1f} %"
    lines.append(f"{label:<15} {stats['distinct_words']:>8} {stats['words']:>6} "
                 f"{stats['errors']:>6} {rate:>8}")
  lines.append(f"inserted words: {result['insertions']} (against {result['words']} reference "
               "words)")
  return "\n".join(lines) + "\n"
