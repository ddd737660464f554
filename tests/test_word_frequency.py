"""Word errors by training-text frequency (echo_jax.inference.word_frequency and its command)."""

import json

import pytest

from echo_jax.diagnostics.__main__ import main as diagnostics_main
from echo_jax.errors import UserError
from echo_jax.inference import word_frequency


@pytest.mark.parametrize("count,band", [(0, "unseen"), (1, "1-2"), (2, "1-2"), (3, "3-10"),
                                        (10, "3-10"), (11, "11-100"), (100, "11-100"),
                                        (101, ">100"), (10**6, ">100")])
def test_every_count_falls_in_its_band(count, band):
  assert word_frequency.band_of(count) == band


def test_right_and_wrong_reference_words_are_counted_in_the_band_of_their_training_count():
  counts = word_frequency.word_counts(["The cat sat.", "the DOG"])
  assert counts == {"the": 2, "cat": 1, "sat": 1, "dog": 1}
  pairs = [("the cat ran", "The bat ran ran"),  # cat substituted, one word inserted
           ("the dog", "dog"),                   # the deleted
           ("the sat", "THE, sat!")]             # right after normalisation
  result = word_frequency.errors_by_frequency(pairs, counts)
  bands = result["bands"]
  assert bands["1-2"] == {"words": 6, "errors": 2, "word_error_rate": 2 / 6, "distinct_words": 4}
  assert bands["unseen"] == {"words": 1, "errors": 0, "word_error_rate": 0.0,
                             "distinct_words": 1}
  assert bands[">100"]["words"] == 0 and bands[">100"]["word_error_rate"] is None
  assert result["insertions"] == 1 and result["words"] == 7
  # The errors are jiwer's substitutions + deletions, band by band and in total.
  assert sum(b["errors"] for b in bands.values()) == 2


def test_an_empty_reference_counts_only_insertions():
  assert word_frequency.reference_word_hits("", "two words") == ([], [], 2)


def test_training_transcripts_come_from_the_train_rows_of_a_manifest(tmp_path):
  manifest = tmp_path / "manifest.jsonl"
  manifest.write_text("\n".join(json.dumps(r) for r in [
      {"text": "alpha beta", "split": "train"}, {"text": "gamma", "split": "test"},
      {"transcript": "delta"}]) + "\n")
  assert word_frequency.read_training_transcripts(str(manifest)) == ["alpha beta", "delta"]
  plain = tmp_path / "train.txt"
  plain.write_text("one line\n\nanother line\n")
  assert word_frequency.read_training_transcripts(str(plain)) == ["one line", "another line"]
  broken = tmp_path / "broken.jsonl"
  broken.write_text('{"path": "a.wav"}\n')
  with pytest.raises(UserError, match=r"broken.jsonl:1 has no \"text\""):
    word_frequency.read_training_transcripts(str(broken))


def test_words_command_reads_evaluate_predictions(tmp_path, capsys):
  train = tmp_path / "train.txt"
  train.write_text("the cat sat\nthe dog\n")
  predictions = tmp_path / "predictions.jsonl"
  predictions.write_text("\n".join(json.dumps(r) for r in [
      {"id": "a", "reference": "the cat ran", "hypothesis": "x", "ctc_hypothesis": "the bat ran"},
      {"id": "b", "reference": "the dog", "error": "broken audio"}]) + "\n")
  assert diagnostics_main(["words", str(predictions), "--train", str(train),
                           "--hypothesis", "ctc_hypothesis", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["bands"]["1-2"]["words"] == 2 and result["bands"]["1-2"]["errors"] == 1
  assert result["bands"]["unseen"]["words"] == 1 and result["bands"]["unseen"]["errors"] == 0
  with pytest.raises(UserError, match="has no 'ctc_lm_hypothesis'"):
    diagnostics_main(["words", str(predictions), "--train", str(train),
                      "--hypothesis", "ctc_lm_hypothesis"])
