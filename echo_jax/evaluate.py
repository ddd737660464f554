"""Evaluate a trained run: WER/CER of decoded transcripts, and teacher-forced token accuracy.

  python -m echo_jax.evaluate --workdir runs/default --split test [--checkpoint STEP]
  python -m echo_jax.evaluate --workdir runs/default --manifest FILE [--split test]

Two kinds of numbers, reported separately:
  * decoded: the transcript from greedy decoding (or beam search with --beam_size > 1) to EOS, as
    `transcribe` produces it (long manifest audio is chunked and stitched). WER and CER come from
    echo_jax.inference.scoring, as in the trainer's eval: jiwer on corpus level (total edits /
    total reference words or characters) after both reference and hypothesis go through
    echo_jax.data.text.normalise_transcript (lower case, a-z, apostrophe, single spaces); CER
    counts the spaces between words as characters.
  * teacher_forced: the decoder is fed the reference tokens; token_accuracy is the fraction of
    non-pad target positions (EOS included) whose argmax equals the target, and teacher_forced_wer
    is the WER of the argmax sequence cut at EOS (the seed's "WER", which needs the reference to
    compute and so is not a transcription result). Examples longer than the largest bucket
    (chunked manifest audio) are left out of these and counted in `teacher_forced.skipped`.
  * ctc_greedy (models with a CTC head): the CTC best path of the encoder alone, repeats merged
    and blanks dropped, as a second hypothesis (`ctc_hypothesis` in predictions.jsonl); same
    normalisation, single-chunk examples only.

A run trained with data.f0_source = "shuffled" (the pitch ablation's placebo) is evaluated the
same way: on a split each record gets the F0 of record (i + n // 2) % n, as in training; on a
manifest each row gets that of row (i + n // 2) % n of the rows evaluated.

Breakdown (summary["breakdown"], echo_jax.inference.error_breakdown): the decoded WER/CER and the word
insertions / deletions / substitutions (plus the character ones) per group of utterances, for each
dimension the metadata allows:
  * engine, speaker (the TTS voice; held-out voices in validation/test), text_source: manifest
    fields;
  * f0_band: low < 120 Hz, mid 120-200 Hz, high > 200 Hz, of the utterance's median F0 over its
    voiced frames (f0 > 0) of the features it was decoded from, else the manifest's
    expected_f0_hz;
  * augment: one group per kind in the manifest's augment dict (an utterance with noise and reverb
    counts in both), "clean" for an empty dict.
Metadata is joined on the utterance id: with --split from the prepared dataset's source manifest
(<corpus_dir>/manifest.jsonl, or data.manifest_path when it is JSONL) and the stored speaker; with
--manifest FILE.jsonl from that file. An utterance without a field is in no group of that
dimension; a dimension no utterance has is absent. Schema: {dimension: {group: {"wer", "cer",
"num_utterances", "words", "insertions", "deletions", "substitutions", "characters",
"char_insertions", "char_deletions", "char_substitutions"}}}; wer/cer are corpus rates within the
group (null for a group without reference words).

Writes predictions.tsv, predictions.jsonl (with each utterance's metadata: engine, voice,
speaker, text_source, augment, expected_f0_hz, f0_median_hz, f0_band where known) and summary.json
to --out (default <workdir>/eval/<split or manifest name>_step<STEP>), prints the summary as JSON
and then the breakdown as a table (--json: the JSON only).
"""

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import sys
import time
from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax import transcribe
from echo_jax.data import pipeline  # the default batch: data.eval_batch_size resolved
from echo_jax.errors import UserError, run_cli
from echo_jax.inference import audio_input
from echo_jax.inference import ctc_decoding
from echo_jax.inference import ctc_lexicon
from echo_jax.inference import decoding
from echo_jax.inference import error_breakdown
from echo_jax.inference import loading
from echo_jax.inference.examples import (Example, add_measured_f0, bucket_batches, example_tokens,
                                         manifest_examples, read_manifest, split_examples)
from echo_jax.inference.scoring import NORMALISATION, error_rates, normalise, utterance_wer


