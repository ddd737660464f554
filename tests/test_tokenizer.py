"""Tokenizer: fixed special ids, exact round trips of normalised text, determinism, bad input."""

import logging

import pytest

from echo_jax.data import fortunes
from echo_jax.data.text import normalise_transcript
from echo_jax.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

EXTRA_STRINGS = [
    "quiz jazz", "it's", "don't won't can't shouldn't've", "o'clock rock'n'roll", "a", "i",
    "zzz", "x y z q", "the quick brown fox jumps over the lazy dog", "ha' ha'ha",
    "abcdefghijklmnopqrstuvwxyz", "jeez louise it's", "'", "",
]


@pytest.fixture(scope="module")
def transcripts():
  sentences, _ = fortunes.load_sentences()
  return [normalise_transcript(s) for s in sentences[:3000]]


@pytest.fixture(scope="module")
def test_strings(transcripts):
  # Normalised forms only (the round-trip contract is for normalised text).
  return transcripts[-1000:] + [normalise_transcript(s) for s in EXTRA_STRINGS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, transcripts):
  out = tmp_path_factory.mktemp("tok")
  train = transcripts[:2000]
  return {
      "unigram": Tokenizer.train(train, str(out / "uni"), vocab_size=256, model_type="unigram"),
      "bpe": Tokenizer.train(train, str(out / "bpe"), vocab_size=256, model_type="bpe"),
      "char": Tokenizer.train(train, str(out / "char"), kind="char"),
  }


def test_special_ids():
  assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)


@pytest.mark.parametrize("name", ["unigram", "bpe", "char"])
def test_round_trip_and_no_specials_in_encode(trained, test_strings, name):
  tok = trained[name]
  for text in test_strings:
    ids = tok.encode(text)
    assert all(i > UNK_ID for i in ids), (text, ids)  # no pad/bos/eos/unk for normalised text
    assert tok.decode(ids) == text


@pytest.mark.parametrize("name", ["unigram", "bpe", "char"])
def test_decode_drops_specials_anywhere(trained, name):
  tok = trained[name]
  ids = tok.encode("hello there")
  mid = len(ids) // 2
  padded = [BOS_ID] + ids[:mid] + [EOS_ID, PAD_ID] + ids[mid:] + [EOS_ID, PAD_ID, PAD_ID]
  assert tok.decode(padded) == tok.decode(ids) == "hello there"


@pytest.mark.parametrize("name", ["unigram", "bpe", "char"])
def test_load_gives_same_tokenizer(trained, test_strings, name):
  tok = trained[name]
  loaded = Tokenizer.load(tok.path)
  assert loaded.vocab_size == tok.vocab_size and loaded.kind == tok.kind
  assert all(loaded.encode(t) == tok.encode(t) for t in test_strings[:200])


def test_vocab_sizes_and_files(trained):
  assert trained["unigram"].vocab_size == 256 and trained["unigram"].path.endswith(".model")
  assert trained["bpe"].vocab_size == 256
  # 4 special ids + space + a-z + apostrophe.
  assert trained["char"].vocab_size == 4 + 28 and trained["char"].path.endswith(".json")


def _vocab_file(tok: Tokenizer) -> str:
  with open(tok.path[:-len(".model")] + ".vocab", encoding="utf-8") as f:
    return f.read()


def test_sentencepiece_is_deterministic(tmp_path, transcripts):
  a = Tokenizer.train(transcripts[:500], str(tmp_path / "a"), vocab_size=128)
  b = Tokenizer.train(transcripts[:500], str(tmp_path / "b"), vocab_size=128)
  # The .vocab file lists every piece with its score (the .model also embeds its own path).
  assert _vocab_file(a) == _vocab_file(b)
  assert all(a.encode(t) == b.encode(t) for t in transcripts[500:800])


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_too_large_vocab_is_reduced_with_warning(tmp_path, caplog, model_type):
  texts = ["hello world", "the cat sat on the mat", "don't stop me now"]
  with caplog.at_level(logging.WARNING):
    tok = Tokenizer.train(texts, str(tmp_path / model_type), vocab_size=5000,
                          model_type=model_type)
  assert 32 <= tok.vocab_size < 5000
  assert "does not fit" in caplog.text
  for text in texts + ["quiz jazz it's"]:  # letters unseen in training still round-trip
    assert tok.decode(tok.encode(text)) == text


def test_too_small_vocab_is_raised_to_the_alphabet(tmp_path, caplog):
  with caplog.at_level(logging.WARNING):
    tok = Tokenizer.train(["hello world"] * 5, str(tmp_path / "small"), vocab_size=8)
  assert tok.vocab_size >= 4 + 28
  assert tok.decode(tok.encode("jazz quiz")) == "jazz quiz"


def test_unknown_characters_map_to_unk(trained):
  tok = trained["char"]
  assert tok.encode("a#b") == [tok.encode("a")[0], UNK_ID, tok.encode("b")[0]]


def test_bad_input_errors(tmp_path, trained):
  with pytest.raises(ValueError, match="kind"):
    Tokenizer.train(["a b"], str(tmp_path / "x"), kind="wordpiece")
  with pytest.raises(ValueError, match="model_type"):
    Tokenizer.train(["a b"], str(tmp_path / "x"), model_type="word")
  with pytest.raises(ValueError, match="no non-empty"):
    Tokenizer.train(["", ""], str(tmp_path / "x"))
  with pytest.raises(FileNotFoundError, match="Tokenizer.train"):
    Tokenizer.load(str(tmp_path / "missing.model"))
  with pytest.raises(ValueError, match="outside"):
    trained["unigram"].decode([5, 10_000])
  with pytest.raises(TypeError):
    trained["char"].encode(["not", "a", "string"])
