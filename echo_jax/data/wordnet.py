"""Sentences for the synthetic corpus, taken from the usage examples of Debian's `wordnet-base`.

WordNet's data files hold one synset per line; its gloss follows ` | ` and ends with usage examples
in double quotes: `... | a human being; "there was too much for one person to do"`. The examples
are short everyday English, so they widen the corpus vocabulary well beyond the fortunes.
"""

import functools
import os
import re

from echo_jax.data import fortunes
from echo_jax.data import text as text_lib
from echo_jax.errors import MissingInputError

WORDNET_DIR = "/usr/share/wordnet"
DATA_FILES = ("data.adj", "data.adv", "data.noun", "data.verb")
_QUOTED = re.compile(r'"([^"]+)"')
_TERMINAL = (".", "!", "?")


def data_files(wordnet_dir: str = WORDNET_DIR) -> list[str]:
  paths = [os.path.join(wordnet_dir, name) for name in DATA_FILES]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise MissingInputError(
        f"no WordNet data at {missing[0]}; install the Debian package `wordnet-base` "
        "(`bash launch/setup.sh` does, or apt-get install wordnet-base) or pass sentences "
        "explicitly")
  return paths


def examples_in(path: str) -> list[str]:
  """The quoted usage examples of one data file, in file order."""
  examples = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      if line.startswith(" "):  # the licence header
        continue
      _, bar, gloss = line.partition(" | ")
      if bar:
        examples += [e.strip() for e in _QUOTED.findall(gloss) if e.strip()]
  return examples


def as_sentence(example: str) -> str:
  """Examples have no final stop; one gives the engines a sentence-final intonation."""
  return example if example.endswith(_TERMINAL) else example + "."


def load_sentences(wordnet_dir: str = WORDNET_DIR, min_words: int = fortunes.MIN_WORDS,
                   max_words: int = fortunes.MAX_WORDS) -> tuple[list[str], dict[str, int]]:
  """Speakable examples (raw text, unique by transcript) and rejection counts by reason.

  The same filter as the fortunes (`fortunes.speakable_sentences`); order is deterministic.
  """
  sentences, rejected = _load_sentences(wordnet_dir, min_words, max_words)
  return list(sentences), dict(rejected)


@functools.lru_cache(maxsize=4)
def _load_sentences(wordnet_dir: str, min_words: int, max_words: int):
  candidates = (as_sentence(sentence) for path in data_files(wordnet_dir)
                for example in examples_in(path) for sentence in text_lib.split_sentences(example))
  sentences, rejected = fortunes.speakable_sentences(candidates, min_words, max_words)
  return tuple(sentences), tuple(rejected.items())
