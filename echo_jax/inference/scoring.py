"""Transcript scoring, defined once: text normalisation and corpus WER/CER.

Both sides are normalised with echo_jax.data.text.normalise_transcript (lower case a-z and
apostrophe, single spaces) before jiwer aligns them; rates are corpus rates (total edits / total
reference words or characters), and CER counts the spaces between words as characters. The
trainer's eval, `evaluate`, `transcribe` and the ablation report all score through here, so they
report the same numbers for the same predictions.
"""

from typing import Dict, Sequence

import jiwer

from echo_jax.data.text import normalise_transcript

NORMALISATION = ("echo_jax.data.text.normalise_transcript on reference and hypothesis "
                 "(lower case a-z and apostrophe, single spaces)")


def normalise(text: str) -> str:
  """The text as it is scored."""
  return normalise_transcript(text)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> Dict:
  """Corpus WER/CER (jiwer) on normalised text, with the edit counts; NaN rates for no pairs."""
  if len(references) != len(hypotheses):
    raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
  if not references:
    return {"wer": float("nan"), "cer": float("nan")}
  refs = [normalise(r) for r in references]
  hyps = [normalise(h) for h in hypotheses]
  words = jiwer.process_words(refs, hyps)
  chars = jiwer.process_characters(refs, hyps)
  return {
      "wer": float(words.wer), "cer": float(chars.cer),
      "word_substitutions": int(words.substitutions), "word_deletions": int(words.deletions),
      "word_insertions": int(words.insertions), "word_hits": int(words.hits),
      "reference_words": int(words.substitutions + words.deletions + words.hits),
      "reference_characters": int(chars.substitutions + chars.deletions + chars.hits),
      "char_substitutions": int(chars.substitutions), "char_deletions": int(chars.deletions),
      "char_insertions": int(chars.insertions),
  }


def utterance_wer(reference: str, hypothesis: str) -> float:
  """WER of one normalised utterance pair."""
  return float(jiwer.process_words(normalise(reference), normalise(hypothesis)).wer)
