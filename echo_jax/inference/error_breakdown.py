"""WER/CER and edit counts broken down by utterance metadata (engine, speaker, F0 band, ...).

Pure helpers for echo_jax.evaluate: each utterance is (reference, hypothesis, metadata), texts
already normalised, metadata a plain dict (a corpus manifest row plus the measured F0). Every
group's WER/CER is a corpus rate over its own utterances (total edits / total reference words or
characters), so the counts of a dimension's groups add up to the overall counts whenever every
utterance falls in exactly one group (engine, speaker, F0 band, text source; not augmentation,
where an utterance with noise and reverb counts in both).

A field an utterance lacks (an older corpus, a user's manifest) puts it in no group of that
dimension, and a dimension no utterance has is left out: never an error.
"""

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jiwer
import numpy as np

DIMENSIONS = ("engine", "speaker", "f0_band", "augment", "text_source")
F0_BANDS = ("low", "mid", "high")
F0_LOW_BELOW_HZ = 120.0  # low: median F0 < 120 Hz
F0_HIGH_ABOVE_HZ = 200.0  # high: > 200 Hz; mid: 120-200 Hz inclusive
CLEAN = "clean"  # the augment group of utterances with an empty augment dict

# Manifest fields copied into an utterance's metadata (predictions.jsonl rows carry them).
MANIFEST_FIELDS = ("engine", "voice", "speaker", "text_source", "augment", "expected_f0_hz")
# Derived per utterance by evaluate: the measured median voiced F0 and its band.
MEASURED_F0_FIELD = "f0_median_hz"

COUNT_KEYS = ("words", "hits", "substitutions", "deletions", "insertions",
              "characters", "char_substitutions", "char_deletions", "char_insertions")

Utterance = Tuple[str, str, Mapping[str, Any]]


def median_voiced_f0(f0: np.ndarray) -> Optional[float]:
  """Median of the voiced (f0 > 0) frames in Hz; None without a voiced frame."""
  f0 = np.asarray(f0, np.float64).ravel()
  voiced = f0[np.isfinite(f0) & (f0 > 0)]
  return float(np.median(voiced)) if voiced.size else None


def _positive_number(value) -> Optional[float]:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    return None
  value = float(value)
  return value if math.isfinite(value) and value > 0 else None


def f0_band(hz) -> Optional[str]:
  """"low" (< 120 Hz), "mid" (120-200 Hz) or "high" (> 200 Hz); None for no usable value."""
  hz = _positive_number(hz)
  if hz is None:
    return None
  if hz < F0_LOW_BELOW_HZ:
    return "low"
  return "high" if hz > F0_HIGH_ABOVE_HZ else "mid"


def utterance_f0_band(metadata: Mapping[str, Any]) -> Optional[str]:
  """The band of the measured median F0, else of the manifest's expected F0."""
  measured = f0_band(metadata.get(MEASURED_F0_FIELD))
  return measured if measured is not None else f0_band(metadata.get("expected_f0_hz"))


def _label(value) -> Optional[str]:
  if value is None or isinstance(value, (dict, list, tuple)):
    return None
  text = str(value).strip()
  return text or None


def augment_kinds(augment) -> List[str]:
  """Group names of an augment field: its kinds ({"noise": {...}, "reverb": {...}} -> both),
  "clean" for an empty one, none when absent or not understood."""
  if isinstance(augment, Mapping):
    kinds = [str(k) for k in augment]
  elif isinstance(augment, (list, tuple)):  # tolerated: a bare list of kinds
    kinds = [str(k) for k in augment]
  else:
    label = _label(augment)
    return [label] if label else []
  return sorted(kinds) if kinds else [CLEAN]


def groups_of(metadata: Mapping[str, Any]) -> Dict[str, List[str]]:
  """{dimension: [group names]} of one utterance; dimensions it has no data for are absent."""
  groups = {}
  for dimension in ("engine", "speaker", "text_source"):
    label = _label(metadata.get(dimension))
    if label:
      groups[dimension] = [label]
  band = utterance_f0_band(metadata)
  if band:
    groups["f0_band"] = [band]
  if "augment" in metadata:
    kinds = augment_kinds(metadata["augment"])
    if kinds:
      groups["augment"] = kinds
  return groups


