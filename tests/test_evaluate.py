"""Evaluation: WER/CER against hand counts, teacher-forced accuracy against the trainer's
definition, split and manifest modes agreeing on the same audio, and the CLI outputs."""

import json
import os

import jax
import numpy as np
import pytest

from echo_jax import evaluate
from echo_jax.inference import examples as examples_lib
from echo_jax import transcribe
from echo_jax.errors import UserError
from echo_jax.inference import ctc_lexicon
from echo_jax.lm import build as lm_build
from echo_jax.lm import tune as lm_tune
from random_runs import save_random_run


def test_error_rates_match_hand_counted_edits():
  refs = ["Hello, World!", "the cat sat", "A B C D"]
  hyps = ["hello world", "The cat sat down.", "a x c"]
  # Normalised: 0 edits; 1 inserted word ("down"); 1 substitution (b->x) + 1 deletion (d).
  rates = evaluate.error_rates(refs, hyps)
  assert rates["reference_words"] == 2 + 3 + 4
  assert rates["word_insertions"] == 1 and rates["word_substitutions"] == 1
  assert rates["word_deletions"] == 1
  assert rates["wer"] == pytest.approx(3 / 9)
  # Characters (spaces count): " down" inserts 5; "a b c d" -> "a x c": 1 substitution, 2 deletions.
  assert rates["reference_characters"] == 11 + 11 + 7
  assert rates["cer"] == pytest.approx((5 + 1 + 2) / 29)
  assert evaluate.utterance_wer("It's OK", "its ok") == pytest.approx(0.5)


def test_read_manifest_layouts_relative_paths_and_split(tmp_path):
  (tmp_path / "a").mkdir()
  jsonl = tmp_path / "m.jsonl"
  jsonl.write_text("\n".join(json.dumps(r) for r in [
      {"id": "u1", "path": "a/1.wav", "text": "one", "split": "test"},
      {"id": "u2", "path": "/abs/2.wav", "transcript": "two", "split": "train"},
      {"id": "u3", "path": "a/3.wav", "text": "three", "split": "dev"}]) + "\n")
  rows = examples_lib.read_manifest(str(jsonl))
  assert {r["id"]: (r["path"], r["text"], r["split"]) for r in rows} == {
      "u1": (str(tmp_path / "a" / "1.wav"), "one", "test"),
      "u2": ("/abs/2.wav", "two", "train"),
      "u3": (str(tmp_path / "a" / "3.wav"), "three", "validation")}
  assert [r["id"] for r in examples_lib.read_manifest(str(jsonl), "test")] == ["u1"]
  tsv = tmp_path / "m.tsv"
  tsv.write_text("path\ttext\tsplit\na/1.wav\tone\ttest\na/2.wav\ttwo\ttest\n")
  assert [r["text"] for r in examples_lib.read_manifest(str(tsv), "test")] == ["one", "two"]
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps({"text": "no path"}) + "\n")
  with pytest.raises(ValueError, match="bad.jsonl:1"):
    examples_lib.read_manifest(str(bad))


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory, _tiny_prepared_session):
  """A workdir (resolved config + one checkpoint of a random tiny model) on the session's prepared
  tiny corpus; no tokenizer copy, so loading goes through the prepared data's tokenizer."""
  import ml_collections

  config = ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())
  prepared = _tiny_prepared_session[1]
  tokenizer = prepared.load_tokenizer()
  config.model.vocab_size = tokenizer.vocab_size
  config.data.eval_batch_size = 4
  config.decode.max_length = 12
  workdir = str(tmp_path_factory.mktemp("eval_run"))
  model, params = save_random_run(config, workdir, 3)
  return workdir, config, prepared, tokenizer, model, params


