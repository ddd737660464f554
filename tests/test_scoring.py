"""Transcript scoring is defined once: its normalisation against hand-counted edits, and the
trainer's eval and `evaluate`'s summary give the same WER/CER for the same predictions."""

import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from echo_jax import evaluate
from echo_jax.inference import examples as examples_lib
from echo_jax.inference import audio_input
from echo_jax.data.tokenizer import Tokenizer, ids_to_text
from echo_jax.inference import scoring
from echo_jax.parallel import sharding
from echo_jax.token_ids import EOS_ID
from echo_jax.training import evaluation

REFERENCES = ["the cat sat", "a b c d", "hello world", "it's fine"]
# Spacing the tokenizer can decode but normalisation removes: a double and a leading space.
HYPOTHESES = ["the cat sat down", "a x  c", " hello world", "its fine"]
# Normalised: 1 inserted word; 1 substitution + 1 deletion; 0; 1 substitution -> 4 of 11 words.
# Characters (spaces count): " down" inserts 5; "a b c d" -> "a x c" 1 substitution + 2 deletions;
# 0; "it's" -> "its" 1 deletion -> 9 of 11 + 7 + 11 + 9 = 38.
WER, CER = 4 / 11, 9 / 38


def test_normalisation_and_rates_match_hand_counted_edits():
  assert scoring.normalise("  The CAT,  sat! ") == "the cat sat"
  rates = scoring.error_rates(["The cat sat.", "A B C D"], ["the  cat sat down", "a x c"])
  assert rates["reference_words"] == 3 + 4 and rates["reference_characters"] == 11 + 7
  assert (rates["word_insertions"], rates["word_substitutions"], rates["word_deletions"]) == (
      1, 1, 1)
  assert rates["wer"] == pytest.approx(3 / 7)
  assert (rates["char_insertions"], rates["char_substitutions"], rates["char_deletions"]) == (
      5, 1, 2)
  assert rates["cer"] == pytest.approx(8 / 18)
  assert scoring.error_rates(REFERENCES, HYPOTHESES)["wer"] == pytest.approx(WER)
  assert scoring.error_rates(REFERENCES, HYPOTHESES)["cer"] == pytest.approx(CER)
  assert scoring.utterance_wer("It's OK", "its ok") == pytest.approx(0.5)
  assert all(math.isnan(v) for v in scoring.error_rates([], []).values())


def _rows(tokenizer, texts, length):
  rows = np.zeros([len(texts), length], np.int32)
  for i, text in enumerate(texts):
    ids = tokenizer.encode(text) + [EOS_ID]
    rows[i, :len(ids)] = ids
  return rows


def _trainer_eval(tokenizer, references, hypotheses, ctc_hypotheses):
  """training.evaluation.evaluate over one batch whose "generated" tokens are the hypotheses',
  plus a padding row (valid False) with a wrong hypothesis that must not count."""
  length = 24
  batch = {
      "decoder_target_tokens": _rows(tokenizer, references + [references[0]], length),
      "hypothesis_tokens": _rows(tokenizer, hypotheses + ["zzz zzz"], length),
      "ctc_tokens": _rows(tokenizer, ctc_hypotheses + ["zzz"], length),
      "valid": np.asarray([True] * len(references) + [False]),
  }
  assert [ids_to_text(tokenizer, row) for row in batch["hypothesis_tokens"][:-1]] == hypotheses
  config = ml_collections.ConfigDict({"eval": {"generate": True, "split": "validation"}})
  mesh = sharding.make_mesh(jax.devices()[:1])

  def eval_step(params, batch):
    del params, batch
    return {"loss_sum": jnp.float32(0.0), "num_tokens": jnp.float32(1.0),
            "num_correct": jnp.float32(1.0)}

  return evaluation.evaluate(config, None, eval_step, lambda _, b: b["hypothesis_tokens"], mesh,
                             tokenizer, [batch], lambda _, b: b["ctc_tokens"])


def _evaluate_summary(references, hypotheses):
  """evaluate.evaluate_examples with a transcriber that "decodes" each example's hypothesis."""
  config = ml_collections.ConfigDict({
      "data": {"sample_rate": 16000},
      "decode": {"max_length": 24, "ctc_weight": 0.0, "length_penalty": 0.6}})
  examples = [examples_lib.Example(key=str(i), reference=ref, items=[{"hypothesis": hyp}],
                               bounds=[(0, 16000)], result=audio_input.FileResult(path=str(i)))
              for i, (ref, hyp) in enumerate(zip(references, hypotheses))]
  evaluator = types.SimpleNamespace(
      config=config, beam_size=1, ctc_greedy=None,
      transcriber=lambda items: [item["hypothesis"] for item in items],
      teacher_forcing=lambda usable: {})
  return evaluate.evaluate_examples(examples, evaluator)


def test_trainer_eval_and_evaluate_agree_on_the_same_predictions(tmp_path):
  tokenizer = Tokenizer.train(REFERENCES + HYPOTHESES, str(tmp_path / "tokenizer"), kind="char")
  ctc_hypotheses = ["the cat", "a b c d", "hello", "it's fine"]
  trained = _trainer_eval(tokenizer, REFERENCES, HYPOTHESES, ctc_hypotheses)
  summary = _evaluate_summary(REFERENCES, HYPOTHESES)
  assert trained["num_examples"] == len(REFERENCES)
  for name, value in (("wer", WER), ("cer", CER)):
    assert trained[name] == pytest.approx(value)
    assert summary["decoded"][name] == pytest.approx(trained[name])
  ctc = evaluate.error_rates(REFERENCES, ctc_hypotheses)  # what evaluate's ctc_greedy reports
  assert (trained["ctc_wer"], trained["ctc_cer"]) == pytest.approx((ctc["wer"], ctc["cer"]))
