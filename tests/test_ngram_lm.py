"""The word n-gram LM: interpolated modified Kneser-Ney, its ARPA file, and the text it learns from."""

import collections
import json
import math
import os
import random

import pytest

from echo_jax.lm import build as lm_build
from echo_jax.lm import ngram


def _random_sentences(seed=0, count=300):
  """Words drawn Zipf-like from a 500-word vocabulary: counts of counts like real text's."""
  rng = random.Random(seed)
  words = "the a cat dog sat on mat ran far away".split() + [f"w{i}" for i in range(490)]
  weights = [1 / (rank + 1) for rank in range(len(words))]
  return [rng.choices(words, weights, k=rng.randint(1, 7)) for _ in range(count)]


def _contexts(model):
  contexts = {()}
  for n in range(1, model.order):
    contexts |= set(model.backoffs[n - 1]) | set(model.probabilities[n - 1])
  return contexts - {(ngram.EOS,)}


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_distribution_sums_to_one(order):
  """For every history the model knows (and unseen ones), P(w | h) over the vocabulary (words,
  </s>, <unk>) sums to 1 through the ARPA backoff rule: the interpolation weights are the
  backoff weights."""
  model = ngram.estimate(_random_sentences(), order)
  predicted = [w for w in model.vocabulary if w != ngram.BOS]
  assert ngram.EOS in predicted and ngram.UNK in predicted
  contexts = sorted(_contexts(model)) + [("never",), ("the", "never"), ("never", "the")]
  for context in contexts:
    total = sum(10 ** model.log10_prob(context, w) for w in predicted)
    assert total == pytest.approx(1.0, abs=1e-9), context


def test_bigram_probabilities_follow_the_kneser_ney_formula():
  """A bigram model against Chen & Goodman's formulas written out from raw counts here:
  continuation counts for the unigrams, discounts D1, D2, D3+ from the counts of counts, the
  interpolation weight from the number of words seen once, twice and more after the context."""
  sentences = _random_sentences(seed=1, count=400)
  model = ngram.estimate(sentences, 2)
  padded = [[ngram.BOS] + s + [ngram.EOS] for s in sentences]
  bigrams = collections.Counter((a, b) for s in padded for a, b in zip(s, s[1:]))
  continuation = collections.Counter(b for (_, b) in bigrams)  # distinct left neighbours

  def discounts(counts):
    n = collections.Counter(counts)  # n[k]: how many n-grams occur exactly k times
    y = n[1] / (n[1] + 2 * n[2])
    return {1: 1 - 2 * y * n[2] / n[1], 2: 2 - 3 * y * n[3] / n[2], 3: 3 - 4 * y * n[4] / n[3]}

  d1, d2 = discounts(continuation.values()), discounts(bigrams.values())
  assert all(0 < d[k] <= k for d in (d1, d2) for k in d)  # estimated, not the fallback
  vocabulary = set(continuation) | {ngram.UNK}
  total1 = sum(continuation.values())
  gamma1 = sum(d1[min(c, 3)] for c in continuation.values()) / total1

  def unigram(w):
    c = continuation.get(w, 0)
    return (max(c - d1[min(c, 3)], 0) if c else 0) / total1 + gamma1 / len(vocabulary)

  def bigram(h, w):
    after = {b: c for (a, b), c in bigrams.items() if a == h}
    total = sum(after.values())
    gamma = sum(d2[min(c, 3)] for c in after.values()) / total
    c = after.get(w, 0)
    return (max(c - d2[min(c, 3)], 0) if c else 0) / total + gamma * unigram(w)

  for h in ("the", "cat", ngram.BOS):
    for w in ("the", "cat", "away", ngram.EOS, ngram.UNK):
      assert 10 ** model.log10_prob([h], w) == pytest.approx(bigram(h, w), rel=1e-9), (h, w)
  assert 10 ** model.log10_prob([], "zebra") == pytest.approx(unigram(ngram.UNK), rel=1e-9)


def test_tiny_text_uses_the_fallback_discounts():
  """Too little text for the counts-of-counts estimate: KenLM's fallback discounts, and still a
  proper distribution with mass left for unseen words."""
  model = ngram.estimate([["a", "b"], ["a", "c"]], 2)
  predicted = [w for w in model.vocabulary if w != ngram.BOS]
  assert sum(10 ** model.log10_prob(["a"], w) for w in predicted) == pytest.approx(1.0)
  assert model.log10_prob(["a"], "a") > -10  # unseen after "a", yet possible


