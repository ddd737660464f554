"""Corpus text: WordNet usage examples as a second source, combined with the fortunes, tagged with
their source, and split by transcript so no sentence is in two splits."""

import collections

import pytest

from echo_jax.data import corpus_text
from echo_jax.data import fortunes
from echo_jax.data import synth_corpus
from echo_jax.data import text as text_lib
from echo_jax.data import tts_engines
from echo_jax.data import wordnet

LICENCE = (
    "  1 This software and database is being provided to you, the LICENSEE, by\n"
    '  2 Princeton University under the following license.  "a quoted licence line"\n')
FAKE_DATA = LICENCE + (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known\n"
    "00002137 03 n 02 person 0 010 @ 00001740 n 0000 | a human being; "
    '"there was too much for one person to do"; "she met 3 people"\n'
    "00002452 03 n 01 thing 0 000 | an entity; "
    '"it was full of rackets, balls and other objects"; "too short"; "Was it ever there?"\n')


@pytest.fixture()
def fake_wordnet(tmp_path):
  for name in wordnet.DATA_FILES:
    (tmp_path / name).write_text(FAKE_DATA if name == "data.noun" else "")
  return str(tmp_path)


def test_examples_are_the_quoted_parts_of_glosses(fake_wordnet):
  examples = wordnet.examples_in(f"{fake_wordnet}/data.noun")
  assert examples == ["there was too much for one person to do", "she met 3 people",
                      "it was full of rackets, balls and other objects", "too short",
                      "Was it ever there?"]


def test_examples_pass_the_fortunes_filter_and_get_a_full_stop(fake_wordnet):
  sentences, rejected = wordnet.load_sentences(fake_wordnet)
  assert sentences == ["there was too much for one person to do.",
                       "it was full of rackets, balls and other objects.", "Was it ever there?"]
  assert rejected == {"digit": 1, "word_count": 1}


def test_missing_wordnet_names_the_package(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"wordnet-base.*launch/setup\.sh"):
    wordnet.load_sentences(str(tmp_path / "nowhere"))


def test_wordnet_sentences_are_tts_safe_and_unique():
  sentences, rejected = wordnet.load_sentences()
  assert len(sentences) > 30000
  transcripts = [text_lib.normalise_transcript(s) for s in sentences]
  assert len(set(transcripts)) == len(transcripts)
  assert all(4 <= len(t.split()) <= 20 and len(t) <= fortunes.MAX_CHARS for t in transcripts)
  assert all(text_lib.tts_rejection_reason(s) is None for s in sentences)
  assert rejected["digit"] > 0 and rejected["word_count"] > 0


def test_sources_are_combined_without_repeating_a_transcript():
  sentences = corpus_text.load_sentences()
  counts = collections.Counter(s.source for s in sentences)
  assert counts["fortunes"] == len(fortunes.load_sentences()[0])
  assert counts["wordnet"] > 30000 and set(counts) == set(corpus_text.SOURCES)
  transcripts = [text_lib.normalise_transcript(s.raw) for s in sentences]
  assert len(set(transcripts)) == len(transcripts)
  assert corpus_text.as_sentences(["Hello there my friend.", sentences[0]]) == [
      corpus_text.Sentence("Hello there my friend.", "custom"), sentences[0]]


def test_large_plan_uses_distinct_sentences_and_keeps_splits_disjoint():
  sentences = corpus_text.load_sentences()
  plan, _ = synth_corpus.plan_corpus(10_000, 0, tts_engines.default_voices(), sentences)
  texts = collections.defaultdict(list)
  for u in plan:
    texts[u.split].append(u.text)
    assert u.text_source in corpus_text.SOURCES
  # Each split cycles through its unseen sentences before reusing one: all distinct here.
  assert len(set(texts["train"])) == len(texts["train"]) == 8000
  for split in ("validation", "test"):
    assert len(set(texts[split])) == len(texts[split]) == 1000
  assert not set(texts["train"]) & set(texts["validation"])
  assert not set(texts["train"]) & set(texts["test"])
  assert not set(texts["validation"]) & set(texts["test"])
  for split in texts:
    assert {u.text_source for u in plan if u.split == split} == set(corpus_text.SOURCES)