def test_evaluate_split_cli_writes_consistent_outputs(eval_run, capsys):
  import jiwer

  from echo_jax.data import pipeline
  workdir, config, prepared, tokenizer, model, params = eval_run
  code = evaluate.main(["--workdir", workdir, "--split", "test"])
  # stdout: the summary JSON, then the breakdown table.
  stdout = capsys.readouterr().out
  printed, end = json.JSONDecoder().raw_decode(stdout)
  table = stdout[end:].strip().splitlines()
  assert code == 0
  out_dir = os.path.join(workdir, "eval", "test_step3")
  assert printed["outputs"] == out_dir
  with open(os.path.join(out_dir, "summary.json")) as handle:
    summary = json.load(handle)
  rows = [json.loads(line) for line in open(os.path.join(out_dir, "predictions.jsonl"))]
  tsv = open(os.path.join(out_dir, "predictions.tsv")).read().strip().split("\n")
  assert summary["num_examples"] == len(rows) == len(tsv) - 1 == prepared.split_sizes["test"] > 0
  assert summary["checkpoint_step"] == 3
  assert "normalise_transcript" in summary["normalisation"]
  # The decoded WER is the corpus WER of the written (normalised) predictions.
  wer = jiwer.wer([r["reference_normalised"] for r in rows],
                  [r["hypothesis_normalised"] for r in rows])
  assert summary["decoded"]["wer"] == pytest.approx(wer)
  # Teacher-forced accuracy equals the trainer's definition over the pipeline's eval batches.
  correct = total = 0
  apply = jax.jit(model.apply)
  for batch in pipeline.make_eval_batches(config, "test"):
    logits = apply({"params": params}, batch)
    targets = batch["decoder_target_tokens"]
    mask = (targets != 0) & batch["valid"][:, None]
    correct += int(np.sum((np.asarray(logits).argmax(-1) == targets) & mask))
    total += int(np.sum(mask))
  assert summary["teacher_forced"]["target_tokens"] == total
  assert summary["teacher_forced"]["token_accuracy"] == pytest.approx(correct / total)
  assert summary["teacher_forced"]["skipped"] == 0
  check_breakdown(summary, rows, config, table)


def check_breakdown(summary, rows, config, table):
  """The split's breakdown against the corpus manifest and jiwer on the written predictions."""
  import jiwer

  from echo_jax.inference import error_breakdown
  manifest = {r["id"]: r for r in map(json.loads, open(os.path.join(config.data.corpus_dir,
                                                                     "manifest.jsonl")))}
  breakdown = summary["breakdown"]
  assert {"engine", "speaker", "f0_band"} <= set(breakdown)
  for row in rows:  # predictions carry the manifest's metadata and the measured F0 band
    for field in ("engine", "voice", "speaker", "expected_f0_hz"):
      assert row[field] == manifest[row["id"]][field]
    assert row["f0_band"] == error_breakdown.f0_band(row["f0_median_hz"])
  # Test speakers are the held-out voices of the test rows; each group's numbers are jiwer's on
  # its own rows, and the engine groups add up to the overall counts.
  assert set(breakdown["speaker"]) == {r["speaker"] for r in manifest.values()
                                       if r["split"] == "test"}
  for dimension in ("engine", "speaker", "f0_band"):
    for name, stats in breakdown[dimension].items():
      members = [r for r in rows if r[dimension] == name]
      words = jiwer.process_words([r["reference_normalised"] for r in members],
                                  [r["hypothesis_normalised"] for r in members])
      chars = jiwer.process_characters([r["reference_normalised"] for r in members],
                                       [r["hypothesis_normalised"] for r in members])
      assert stats["num_utterances"] == len(members)
      assert (stats["insertions"], stats["deletions"], stats["substitutions"]) == (
          words.insertions, words.deletions, words.substitutions)
      assert stats["wer"] == pytest.approx(words.wer) and stats["cer"] == pytest.approx(chars.cer)
  decoded = summary["decoded"]
  for key in ("insertions", "deletions", "substitutions"):
    assert sum(g[key] for g in breakdown["engine"].values()) == decoded["word_" + key]
  assert sum(g["words"] for g in breakdown["engine"].values()) == decoded["reference_words"]
  assert table[0].split()[:3] == ["group", "utts", "words"]
  assert table[1].split()[:3] == ["all", str(summary["num_decoded"]),
                                  str(decoded["reference_words"])]
  assert "engine" in table and all(f"  {name}" in "\n".join(table) for name in breakdown["engine"])