def test_arpa_file_scores_in_kenlm_as_the_model_does(tmp_path):
  """The written ARPA file, read by KenLM (flashlight-text's binding, as the decoder reads it),
  gives every word of a sentence (an unknown word and </s> included) the model's log10 P."""
  from flashlight.lib.text.decoder.kenlm import KenLM
  from flashlight.lib.text.dictionary import Dictionary

  model = ngram.estimate(_random_sentences(seed=2), 3)
  path = str(tmp_path / "lm" / "words.arpa")
  ngram.write_arpa(model, path)
  sentence = ["the", "cat", "zebra", "sat", "on", "the", "mat"]
  words = Dictionary(sorted(set(sentence)) + [ngram.UNK])
  kenlm = KenLM(path, words)
  state, history = kenlm.start(False), [ngram.BOS]
  for word in sentence:
    state, score = kenlm.score(state, words.get_index(word))
    assert score == pytest.approx(model.log10_prob(history, word), abs=1e-5), word
    history.append(word)
  _, score = kenlm.finish(state)
  assert score == pytest.approx(model.log10_prob(history, ngram.EOS), abs=1e-5)


def test_lm_text_never_holds_a_held_out_transcript(tiny_data_config, tiny_prepared, tmp_path):
  """The LM learns from the training transcripts and the given texts with every validation and
  test transcript removed (here a text file holding all of them), and records it; with the
  corpus's sentence sources on, those are in and the held-out ones still out."""
  from echo_jax.data.text import normalise_transcript

  by_split = lm_build.manifest_transcripts(tiny_data_config)
  held_out = set(by_split["validation"]) | set(by_split["test"])
  assert held_out
  extra = tmp_path / "extra.txt"
  extra.write_text("An extra sentence, spoken nowhere.\n" + "\n".join(sorted(held_out)) + "\n")
  sentences, record = lm_build.lm_sentences(tiny_data_config, [str(extra)], corpus_sources=False)
  assert not held_out & set(sentences)
  assert set(sentences) == set(by_split["train"]) | {
      normalise_transcript("An extra sentence, spoken nowhere.")}
  assert record["held_out_sentences_removed"] == len(held_out)
  out = lm_build.build(tiny_data_config, order=2, text_files=[str(extra)],
                       out=str(tmp_path / "lm.arpa"), corpus_sources=False, log=lambda _: None)
  written = json.load(open(out + ".json"))
  assert written["sentences"] == len(sentences) and written["order"] == 2
  assert written["validation"]["words"] == sum(len(s.split()) + 1 for s in by_split["validation"])
  assert 1 < written["validation"]["perplexity"] < math.inf
  with_sources, _ = lm_build.lm_sentences(tiny_data_config)
  assert len(with_sources) > 10 * len(sentences) and not held_out & set(with_sources)


def test_lm_path_resolution(tiny_data_config, tmp_path):
  """decode.lm_path: "" is no LM; an existing file is used as given; "auto" is the corpus LM's
  default path once built; a missing file is an error naming the build command."""
  from echo_jax.errors import MissingInputError

  assert lm_build.resolve(tiny_data_config, "") == ""
  arpa = tmp_path / "mine.arpa"
  ngram.write_arpa(ngram.estimate([["a", "b"]], 2), str(arpa))
  assert lm_build.resolve(tiny_data_config, str(arpa)) == str(arpa)
  with pytest.raises(MissingInputError, match="python -m echo_jax.lm.build"):
    lm_build.resolve(tiny_data_config, str(tmp_path / "missing.arpa"))
  tiny_data_config.data.root = str(tmp_path / "data")
  auto = lm_build.default_path(tiny_data_config)
  assert auto.startswith(str(tmp_path / "data")) and auto.endswith("words_3gram.arpa")
  ngram.write_arpa(ngram.estimate([["a", "b"]], 3), auto)  # built before: used, not rebuilt
  assert lm_build.resolve(tiny_data_config, lm_build.AUTO) == auto


def test_auto_lm_is_kept_in_the_run_and_used_where_the_corpus_is_absent(tiny_data_config,
                                                                       tmp_path):
  """With a workdir, "auto" copies the corpus LM (and its record) into <workdir>/lm once; on a
  machine without the corpus or its LM that copy is used; with neither, the error names --lm."""
  from echo_jax.errors import MissingInputError

  config = tiny_data_config
  config.data.root = str(tmp_path / "data")
  auto = lm_build.default_path(config)
  ngram.write_arpa(ngram.estimate([["a", "b"], ["b", "c"]], 3), auto)
  with open(auto + ".json", "w") as handle:
    handle.write('{"sentences": 2}')
  workdir = str(tmp_path / "run")
  kept = lm_build.kept_path(config, workdir)
  assert kept == os.path.join(workdir, "lm", "words_3gram.arpa")
  assert lm_build.resolve(config, lm_build.AUTO, workdir) == auto
  assert open(kept).read() == open(auto).read()
  assert open(kept + ".json").read() == '{"sentences": 2}'
  # The run moved to a machine without the corpus: its kept copy is the LM.
  config.data.root = str(tmp_path / "elsewhere")
  config.data.corpus_dir = str(tmp_path / "no_corpus")
  assert lm_build.resolve(config, lm_build.AUTO, workdir) == kept
  with pytest.raises(MissingInputError, match="--lm none"):
    lm_build.resolve(config, lm_build.AUTO, str(tmp_path / "another_run"))