class TeacherForcing:
  """Teacher-forced argmax over padded bucket batches (one compile per bucket)."""

  def __init__(self, config, model, variables, tokenizer, batch_size: int):
    self.config, self.variables, self.tokenizer = config, variables, tokenizer
    self.batch_size = int(batch_size)
    self.max_length = int(config.data.max_target_length)

    def argmax(variables, batch):
      return jnp.argmax(model.apply(variables, batch), axis=-1).astype(jnp.int32)
    self._argmax = jax.jit(argmax)

  def __call__(self, examples: Sequence[Example]) -> Dict:
    single = [ex for ex in examples if len(ex.items) == 1]
    correct = total = 0
    refs, hyps = [], []
    for group, batch in bucket_batches(single, self.config, self.batch_size):
      tokens = [example_tokens(ex, self.tokenizer, self.max_length) for ex in group]
      tokens += [tokens[0]] * (self.batch_size - len(group))
      batch["decoder_input_tokens"] = np.stack([t[0] for t in tokens])
      batch["decoder_target_tokens"] = np.stack([t[1] for t in tokens])
      predicted = np.asarray(self._argmax(self.variables, batch))[:len(group)]
      targets = batch["decoder_target_tokens"][:len(group)]
      valid = targets != 0
      correct += int(np.sum((predicted == targets) & valid))
      total += int(np.sum(valid))
      refs.extend(ex.reference for ex in group)
      hyps.extend(decoding.decode_batch_text(predicted, self.tokenizer))
    out = {"token_accuracy": correct / total if total else float("nan"),
           "target_tokens": total, "examples": len(single),
           "skipped": len(examples) - len(single)}
    if refs:
      out["teacher_forced_wer"] = error_rates(refs, hyps)["wer"]
    return out


class CtcGreedy:
  """CTC transcripts from the encoder alone (a second hypothesis; needs a CTC head), over padded
  bucket batches (one compile per bucket); long chunked audio is left out. The best path always;
  with a LexiconSearch also the word-LM beam search over the same log posteriors."""

  def __init__(self, config, model, variables, tokenizer, batch_size: int,
               lexicon_search: Optional[ctc_lexicon.LexiconSearch] = None):
    self.config = config
    self.batch_size = int(batch_size)
    self.lexicon_search = lexicon_search
    self.decoder = ctc_decoding.CtcDecoder(model, variables, tokenizer, lexicon_search)

  def __call__(self, examples: Sequence[Example]) -> Dict:
    """Sets metadata["ctc_hypothesis"] (and "ctc_lm_hypothesis") of each single-chunk example;
    returns their error rates ("lm": those of the LM search)."""
    single = [ex for ex in examples if len(ex.items) == 1]
    for group, batch in bucket_batches(single, self.config, self.batch_size):
      best_path, with_lm = self.decoder.texts(batch, len(group))
      for row, ex in enumerate(group):
        ex.metadata["ctc_hypothesis"] = best_path[row]
        if with_lm is not None:
          ex.metadata["ctc_lm_hypothesis"] = with_lm[row]
    out = {"examples": len(single), "skipped": len(examples) - len(single)}
    if single:
      references = [ex.reference for ex in single]
      out.update(error_rates(references, [ex.metadata["ctc_hypothesis"] for ex in single]))
      if self.lexicon_search is not None:
        out["lm"] = error_rates(references,
                                [ex.metadata["ctc_lm_hypothesis"] for ex in single])
        out["lm"].update(dataclasses.asdict(self.lexicon_search.options),
                         path=self.lexicon_search.path, lexicon_words=self.lexicon_search.num_words,
                         seconds=round(self.decoder.search_seconds, 2))
    return out


