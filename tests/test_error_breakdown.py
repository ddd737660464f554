"""Error breakdown by utterance metadata: group membership, hand-counted edits per group, and
tolerance of missing or odd metadata."""

import math

import numpy as np
import pytest

from echo_jax.inference import error_breakdown as eb

# (reference, hypothesis, metadata); texts already normalised.
UTTERANCES = [
    # 1 inserted word; characters: " down" = 5 insertions over 11.
    ("the cat sat", "the cat sat down",
     {"engine": "espeak-ng", "speaker": "espeak-ng:en+m1", "f0_median_hz": 100.0, "augment": {},
      "text_source": "fortunes"}),
    # b -> x substituted, d deleted; characters "a b c d" -> "a x c": 1 substitution, 2 deletions.
    ("a b c d", "a x c",
     {"engine": "flite", "speaker": "flite:slt", "expected_f0_hz": 210.0,
      "augment": {"noise": {"type": "pink", "snr_db": 17.3}, "reverb": {"rt60_s": 0.4}},
      "text_source": "wordnet"}),
    # Everything deleted: 2 words, 11 characters. Measured F0 (mid) wins over the expected (high).
    ("hello world", "",
     {"engine": "espeak-ng", "speaker": "espeak-ng:en+m1", "f0_median_hz": 150.0,
      "expected_f0_hz": 250.0, "augment": {"noise": {"type": "white", "snr_db": 5.0}}}),
    # No metadata at all: in no group.
    ("one two", "one two", {}),
]


def test_edit_counts_are_the_hand_counted_ones():
  assert eb.edit_counts("a b c d", "a x c") == {
      "words": 4, "hits": 2, "substitutions": 1, "deletions": 1, "insertions": 0,
      "characters": 7, "char_substitutions": 1, "char_deletions": 2, "char_insertions": 0}
  counts = eb.edit_counts("the cat sat", "the cat sat down")
  assert (counts["insertions"], counts["char_insertions"], counts["characters"]) == (1, 5, 11)
  empty_ref = eb.edit_counts("", "two words")
  assert (empty_ref["words"], empty_ref["insertions"], empty_ref["char_insertions"]) == (0, 2, 9)


def test_breakdown_per_dimension_matches_hand_counts():
  groups = eb.breakdown(UTTERANCES)
  assert list(groups) == ["engine", "speaker", "f0_band", "augment", "text_source"]

  espeak = groups["engine"]["espeak-ng"]  # utterances 1 and 3
  assert espeak == {
      "wer": pytest.approx(3 / 5), "cer": pytest.approx(16 / 22), "num_utterances": 2,
      "words": 5, "insertions": 1, "deletions": 2, "substitutions": 0, "characters": 22,
      "char_insertions": 5, "char_deletions": 11, "char_substitutions": 0}
  flite = groups["engine"]["flite"]
  assert (flite["wer"], flite["cer"]) == (pytest.approx(2 / 4), pytest.approx(3 / 7))
  assert (flite["insertions"], flite["deletions"], flite["substitutions"]) == (0, 1, 1)
  assert groups["speaker"] == {"espeak-ng:en+m1": espeak, "flite:slt": flite}

  # Bands in low/mid/high order; utterance 3's measured 150 Hz wins over its expected 250 Hz.
  assert list(groups["f0_band"]) == ["low", "mid", "high"]
  assert [groups["f0_band"][b]["words"] for b in ("low", "mid", "high")] == [3, 2, 4]

  # Noise holds utterances 2 and 3 (2 noisy, one also reverberant): counted in each kind.
  augment = groups["augment"]
  assert list(augment) == ["clean", "noise", "reverb"]
  assert augment["noise"]["num_utterances"] == 2 and augment["noise"]["words"] == 6
  assert augment["noise"]["wer"] == pytest.approx((1 + 1 + 2) / 6)
  assert augment["noise"]["cer"] == pytest.approx((3 + 11) / 18)
  assert augment["reverb"] == flite and augment["clean"]["wer"] == pytest.approx(1 / 3)
  assert groups["text_source"] == {"fortunes": groups["augment"]["clean"], "wordnet": flite}

  # The metadata-less utterance is in no group: engine groups hold the other three only.
  assert sum(g["num_utterances"] for g in groups["engine"].values()) == 3


def test_missing_or_odd_metadata_gives_no_group_and_no_error():
  older = [("a b", "a b", {"engine": "flite", "speaker": "flite:kal", "expected_f0_hz": 95.0})]
  assert sorted(eb.breakdown(older)) == ["engine", "f0_band", "speaker"]
  odd = [("a b", "a", {"engine": None, "speaker": "", "augment": None, "text_source": {},
                       "expected_f0_hz": "n/a", "f0_median_hz": float("nan")}),
         ("c", "c", {"expected_f0_hz": -1.0, "augment": "not-a-dict"}),
         ("d", "d", {"augment": ["speed"]})]
  groups = eb.breakdown(odd)
  assert groups == {"augment": {"not-a-dict": groups["augment"]["not-a-dict"],
                                "speed": groups["augment"]["speed"]}}
  assert eb.breakdown([]) == {}
  assert eb.group_stats([])["wer"] is None  # no reference words: null, not NaN


def test_f0_bands_and_median_voiced_f0():
  assert [eb.f0_band(hz) for hz in (80, 119.9, 120, 200, 200.1, 400)] == [
      "low", "low", "mid", "mid", "high", "high"]
  assert [eb.f0_band(v) for v in (0, -3, None, "150", float("inf"), True)] == [None] * 6
  assert eb.median_voiced_f0(np.array([0, 100, 0, 120, 300], np.float32)) == 120.0
  assert eb.median_voiced_f0(np.zeros(5)) is None
  assert eb.utterance_f0_band({"f0_median_hz": 0.0, "expected_f0_hz": 130.0}) == "mid"


def test_format_table_lists_every_group():
  groups = eb.breakdown(UTTERANCES)
  table = eb.format_table(groups, overall=eb.group_stats(
      eb.edit_counts(r, h) for r, h, _ in UTTERANCES))
  lines = table.splitlines()
  assert lines[0].split() == ["group", "utts", "words", "WER", "CER", "ins", "del", "sub"]
  assert lines[1].split() == ["all", "4", "11", "0.4545", "0.5278", "1", "3", "1"]
  assert "  espeak-ng:en+m1" in table and "  reverb" in table
  assert lines[lines.index("augment") + 1].split()[:4] == ["clean", "1", "3", "0.3333"]
  assert not math.isnan(groups["engine"]["flite"]["wer"])
