"""Word n-gram language models: interpolated modified Kneser-Ney, written as an ARPA file.

    model = estimate(sentences, order=3)       # sentences: iterables of words
    write_arpa(model, "lm.arpa")               # KenLM (and the CTC lexicon decoder) reads it

The estimate follows Chen & Goodman (1998) as KenLM's lmplz does: the highest order uses raw
counts, lower orders continuation counts (how many distinct words precede the n-gram; an n-gram
starting with <s> keeps its raw count, nothing can precede it), three discounts per order from the
counts of counts, and interpolation down to a uniform distribution over the vocabulary
(<unk> included). Interpolated probabilities are what an ARPA file stores for seen n-grams; the
interpolation weight gamma(h) of a context is its backoff weight, so the file's backoff rule
reproduces the interpolated model exactly and every context's distribution sums to 1
(tests/test_ngram_lm.py).

Why not a library: KenLM's estimator (lmplz) is not on PyPI (its pip package only queries), and
the pure-Python ARPA builder there (arpabo 0.3.0, Kneser-Ney) writes every backoff weight as 0:
on this corpus its P(w | "the") sums to 1.30 over the vocabulary and P(w | "of the") to 1.40
(this module's: 1.0000).
"""

import collections
import dataclasses
import math
import os
import tempfile
from typing import Dict, Iterable, List, Sequence, Tuple

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
NEVER_LOG10 = -99.0  # ARPA's log10 probability of <s>, which is never predicted

Ngram = Tuple[str, ...]


@dataclasses.dataclass
class NgramModel:
  """probabilities[n - 1]: {n-gram: log10 P(last word | the words before)};
  backoffs[n - 1]: {n-gram: log10 gamma} for the n-grams that are the context of a longer one."""
  order: int
  probabilities: List[Dict[Ngram, float]]
  backoffs: List[Dict[Ngram, float]]

  @property
  def vocabulary(self) -> List[str]:
    return [gram[0] for gram in self.probabilities[0]]

  def log10_prob(self, context: Sequence[str], word: str) -> float:
    """log10 P(word | context) by the ARPA backoff rule (context: earlier words, oldest first)."""
    if (word,) not in self.probabilities[0]:
      word = UNK
    context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
    backoff = 0.0
    while True:
      gram = context + (word,)
      found = self.probabilities[len(gram) - 1].get(gram)
      if found is not None:
        return found + backoff
      backoff += self.backoffs[len(context) - 1].get(context, 0.0)
      context = context[1:]


def _discounts(counts: Iterable[int]) -> Tuple[float, float, float]:
  """Modified Kneser-Ney discounts D1, D2, D3+ from the counts of counts (Chen & Goodman); where
  the text is too small for the estimate (a count of counts is 0, or a discount falls outside
  (0, k]) KenLM's fallback (0.5, 1, 1.5)."""
  of = collections.Counter(c for c in counts if c <= 4)  # n_k: how many occur exactly k times
  n1, n2, n3, n4 = (of[i] for i in (1, 2, 3, 4))
  if min(n1, n2, n3, n4) == 0:
    return FALLBACK_DISCOUNTS
  y = n1 / (n1 + 2 * n2)
  estimated = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
  if not all(0 < d <= k for k, d in enumerate(estimated, start=1)):
    return FALLBACK_DISCOUNTS
  return estimated


def estimate(sentences: Iterable[Sequence[str]], order: int = 3) -> NgramModel:
  """Interpolated modified Kneser-Ney of `order` over the sentences' words (<s>/</s> added)."""
  if order < 1:
    raise ValueError(f"order must be >= 1, got {order}")
  raw: Dict[Ngram, int] = collections.Counter()
  for words in sentences:
    padded = (BOS,) + tuple(words) + (EOS,)
    for n in range(1, order + 1):
      for i in range(1 if n == 1 else 0, len(padded) - n + 1):  # <s> alone is never predicted
        raw[padded[i:i + n]] += 1
  if not raw:
    raise ValueError("no text to estimate a language model from")
  # Adjusted counts: raw for the highest order and for n-grams starting with <s>; otherwise the
  # number of distinct words preceding the n-gram.
  counts: List[Dict[Ngram, int]] = [collections.Counter() for _ in range(order)]
  for gram, count in raw.items():
    if len(gram) == order or gram[0] == BOS:
      counts[len(gram) - 1][gram] += count
    if len(gram) > 1:
      counts[len(gram) - 2][gram[1:]] += 1
  vocabulary = sorted({gram[0] for gram in counts[0]} | {UNK})

  probabilities: List[Dict[Ngram, float]] = [dict() for _ in range(order)]
  backoffs: List[Dict[Ngram, float]] = [dict() for _ in range(order)]
  lower_prob: Dict[Ngram, float] = {}  # interpolated P of the order below, linear
  for n in range(1, order + 1):
    level = counts[n - 1]
    discount = _discounts(level.values())
    totals: Dict[Ngram, int] = collections.Counter()
    kinds: Dict[Ngram, List[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for gram, count in level.items():
      totals[gram[:-1]] += count
      kinds[gram[:-1]][min(count, 3) - 1] += 1
    gammas = {context: sum(d * k for d, k in zip(discount, kinds[context])) / total
              for context, total in totals.items()}
    linear: Dict[Ngram, float] = {}
    if n == 1:
      uniform = gammas[()] / len(vocabulary)
      for word in vocabulary:
        count = level.get((word,), 0)
        linear[(word,)] = (max(count - discount[min(count, 3) - 1], 0.0) / totals[()]
                           if count else 0.0) + uniform
    else:
      for gram, count in level.items():
        context = gram[:-1]
        linear[gram] = ((count - discount[min(count, 3) - 1]) / totals[context]
                        + gammas[context] * lower_prob[gram[1:]])  # every suffix was counted
      for context, gamma in gammas.items():
        backoffs[n - 2][context] = math.log10(gamma) if gamma > 0 else NEVER_LOG10
    probabilities[n - 1] = {gram: math.log10(p) for gram, p in linear.items()}
    if n == 1:
      probabilities[0][(BOS,)] = NEVER_LOG10
    lower_prob = linear
  return NgramModel(order=order, probabilities=probabilities, backoffs=backoffs)


def write_arpa(model: NgramModel, path: str) -> None:
  """Writes `model` as an ARPA file (atomically: a temporary file renamed into place)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".arpa_")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as out:
      out.write("\n\\data\\\n")
      for n in range(1, model.order + 1):
        out.write(f"ngram {n}={len(model.probabilities[n - 1])}\n")
      for n in range(1, model.order + 1):
        out.write(f"\n\\{n}-grams:\n")
        backoff = model.backoffs[n - 1] if n < model.order else {}
        for gram, log10 in sorted(model.probabilities[n - 1].items()):
          line = f"{log10:.6f}\t{' '.join(gram)}"
          if gram in backoff:
            line += f"\t{backoff[gram]:.6f}"
          out.write(line + "\n")
      out.write("\n\\end\\\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
