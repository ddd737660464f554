"""Transcript normalisation, number spelling, TTS safety and sentence splitting."""

import re

import pytest

from echo_jax.data import fortunes
from echo_jax.data import text as text_lib
from echo_jax.data.text import normalise_transcript

NORMALISED = re.compile(r"^([a-z]+('[a-z]+)*( [a-z]+('[a-z]+)*)*)?$")


@pytest.mark.parametrize("raw, expected", [
    ("Hello, World!", "hello world"),
    ("  Don't   STOP\tme\nnow. ", "don't stop me now"),
    ("'Tis the dogs' bones, 'quoted'.", "tis the dogs bones quoted"),
    ("rock 'n' roll", "rock n roll"),
    ("It\u2019s a well-known caf\u00e9 \u2014 na\u00efve", "it's a well known cafe naive"),
    ("Tom & Jerry: 100%", "tom and jerry one hundred percent"),
    ("In 1984 he was 42.", "in one thousand nine hundred eighty four he was forty two"),
    ("the 1st, 2nd, 3rd, 12th and 20th", "the first second third twelfth and twentieth"),
    ("pi is 3.14", "pi is three point one four"),
    ("1,000,000 ways", "one million ways"),
    ("HELLO WORLD", "hello world"),  # LibriSpeech-style transcripts
    ("...?!", ""),
])
def test_normalise_examples(raw, expected):
  assert normalise_transcript(raw) == expected


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"),
    (100, "one hundred"), (101, "one hundred one"), (1000, "one thousand"),
    (2024, "two thousand twenty four"), (1_000_001, "one million one"),
    (12_345_678_901, "twelve billion three hundred forty five million six hundred seventy eight "
                     "thousand nine hundred one"),
])
def test_spell_cardinal(n, words):
  assert text_lib.spell_cardinal(n) == words


def test_spell_cardinal_rejects_out_of_range():
  with pytest.raises(ValueError, match="digit by digit"):
    text_lib.spell_cardinal(10**15)


def test_long_digit_strings_are_spelled_digit_by_digit():
  assert normalise_transcript("1234567890123456") == " ".join(
      "one two three four five six seven eight nine zero one two three four five six".split())


def test_normalised_alphabet_and_idempotence_on_all_fortunes():
  sentences, _ = fortunes.load_sentences(min_words=1, max_words=10_000)
  # Include unfiltered raw text too: normalisation must be total.
  raw_fortunes = [f for path in fortunes.fortune_files()[:5] for f in fortunes.fortunes_in(path)]
  for raw in sentences + raw_fortunes:
    norm = normalise_transcript(raw)
    assert NORMALISED.match(norm), (raw, norm)
    assert normalise_transcript(norm) == norm


def test_is_speakable():
  assert text_lib.is_speakable("THE CAT SAT")
  assert text_lib.is_speakable("42")
  assert not text_lib.is_speakable("")
  assert not text_lib.is_speakable(" -- ?! ' ")
  with pytest.raises(TypeError, match="expects str"):
    normalise_transcript(None)


@pytest.mark.parametrize("raw, reason", [
    ("The cat sat on the mat.", None),
    ("Don't panic, it's only a \"test\" (really).", None),
    ("I paid 5 dollars.", "digit"),
    ("Pay me $5 now.", "digit"),
    ("Use a & b here.", "symbol"),
    ("Say it in ASCII please.", "all_caps_word"),
    ("Mr. Smith is here.", "abbreviation"),
    ("Plan B was the best.", "single_letter"),
    ("Watch tv at night.", "abbreviation"),
    ("Sshh be quiet now.", "no_vowel_word"),
    ("Hmm that is odd.", "no_vowel_word"),
    ("Caf\u00e9 au lait", None),
    ("\u4f60\u597d everyone here", "non_ascii"),
    ("", "empty"),
])
def test_tts_rejection_reason(raw, reason):
  assert text_lib.tts_rejection_reason(raw) == reason


def test_tts_word_count_limits():
  assert text_lib.tts_rejection_reason("one two three", 4, 20) == "word_count"
  assert text_lib.tts_rejection_reason("one two three four", 4, 20) is None


def test_split_sentences_keeps_closing_quotes():
  assert text_lib.split_sentences('Be careful!  Is it "classified?" He said.\nNo') == [
      "Be careful!", 'Is it "classified?"', "He said.", "No"]


def test_fortune_sentences_are_tts_safe_and_unique():
  sentences, rejected = fortunes.load_sentences()
  assert len(sentences) > 5000
  transcripts = [normalise_transcript(s) for s in sentences]
  assert len(set(transcripts)) == len(transcripts)
  assert all(4 <= len(t.split()) <= 20 and len(t) <= fortunes.MAX_CHARS for t in transcripts)
  assert all(text_lib.tts_rejection_reason(s) is None for s in sentences)
  assert rejected["digit"] > 0 and rejected["word_count"] > 0