def _alignment_counts(process, reference: str, hypothesis: str) -> Tuple[int, int, int, int]:
  """(hits, substitutions, deletions, insertions) of jiwer's alignment."""
  out = process(reference, hypothesis)
  return int(out.hits), int(out.substitutions), int(out.deletions), int(out.insertions)


def edit_counts(reference: str, hypothesis: str) -> Dict[str, int]:
  """Word and character edit counts of one utterance (jiwer's alignments, as its corpus rates
  sum them; characters include the spaces between words; an empty reference gives insertions)."""
  counts = {}
  hits, subs, dels, ins = _alignment_counts(jiwer.process_words, reference, hypothesis)
  counts.update(words=hits + subs + dels, hits=hits, substitutions=subs, deletions=dels,
                insertions=ins)
  hits, subs, dels, ins = _alignment_counts(jiwer.process_characters, reference, hypothesis)
  counts.update(characters=hits + subs + dels, char_substitutions=subs, char_deletions=dels,
                char_insertions=ins)
  return counts


def _rate(edits: int, total: int) -> Optional[float]:
  return edits / total if total else None  # None (JSON null) rather than NaN for no reference


def group_stats(counts: Iterable[Mapping[str, int]]) -> Dict[str, Any]:
  """Corpus WER/CER and summed edit counts of a group of utterances' edit_counts."""
  total = dict.fromkeys(COUNT_KEYS, 0)
  num = 0
  for c in counts:
    num += 1
    for key in COUNT_KEYS:
      total[key] += int(c[key])
  word_edits = total["substitutions"] + total["deletions"] + total["insertions"]
  char_edits = total["char_substitutions"] + total["char_deletions"] + total["char_insertions"]
  stats = {"wer": _rate(word_edits, total["words"]),
           "cer": _rate(char_edits, total["characters"]), "num_utterances": num}
  stats.update((k, v) for k, v in total.items() if k != "hits")
  return stats


def _group_order(dimension: str, names: Iterable[str]) -> List[str]:
  names = set(names)
  if dimension == "f0_band":
    return [b for b in F0_BANDS if b in names]
  if dimension == "augment":
    return ([CLEAN] if CLEAN in names else []) + sorted(names - {CLEAN})
  return sorted(names)


def breakdown_from_counts(counts: Sequence[Mapping[str, int]],
                          metadata: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, Dict]]:
  """{dimension: {group: group_stats}} from per-utterance edit counts and metadata."""
  members: Dict[str, Dict[str, List[int]]] = {}
  for index, meta in enumerate(metadata):
    for dimension, names in groups_of(meta).items():
      for name in names:
        members.setdefault(dimension, {}).setdefault(name, []).append(index)
  return {dimension: {name: group_stats(counts[i] for i in members[dimension][name])
                      for name in _group_order(dimension, members[dimension])}
          for dimension in DIMENSIONS if dimension in members}


def breakdown(utterances: Sequence[Utterance]) -> Dict[str, Dict[str, Dict]]:
  """{dimension: {group: stats}} for (reference, hypothesis, metadata) triples; see group_stats."""
  counts = [edit_counts(ref, hyp) for ref, hyp, _ in utterances]
  return breakdown_from_counts(counts, [meta for _, _, meta in utterances])


def _cell(rate: Optional[float]) -> str:
  return "-" if rate is None else f"{rate:.4f}"


def format_table(groups: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 overall: Optional[Mapping[str, Any]] = None) -> str:
  """A fixed-width text table: one row per group under its dimension (and `overall` first)."""
  rows = []
  if overall is not None:
    rows.append(("all", overall))
  for dimension in DIMENSIONS:
    if dimension in groups:
      rows.append((dimension, None))
      rows.extend((f"  {name}", stats) for name, stats in groups[dimension].items())
  width = max([len(name) for name, _ in rows] + [len("group")])
  header = (f"{'group':<{width}}  {'utts':>5} {'words':>6} {'WER':>7} {'CER':>7} "
            f"{'ins':>5} {'del':>5} {'sub':>5}")
  lines = [header]
  for name, stats in rows:
    if stats is None:
      lines.append(name)
      continue
    lines.append(f"{name:<{width}}  {stats['num_utterances']:>5} {stats['words']:>6} "
                 f"{_cell(stats['wer']):>7} {_cell(stats['cer']):>7} {stats['insertions']:>5} "
                 f"{stats['deletions']:>5} {stats['substitutions']:>5}")
  return "\n".join(lines) + "\n"