class Evaluator:
  """The jitted decoder and teacher-forced pass for one run (reuse it across example sets);
  workdir: the run's folder, where decode.lm_path = "auto" keeps its copy of the corpus LM."""

  def __init__(self, config, model, variables, tokenizer, beam_size: int, batch_size: int,
               workdir: str = ""):
    self.config = config
    self.beam_size = int(beam_size)
    self.transcriber = transcribe.BatchTranscriber(config, model, variables, tokenizer, beam_size,
                                                   batch_size)
    self.teacher_forcing = TeacherForcing(config, model, variables, tokenizer, batch_size)
    # an LM without a CTC head is an error
    search = ctc_decoding.lexicon_search(config, tokenizer, workdir)
    self.ctc_greedy = (CtcGreedy(config, model, variables, tokenizer, batch_size, search)
                       if config.model.get("ctc_head", False) else None)

  def __call__(self, examples: Sequence[Example]) -> Dict:
    return evaluate_examples(examples, self)


def evaluate_examples(examples: Sequence[Example], evaluator: Evaluator) -> Dict:
  """Decodes (filling each example's result.text) and returns the summary dict."""
  config, beam_size = evaluator.config, evaluator.beam_size
  prepared = [audio_input.PreparedFile(ex.result, ex.items, ex.bounds) for ex in examples]
  transcriber = evaluator.transcriber
  start = time.perf_counter()
  transcribe.transcribe_prepared(prepared, transcriber, int(config.data.sample_rate))
  decode_seconds = time.perf_counter() - start
  usable = [ex for ex in examples if ex.result.error is None]
  failed = [ex for ex in examples if ex.result.error is not None]
  summary = {
      "num_examples": len(examples), "num_decoded": len(usable),
      "failed": {ex.key: ex.result.error for ex in failed},
      "normalisation": NORMALISATION,
      "decode": {"beam_size": int(beam_size), "max_length": int(config.decode.max_length),
                 "ctc_weight": float(config.decode.get("ctc_weight", 0.0)),
                 "length_penalty": float(config.decode.length_penalty),
                 "seconds_incl_compile": decode_seconds},
  }
  if usable:
    summary["decoded"] = error_rates([ex.reference for ex in usable],
                                     [ex.result.text for ex in usable])
  for ex in examples:
    add_measured_f0(ex)
  counts = [error_breakdown.edit_counts(normalise(ex.reference), normalise(ex.result.text))
            for ex in usable]
  summary["breakdown"] = error_breakdown.breakdown_from_counts(counts,
                                                               [ex.metadata for ex in usable])
  summary["teacher_forced"] = evaluator.teacher_forcing(usable)
  if evaluator.ctc_greedy is not None:
    summary["ctc_greedy"] = evaluator.ctc_greedy(usable)
  return summary


def write_outputs(out_dir: str, examples: Sequence[Example], summary: Dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "predictions.tsv"), "w", encoding="utf-8", newline="") as handle:
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
    writer.writerow(["id", "reference", "hypothesis", "wer", "error"])
    for ex in examples:
      hyp = ex.result.text if ex.result.error is None else ""
      wer = f"{utterance_wer(ex.reference, hyp):.4f}" if ex.result.error is None else ""
      writer.writerow([ex.key, normalise(ex.reference), normalise(hyp), wer, ex.result.error or ""])
  with open(os.path.join(out_dir, "predictions.jsonl"), "w", encoding="utf-8") as handle:
    for ex in examples:
      row = {"id": ex.key, "reference": ex.reference,
             "reference_normalised": normalise(ex.reference)}
      row.update((k, v) for k, v in ex.metadata.items() if k not in row)
      if ex.result.error is None:
        row.update(hypothesis=ex.result.text, hypothesis_normalised=normalise(ex.result.text),
                   wer=utterance_wer(ex.reference, ex.result.text), chunks=ex.result.num_chunks)
      else:
        row.update(error=ex.result.error, detail=ex.result.detail)
      handle.write(json.dumps(row, ensure_ascii=False) + "\n")
  with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as handle:
    json.dump(summary, handle, indent=2, sort_keys=True)
    handle.write("\n")


