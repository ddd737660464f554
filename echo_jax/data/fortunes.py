"""Sentences for the synthetic corpus, taken from Debian's `fortunes` package."""

import functools
import os
import re

from echo_jax.data import text as text_lib
from echo_jax.errors import MissingInputError

FORTUNES_DIR = "/usr/share/games/fortunes"
# Files that are pictures or mostly not English prose.
EXCLUDED_FILES = frozenset({"ascii-art", "art", "translate-me"})
MIN_WORDS = 4
MAX_WORDS = 20
# Transcripts fit data.max_target_length = 128 tokens (with BOS and EOS) even with the char tokenizer.
MAX_CHARS = 126


def fortune_files(fortunes_dir: str = FORTUNES_DIR) -> list[str]:
  """The plain-text fortune files (not .dat indexes, not .u8 links), sorted by name."""
  if not os.path.isdir(fortunes_dir):
    raise MissingInputError(
        f"no fortunes directory at {fortunes_dir}; install the Debian package `fortunes` "
        "(apt-get install fortunes) or pass sentences explicitly")
  names = []
  for name in sorted(os.listdir(fortunes_dir)):
    path = os.path.join(fortunes_dir, name)
    if ("." in name or name in EXCLUDED_FILES or os.path.islink(path)
        or not os.path.isfile(path)):
      continue
    names.append(path)
  return names


def fortunes_in(path: str) -> list[str]:
  """The fortunes of one file, each joined into one line of prose."""
  with open(path, encoding="utf-8", errors="replace") as f:
    content = f.read()
  fortunes = []
  for block in re.split(r"^%\s*$", content, flags=re.MULTILINE):
    # Drop attribution lines ("-- Mark Twain") and indented verse/code; keep running prose.
    lines = [ln for ln in block.splitlines() if ln.strip()
             and not ln.lstrip().startswith("--") and not ln.startswith(("\t", "    "))]
    if lines:
      fortunes.append(" ".join(lines))
  return fortunes


def load_sentences(fortunes_dir: str = FORTUNES_DIR, min_words: int = MIN_WORDS,
                   max_words: int = MAX_WORDS) -> tuple[list[str], dict[str, int]]:
  """Speakable sentences (raw text, unique by transcript) and rejection counts by reason.

  Order is deterministic: files by name, fortunes and sentences in file order.
  """
  sentences, rejected = _load_sentences(fortunes_dir, min_words, max_words)
  return list(sentences), dict(rejected)


@functools.lru_cache(maxsize=4)
def _load_sentences(fortunes_dir: str, min_words: int, max_words: int):
  candidates = (sentence for path in fortune_files(fortunes_dir) for fortune in fortunes_in(path)
                for sentence in text_lib.split_sentences(fortune))
  sentences, rejected = speakable_sentences(candidates, min_words, max_words)
  return tuple(sentences), tuple(rejected.items())


def speakable_sentences(candidates, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS,
                        seen: set[str] | None = None) -> tuple[list[str], dict[str, int]]:
  """The candidates an engine reads exactly as written, as engine text, unique by transcript.

  The filter every text source shares: `text.tts_rejection_reason`, at most MAX_CHARS once
  normalised, and no transcript twice (also none already in `seen`, which is updated).
  Returns the kept sentences in input order and rejection counts by reason.
  """
  seen = set() if seen is None else seen
  sentences, rejected = [], {}
  for sentence in candidates:
    reason = text_lib.tts_rejection_reason(sentence, min_words, max_words)
    transcript = text_lib.normalise_transcript(sentence)
    if reason is None and len(transcript) > MAX_CHARS:
      reason = "too_many_characters"
    if reason is None and transcript in seen:
      reason = "duplicate"
    if reason is not None:
      rejected[reason] = rejected.get(reason, 0) + 1
      continue
    seen.add(transcript)
    sentences.append(text_lib.engine_text(sentence))
  return sentences, rejected