def test_manifest_mode_agrees_with_split_mode_and_reports_bad_files(eval_run, tmp_path):
  workdir, config, prepared, tokenizer, model, params = eval_run
  split = examples_lib.split_examples(config, "test")
  corpus = config.data.corpus_dir
  rows = [r for r in examples_lib.read_manifest(os.path.join(corpus, "manifest.jsonl"), "test")]
  assert sorted(r["id"] for r in rows) == sorted(ex.key for ex in split)
  manifest = tmp_path / "test.tsv"
  lines = ["path\ttext\tid"] + [f"{r['path']}\t{r['text']}\t{r['id']}" for r in rows]
  lines.append(f"{tmp_path / 'missing.wav'}\tnothing here\tmissing")
  manifest.write_text("\n".join(lines) + "\n")
  from_manifest = examples_lib.manifest_examples(examples_lib.read_manifest(str(manifest)), config)
  evaluator = evaluate.Evaluator(config, model, {"params": params}, tokenizer, beam_size=1,
                                 batch_size=4)
  split_summary = evaluator(split)
  manifest_summary = evaluator(from_manifest)
  # The same wavs through the transcription path give the features the model trained on, hence
  # the same transcripts and numbers; the missing file is reported, not fatal.
  assert manifest_summary["failed"] == {"missing": "unreadable"}
  assert manifest_summary["num_decoded"] == split_summary["num_examples"]
  by_key = {ex.key: ex.result.text for ex in split}
  for ex in from_manifest[:-1]:
    assert ex.result.text == by_key[ex.key]
  assert manifest_summary["decoded"] == split_summary["decoded"]
  assert manifest_summary["teacher_forced"] == split_summary["teacher_forced"]
  evaluate.write_outputs(str(tmp_path / "out"), from_manifest, manifest_summary)
  written = [json.loads(line) for line in open(tmp_path / "out" / "predictions.jsonl")]
  assert written[-1]["error"] == "unreadable" and "hypothesis" not in written[-1]
  # A TSV names no engine or voice, but the F0 bands come from the same features.
  assert set(manifest_summary["breakdown"]) == {"f0_band"}
  assert manifest_summary["breakdown"]["f0_band"] == split_summary["breakdown"]["f0_band"]

  # A JSONL manifest's own fields: augmentation kinds (noise+reverb counts in both) and text
  # source join on the id; the engine groups equal the split's.
  corpus_rows = {r["id"]: r for r in map(json.loads, open(os.path.join(corpus,
                                                                       "manifest.jsonl")))}
  both = {"noise": {"type": "white", "snr_db": 9.0}, "reverb": {"rt60_s": 0.4}}
  kinds = [both, {}] + [{"noise": {"type": "pink", "snr_db": 17.3}}] * (len(rows) - 2)
  jsonl = tmp_path / "test.jsonl"
  with open(jsonl, "w") as handle:
    for i, r in enumerate(rows):
      row = dict(corpus_rows[r["id"]], path=r["path"], augment=kinds[i],
                 text_source=("fortunes", "wordnet")[i % 2])
      handle.write(json.dumps(row) + "\n")
  jsonl_examples = examples_lib.manifest_examples(examples_lib.read_manifest(str(jsonl)), config)
  jsonl_summary = evaluator(jsonl_examples)
  breakdown = jsonl_summary["breakdown"]
  assert breakdown["engine"] == split_summary["breakdown"]["engine"]
  counts = {name: group["num_utterances"] for name, group in breakdown["augment"].items()}
  assert len(rows) >= 2 and counts == {"clean": 1, "noise": len(rows) - 1, "reverb": 1}
  assert breakdown["augment"]["reverb"]["words"] == len(rows[0]["text"].split())
  assert {n: g["num_utterances"] for n, g in breakdown["text_source"].items()} == {
      "fortunes": len(rows[0::2]), "wordnet": len(rows[1::2])}
  assert jsonl_examples[0].metadata["augment"] == both