def breakdown_table(summary: Dict) -> str:
  """The summary's breakdown as text, the overall decoded numbers first."""
  decoded = summary.get("decoded")
  overall = None
  if decoded:
    overall = {"num_utterances": summary["num_decoded"], "words": decoded["reference_words"],
               "wer": decoded["wer"], "cer": decoded["cer"],
               "insertions": decoded["word_insertions"], "deletions": decoded["word_deletions"],
               "substitutions": decoded["word_substitutions"]}
  return error_breakdown.format_table(summary.get("breakdown", {}), overall)


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m echo_jax.evaluate",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="training run directory")
  parser.add_argument("--checkpoint", type=int, default=None,
                      help="checkpoint step (default: best by WER, else latest)")
  parser.add_argument("--split", default=None,
                      help="prepared split to evaluate (train/validation/test); with --manifest "
                           "it filters rows by their split column")
  parser.add_argument("--manifest", default=None,
                      help="JSONL ({path, text[, split, id]}), TSV (path<TAB>transcript, or a "
                           "header naming path/text/split columns), or a LibriSpeech / Common "
                           "Voice folder; relative audio paths are relative to the manifest")
  parser.add_argument("--average", type=int, default=1,
                      help="evaluate the mean parameters of the K newest checkpoints (up to "
                           "--checkpoint when given); 1: no averaging")
  parser.add_argument("--max_examples", type=int, default=-1, help="-1: all")
  parser.add_argument("--beam_size", type=int, default=None,
                      help="default: config.decode.beam_size")
  parser.add_argument("--batch_size", type=int, default=None,
                      help="default: config.data.eval_batch_size")
  parser.add_argument("--ctc_weight", type=float, default=None,
                      help="weight of the CTC prefix score in joint CTC/attention decoding "
                           "(needs a CTC head; default: config.decode.ctc_weight)")
  transcribe.add_trim_argument(parser)  # audio files (--manifest) only: a split has features
  ctc_decoding.add_lm_arguments(parser)
  parser.add_argument("--out", default=None, help="output directory")
  parser.add_argument("--json", action="store_true",
                      help="print only the summary JSON (no breakdown table after it)")
  args = parser.parse_args(argv)
  if args.split is None and args.manifest is None:
    parser.error("give --split NAME or --manifest FILE")
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices are not for users
  # stdout carries only the summary: progress printed while loading goes to stderr.
  with contextlib.redirect_stdout(sys.stderr):
    run = loading.load_run(args.workdir, args.checkpoint, args.average)
    config = ctc_decoding.apply_lm_flags(transcribe.apply_ctc_weight(run.config, args.ctc_weight),
                                         args)
    config = transcribe.apply_trim_silence(config, args.trim_silence_db)
    beam_size = args.beam_size if args.beam_size is not None else int(config.decode.beam_size)
    batch_size = (args.batch_size if args.batch_size is not None
                  else pipeline.global_batch_sizes(config.data, 1).eval)  # decodes on one device
    if args.manifest:
      rows = read_manifest(args.manifest, args.split)
      if args.max_examples >= 0:
        rows = rows[:args.max_examples]
      examples = manifest_examples(rows, config)
      name = os.path.splitext(os.path.basename(args.manifest))[0]
      name += f"_{args.split}" if args.split else ""
    else:
      examples = split_examples(config, args.split, args.max_examples)
      name = args.split
    if not examples:
      raise UserError(f"nothing to evaluate: {args.manifest or 'split ' + repr(args.split)} has no "
                      "usable example; check the manifest's paths and split column or the split "
                      "name (train, validation, test)")
    evaluator = Evaluator(config, run.model, run.variables, run.tokenizer, beam_size, batch_size,
                          args.workdir)
    summary = evaluator(examples)
    summary.update(workdir=os.path.abspath(args.workdir), checkpoint_step=run.step,
                   source=args.manifest or f"split:{args.split}")
    suffix = ""
    if run.averaged_steps:
      summary["averaged_steps"] = list(run.averaged_steps)
      suffix = f"_avg{len(run.averaged_steps)}"
    out_dir = args.out or os.path.join(args.workdir, "eval", f"{name}_step{run.step}{suffix}")
    write_outputs(out_dir, examples, summary)
    summary["outputs"] = os.path.abspath(out_dir)
  print(json.dumps(summary, indent=2, sort_keys=True))
  if not args.json:
    print()
    print(breakdown_table(summary), end="")
  for key, reason in summary["failed"].items():
    print(f"{key}: {reason}", file=sys.stderr)
  return 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
