"""The CTC lexicon search with a word n-gram LM (echo_jax.inference.ctc_lexicon)."""

import numpy as np
import pytest

from echo_jax.data.tokenizer import Tokenizer
from echo_jax.errors import UserError
from echo_jax.inference import ctc_lexicon
from echo_jax.lm import ngram
from echo_jax.token_ids import PAD_ID


@pytest.fixture(scope="module")
def chars(tmp_path_factory):
  return Tokenizer.train(["the cat sat"], str(tmp_path_factory.mktemp("tok") / "chars"),
                         kind="char")


def _arpa(tmp_path, sentences, name="lm.arpa"):
  path = str(tmp_path / name)
  ngram.write_arpa(ngram.estimate([s.split() for s in sentences], 3), path)
  return path


def _emissions(tokenizer, spelled, confidence=0.9, alternatives=None):
  """CTC log posteriors spelling `spelled`: per character one frame of it then one of blank
  (each at `confidence`, the rest spread evenly). alternatives = {position: (char, share)}
  splits that character's frame between the two."""
  vocab = tokenizer.vocab_size
  frames = []
  for position, char in enumerate(spelled):
    row = np.full(vocab, (1 - confidence) / (vocab - 1))
    (index,) = tokenizer.encode(char)
    row[index] = confidence
    if alternatives and position in alternatives:
      other, share = alternatives[position]
      (other_index,) = tokenizer.encode(other)
      row[other_index], row[index] = confidence * share, confidence * (1 - share)
    blank = np.full(vocab, (1 - confidence) / (vocab - 1))
    blank[PAD_ID] = confidence
    frames += [row, blank]
  return np.log(np.stack(frames)).astype(np.float32)


def test_clear_speech_is_spelled_out_in_lexicon_words(chars, tmp_path):
  lm = _arpa(tmp_path, ["the cat sat", "the dog ran", "a cat ran"])
  search = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=0.5)
  assert search(_emissions(chars, "the cat sat")) == "the cat sat"
  assert search(_emissions(chars, "a dog sat")) == "a dog sat"
  assert search.num_words == 6  # the LM's words: the cat sat dog ran a


@pytest.mark.parametrize("said_often", ["cat", "cot"])
def test_the_lm_decides_what_the_audio_leaves_open(chars, tmp_path, said_often):
  """The vowel's frame is split 50/50 between 'a' and 'o': the word the LM has seen after "the"
  wins; the CTC best path alone could not choose."""
  other = "cot" if said_often == "cat" else "cat"
  lm = _arpa(tmp_path, [f"the {said_often} sat"] * 5 + [f"a {other} sat"])
  search = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=1.0)
  emissions = _emissions(chars, "the cat sat", alternatives={5: ("o", 0.5)})
  assert search(emissions) == f"the {said_often} sat"


def test_clear_acoustics_outweigh_a_light_lm(chars, tmp_path):
  """The LM prefers "cat", the audio says "cot" clearly: at a small weight the audio wins, at a
  large one the LM does (the weight trades the two scores)."""
  lm = _arpa(tmp_path, ["the cat sat"] * 20 + ["a cot"])
  emissions = _emissions(chars, "the cot sat", confidence=0.95)
  light = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=0.1)
  heavy = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=3.0)
  assert light(emissions) == "the cot sat"
  assert heavy(emissions) == "the cat sat"


def test_with_options_searches_like_a_fresh_load_and_loading_is_quiet(chars, tmp_path, capfd):
  """with_options reuses the loaded LM and trie: its transcripts equal those of a search loaded
  with the same options, it leaves the original's options alone, and loading writes nothing to
  the process's stderr (KenLM's loading bar is silenced)."""
  lm = _arpa(tmp_path, ["the cat sat"] * 20 + ["a cot"])
  emissions = _emissions(chars, "the cot sat", confidence=0.95)
  capfd.readouterr()
  light = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=0.1)
  assert capfd.readouterr().err == ""
  heavy = light.with_options(lm_weight=3.0)
  assert (light.options.lm_weight, heavy.options.lm_weight) == (0.1, 3.0)
  assert light(emissions) == "the cot sat" and heavy(emissions) == "the cat sat"
  for weight, score in [(0.1, 0.0), (1.0, -2.0), (3.0, 2.0)]:
    fresh = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=weight, word_score=score)
    reused = light.with_options(lm_weight=weight, word_score=score)
    for spelled in ("the cot sat", "a cat", "the cat sat"):
      assert reused(_emissions(chars, spelled)) == fresh(_emissions(chars, spelled))


def test_only_lexicon_words_come_out(chars, tmp_path):
  """Speech of a word the LM does not know yields known words or nothing, never the word."""
  lm = _arpa(tmp_path, ["the cat sat", "a dog"])
  search = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=0.5)
  words = search(_emissions(chars, "the zebra sat")).split()
  assert "zebra" not in words
  assert set(words) <= {"the", "cat", "sat", "a", "dog"}
  assert search(np.zeros((0, chars.vocab_size), np.float32)) == ""


def test_lm_search_needs_character_targets(tmp_path):
  texts = ["the cat sat on the mat"] * 20
  pieces = Tokenizer.train(texts, str(tmp_path / "sp"), kind="sentencepiece", vocab_size=40)
  lm = _arpa(tmp_path, texts)
  with pytest.raises(UserError, match="data.tokenizer = 'char'"):
    ctc_lexicon.LexiconSearch.from_arpa(pieces, lm)
  with pytest.raises(UserError, match="no 1-grams"):
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa file\n")
    ctc_lexicon.LexiconSearch.from_arpa(Tokenizer.train(texts, str(tmp_path / "c"), kind="char"),
                                        str(bad))


def test_tune_names_a_bad_grid_before_loading_anything(tmp_path):
  from echo_jax.lm import tune
  with pytest.raises(UserError, match="--lm_weights='a,b': give comma-separated numbers"):
    tune.main(["--workdir", str(tmp_path / "none"), "--lm_weights", "a,b"])
  with pytest.raises(UserError, match="--lm_beam_size=0 is invalid"):
    tune.main(["--workdir", str(tmp_path / "none"), "--lm_beam_size", "0"])


def test_blank_penalty_keeps_a_letter_the_head_half_hears(chars, tmp_path):
  """The 'c' of "cat" gets a frame where blank (0.6) outweighs 'c' (0.35): the search spells "at"
  (a lexicon word the LM likes as much) until the blank penalty makes the letter cheaper than
  the blank; the caller's posteriors are left unchanged."""
  lm = _arpa(tmp_path, ["the cat sat", "the at sat"])
  emissions = _emissions(chars, "the cat sat", confidence=0.95)
  (c_index,) = chars.encode("c")
  c_frame = 2 * "the cat sat".index("c")
  emissions[c_frame] = np.log(np.full(chars.vocab_size, 0.05 / (chars.vocab_size - 2)))
  emissions[c_frame, PAD_ID], emissions[c_frame, c_index] = np.log(0.6), np.log(0.35)
  before = emissions.copy()
  plain = ctc_lexicon.LexiconSearch.from_arpa(chars, lm, lm_weight=0.5)
  assert plain(emissions) == "the at sat"
  assert plain.with_options(blank_penalty=1.0)(emissions) == "the cat sat"
  np.testing.assert_array_equal(emissions, before)