def test_evaluate_ctc_best_path_equals_an_unbatched_numpy_best_path(tmp_path,
                                                                    _tiny_prepared_session,
                                                                    capsys):
  """A CTC-head run: evaluate's second hypothesis (padded bucket batches, jit) equals the best
  path computed here one utterance at a time (no padding) with argmax / merge / drop blanks in
  numpy, and its CER is jiwer's on those texts; with --lm the third (the word-LM lexicon search)
  equals the search run here on each utterance's unpadded log posteriors, and its WER is jiwer's."""
  import jiwer
  import ml_collections

  from echo_jax.data import pipeline
  from echo_jax.data.text import normalise_transcript
  from echo_jax.models import EchoModel
  config = ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())
  tokenizer = _tiny_prepared_session[1].load_tokenizer()
  config.model.vocab_size = tokenizer.vocab_size
  config.model.ctc_head = True
  config.data.eval_batch_size = 4
  config.decode.max_length = 8
  workdir = str(tmp_path / "ctc_run")
  model, params = save_random_run(config, workdir, 2)
  lm = lm_build.build(config, order=2, out=str(tmp_path / "words.arpa"), corpus_sources=False,
                      log=lambda _: None)
  assert evaluate.main(["--workdir", workdir, "--split", "test", "--json", "--lm", lm,
                        "--lm_weight", "0.5", "--lm_word_score", "5", "--lm_beam_size", "8",
                        "--lm_blank_penalty", "0.7"]) == 0
  summary = json.loads(capsys.readouterr().out)
  rows = {r["id"]: r for r in map(json.loads, open(os.path.join(
      workdir, "eval", "test_step2", "predictions.jsonl")))}
  # An untrained model: the word bonus makes the search put words out.
  search = ctc_lexicon.LexiconSearch.from_arpa(tokenizer, lm, lm_weight=0.5, word_score=5.0,
                                               beam_size=8, blank_penalty=0.7)
  expected, expected_lm = {}, {}
  for record in pipeline.iterate_examples(config, "test"):
    frames = int(record["num_frames"])
    batch = {"mel": np.asarray(record["mel"], np.float32)[None, :frames],
             "f0": np.asarray(record["f0"], np.float32)[None, :frames],
             "num_frames": np.asarray([frames], np.int32),
             "decoder_input_tokens": np.ones((1, 1), np.int32),
             "decoder_target_tokens": np.full((1, 1), 2, np.int32)}
    _, ctc = model.apply({"params": params}, batch, method=EchoModel.forward)
    path = np.asarray(ctc.logits)[0][np.asarray(ctc.valid)[0]].argmax(-1)
    merged = [int(t) for i, t in enumerate(path) if t != 0 and (i == 0 or t != path[i - 1])]
    key = record["id"].decode() if isinstance(record["id"], bytes) else str(record["id"])
    expected[key] = tokenizer.decode(merged)
    log_probs = jax.nn.log_softmax(np.asarray(ctc.logits, np.float32)[0], axis=-1)
    expected_lm[key] = search(np.asarray(log_probs)[np.asarray(ctc.valid)[0]])
  assert set(expected) == set(rows) and expected
  for key, text in expected.items():
    assert rows[key]["ctc_hypothesis"] == text, key
    assert rows[key]["ctc_lm_hypothesis"] == expected_lm[key], key
  assert any(expected_lm.values())  # the search put words out, so the equality says something
  refs = [normalise_transcript(rows[k]["reference"]) for k in sorted(rows)]
  hyps = [normalise_transcript(expected[k]) for k in sorted(rows)]
  assert summary["ctc_greedy"]["examples"] == len(rows)
  assert summary["ctc_greedy"]["cer"] == pytest.approx(jiwer.cer(refs, hyps))
  lm_hyps = [normalise_transcript(expected_lm[k]) for k in sorted(rows)]
  assert summary["ctc_greedy"]["lm"]["wer"] == pytest.approx(jiwer.wer(refs, lm_hyps))
  # transcribe's CTC hypotheses (--hypothesis ctc / ctc_lm) are the same transcripts.
  examples = examples_lib.split_examples(config, "test")
  items = [ex.items[0] for ex in examples]
  keys = [ex.key for ex in examples]
  best_path = transcribe.BatchTranscriber(config, model, {"params": params}, tokenizer, 1, 4,
                                          hypothesis="ctc")
  assert dict(zip(keys, best_path(items))) == expected
  with_lm_config = ml_collections.ConfigDict(config.to_dict())
  with_lm_config.decode.update(lm_path=lm, lm_weight=0.5, lm_word_score=5.0, lm_beam_size=8,
                               lm_blank_penalty=0.7)
  with_lm = transcribe.BatchTranscriber(with_lm_config, model, {"params": params}, tokenizer, 1,
                                        3, hypothesis="ctc_lm")  # other batches, same texts
  assert dict(zip(keys, with_lm(items))) == expected_lm
  assert transcribe.default_hypothesis(with_lm_config) == "ctc_lm"
  assert transcribe.default_hypothesis(config) == "attention"
  with pytest.raises(UserError, match="--lm auto"):  # no LM set: say how to give one
    transcribe.BatchTranscriber(config, model, {"params": params}, tokenizer, 1, 4, "ctc_lm")
  assert summary["ctc_greedy"]["lm"]["lm_weight"] == 0.5
  assert summary["ctc_greedy"]["lm"]["blank_penalty"] == 0.7
  assert summary["ctc_greedy"]["lm"]["path"] == lm
  # The tuning grid decodes the same posteriors: its point at these weights is evaluate's figure.
  assert lm_tune.main(["--workdir", workdir, "--split", "test", "--max_examples", "-1",
                       "--batch_size", "4", "--lm", lm, "--lm_weights", "0.5,2",
                       "--word_scores", "5", "--blank_penalties", "0.7,0", "--lm_beam_size",
                       "8"]) == 0
  tuned = json.load(open(os.path.join(workdir, "eval", "lm_tune_test_step2.json")))
  assert [(r["lm_weight"], r["word_score"], r["blank_penalty"]) for r in tuned["grid"]] == [
      (0.5, 5.0, 0.7), (0.5, 5.0, 0.0), (2.0, 5.0, 0.7), (2.0, 5.0, 0.0)]
  assert tuned["grid"][0]["wer"] == pytest.approx(summary["ctc_greedy"]["lm"]["wer"])
  assert tuned["grid"][0]["cer"] == pytest.approx(summary["ctc_greedy"]["lm"]["cer"])
