"""The synthetic corpus's sentences: every text source, each sentence tagged with its source."""

from collections.abc import Iterable
from typing import NamedTuple

from echo_jax.data import fortunes
from echo_jax.data import text as text_lib
from echo_jax.data import wordnet

SOURCES = ("fortunes", "wordnet")
CUSTOM_SOURCE = "custom"  # sentences handed in as plain strings


class Sentence(NamedTuple):
  raw: str  # the text handed to the engine
  source: str  # fortunes | wordnet | custom


def load_sentences() -> list[Sentence]:
  """Fortunes then WordNet examples, unique by transcript across sources (first one kept)."""
  seen, sentences = set(), []
  loaders = {"fortunes": fortunes.load_sentences, "wordnet": wordnet.load_sentences}
  for source, loader in loaders.items():
    for raw in loader()[0]:
      transcript = text_lib.normalise_transcript(raw)
      if transcript not in seen:
        seen.add(transcript)
        sentences.append(Sentence(raw, source))
  return sentences


def as_sentences(items: Iterable[str | Sentence]) -> list[Sentence]:
  """Sentences from plain strings (source `custom`) or Sentence tuples, order kept."""
  return [item if isinstance(item, Sentence) else Sentence(str(item), CUSTOM_SOURCE)
          for item in items]
