"""Transcript text: normalisation (lower case a-z, apostrophe, single spaces) and speakability.

Two checks live here:
- `is_speakable(raw)`: the transcript is usable at all (its normalised form has a word). This is the
  check for user data (LibriSpeech, Common Voice, ...), whose casing and punctuation vary freely.
- `tts_rejection_reason(raw)`: the strict check for text fed to a TTS engine. Text passes only when
  every engine will say exactly the words of its normalised form: no digits, symbols, all-caps words
  (often spelled out), abbreviations, stray letters or vowel-less words (read letter by letter).

Digits: `normalise_transcript` spells numbers out as English cardinals ("42" -> "forty two", "3.5"
-> "three point five", "2nd" -> "second"), so no content is dropped from user transcripts; how a
speaker said a year or an amount is ambiguous, so the synthetic corpus rejects every sentence with a
digit instead (see `tts_rejection_reason`).
"""

import re
import unicodedata

ALPHABET = "abcdefghijklmnopqrstuvwxyz'"  # plus the space between words

_QUOTE_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
})

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

# Words the engines expand (mr -> mister) or spell: a sentence containing one is not synthesised.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc eg ie prof rev lt sgt capt mt ft esq inc ltd corp dept univ "
    "approx feb apr jun jul aug sep sept oct nov tue thu fri ok tv pc bc".split())
SINGLE_LETTER_WORDS = frozenset({"a", "i"})
_TTS_ALLOWED = re.compile(r"^[A-Za-z\s.,;:!?'\"()\-]*$")
_VOWELS = set("aeiouy")


def _cardinal_below_thousand(n: int) -> list[str]:
  words = []
  if n >= 100:
    words += [_ONES[n // 100], "hundred"]
    n %= 100
  if n >= 20:
    words.append(_TENS[n // 10])
    n %= 10
    if n:
      words.append(_ONES[n])
  elif n or not words:
    words.append(_ONES[n])
  return words


def spell_cardinal(n: int) -> str:
  """English cardinal for 0 <= n < 10**15 ("1984" -> "one thousand nine hundred eighty four")."""
  if not 0 <= n < 10**15:
    raise ValueError(f"spell_cardinal: {n} is outside [0, 10**15); spell it digit by digit")
  if n < 1000:
    return " ".join(_cardinal_below_thousand(n))
  words = []
  for scale, name in _SCALES:
    if n >= scale:
      words += _cardinal_below_thousand(n // scale) + [name]
      n %= scale
  if n:
    words += _cardinal_below_thousand(n)
  return " ".join(words)


def _ordinal(cardinal: str) -> str:
  head, _, last = cardinal.rpartition(" ")
  if last in _ORDINAL_WORDS:
    last = _ORDINAL_WORDS[last]
  elif last.endswith("y"):
    last = last[:-1] + "ieth"
  else:
    last += "th"
  return f"{head} {last}".strip()


def _spell_number(match: re.Match) -> str:
  integer, fraction, suffix = match.group(1), match.group(2), match.group(3)
  digits = integer.replace(",", "")
  if len(digits) > 15:
    spoken = " ".join(_ONES[int(d)] for d in digits)
  else:
    spoken = spell_cardinal(int(digits))
  if suffix and not fraction:
    spoken = _ordinal(spoken)
  if fraction:
    spoken += " point " + " ".join(_ONES[int(d)] for d in fraction[1:])
  return f" {spoken} "


_NUMBER = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th)?")


def _ascii_fold(raw: str) -> str:
  text = unicodedata.normalize("NFKD", raw.translate(_QUOTE_MAP))
  return "".join(c for c in text if not unicodedata.combining(c))


def normalise_transcript(raw: str) -> str:
  """Lower case; only a-z, apostrophe (inside words) and single spaces; numbers spelled out.

  Accents are folded ("café" -> "cafe"), "&" reads "and", "%" reads "percent", other symbols and
  punctuation separate words (so "well-known" -> "well known"), and an apostrophe survives only
  between two letters ("don't" stays, "'tis" -> "tis", "dogs'" -> "dogs").
  """
  if not isinstance(raw, str):
    raise TypeError(f"normalise_transcript expects str, got {type(raw).__name__}")
  text = _ascii_fold(raw).lower()
  text = text.replace("&", " and ").replace("%", " percent ")
  text = _NUMBER.sub(_spell_number, text)
  text = re.sub(r"[^a-z']+", " ", text)
  text = re.sub(r"(?<![a-z])'+|'+(?![a-z])", "", text)
  return " ".join(text.split())


def is_speakable(raw: str) -> bool:
  """True when the normalised transcript has at least one word (a usable transcript)."""
  return bool(normalise_transcript(raw))


def tts_rejection_reason(raw: str, min_words: int = 1, max_words: int = 1000) -> str | None:
  """None if a TTS engine will say exactly `normalise_transcript(raw)`, else a short reason."""
  folded = _ascii_fold(raw)
  if any(c.isdigit() for c in folded):
    return "digit"
  if not folded.isascii():
    return "non_ascii"
  if not _TTS_ALLOWED.match(folded):
    return "symbol"
  for token in re.findall(r"[A-Za-z']+", folded):
    letters = token.replace("'", "")
    if len(letters) >= 2 and letters.isupper():
      return "all_caps_word"
  words = normalise_transcript(folded).split()
  if not words:
    return "empty"
  if not min_words <= len(words) <= max_words:
    return "word_count"
  for word in words:
    bare = word.replace("'", "")
    if bare in ABBREVIATIONS:
      return "abbreviation"
    if len(bare) == 1 and bare not in SINGLE_LETTER_WORDS:
      return "single_letter"
    if len(bare) >= 2 and not _VOWELS.intersection(bare):
      return "no_vowel_word"
  return None


def engine_text(raw: str) -> str:
  """The text handed to a TTS engine: ASCII quotes and dashes, single spaces."""
  return " ".join(_ascii_fold(raw).split())


_SENTENCE_END = re.compile(r"(?<=[.!?][\"')])\s+|(?<=[.!?])\s+")


def split_sentences(paragraph: str) -> list[str]:
  """Split running text after ., ! or ? (plus closing quotes) followed by white space."""
  text = " ".join(paragraph.split())
  return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
