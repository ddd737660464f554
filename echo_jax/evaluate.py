"""Evaluate a trained run: WER/CER of decoded transcripts, and teacher-forced token accuracy.

  python -m echo_jax.evaluate --workdir runs/default --split test [--checkpoint STEP]
  python -m echo_jax.evaluate --workdir runs/default --manifest FILE [--split test]

Two kinds of numbers, reported separately:
  * decoded: the transcript from greedy decoding (or beam search with --beam-size > 1) to EOS, as
    `transcribe` produces it (long manifest audio is chunked and stitched). WER and CER come from
    jiwer, computed on corpus level (total edits / total reference words or characters) after both
    reference and hypothesis go through echo_jax.data.text.normalise_transcript (lower case, a-z,
    apostrophe, single spaces); CER counts the spaces between words as characters.
  * teacher_forced: the decoder is fed the reference tokens; token_accuracy is the fraction of
    non-pad target positions (EOS included) whose argmax equals the target, and teacher_forced_wer
    is the WER of the argmax sequence cut at EOS (the seed's "WER", which needs the reference to
    compute and so is not a transcription result). Examples longer than the largest bucket
    (chunked manifest audio) are left out of these and counted in `teacher_forced.skipped`.

Writes predictions.tsv, predictions.jsonl and summary.json to --out (default
<workdir>/eval/<split or manifest name>_step<STEP>) and prints the summary.
"""

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import sys
import time
from typing import Dict, Iterator, List, Optional, Sequence

import jax
import jax.numpy as jnp
import jiwer
import numpy as np

from echo_jax import decoding, transcribe

NORMALISATION = ("echo_jax.data.text.normalise_transcript on reference and hypothesis "
                 "(lower case a-z and apostrophe, single spaces)")


@dataclasses.dataclass
class Example:
  key: str  # utterance id or audio path
  reference: str  # the transcript as stored
  items: List[Dict[str, np.ndarray]]  # chunk features (one item unless long manifest audio)
  bounds: List[tuple]  # chunk sample bounds (for stitching)
  result: Optional[transcribe.FileResult] = None
  token_ids: Optional[np.ndarray] = None  # stored target ids (prepared splits); else encoded


def normalise(text: str) -> str:
  from echo_jax.data.text import normalise_transcript
  return normalise_transcript(text)


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> Dict:
  """Corpus WER/CER (jiwer) on normalised text, with the edit counts."""
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
  }


def utterance_wer(reference: str, hypothesis: str) -> float:
  return float(jiwer.process_words(normalise(reference), normalise(hypothesis)).wer)


def example_tokens(example: Example, tokenizer, max_length: int):
  """(decoder_input_tokens, decoder_target_tokens) [max_length] as the training pipeline builds
  them: BOS + ids / ids + EOS, pad 0; ids are the stored ones, else the normalised reference's."""
  from echo_jax.data.pipeline import target_tokens
  ids = example.token_ids
  if ids is None:
    ids = np.asarray(tokenizer.encode(normalise(example.reference)), np.int32)
  return target_tokens(ids, max_length)


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
    edges = self.config.data.bucket_frames
    by_edge: Dict[int, List[Example]] = {}
    for ex in single:
      by_edge.setdefault(transcribe.bucket_edge(ex.items[0]["mel"].shape[0], edges), []).append(ex)
    correct = total = 0
    refs, hyps = [], []
    for edge, group_all in sorted(by_edge.items()):
      for start in range(0, len(group_all), self.batch_size):
        group = group_all[start:start + self.batch_size]
        batch = transcribe.pad_batch([ex.items[0] for ex in group], edge, self.batch_size,
                                     self.config)
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


def read_manifest(path: str, split: Optional[str] = None) -> List[Dict[str, str]]:
  """Rows {id, path, text, split} of a manifest in any layout the data part reads
  (echo_jax.data.builders.sources.manifest_items: .jsonl, .tsv with or without header, LibriSpeech
  or Common Voice folders); `split` keeps only that split."""
  from echo_jax.data.builders import sources
  items = sources.manifest_items(os.path.abspath(path))
  wanted = [sources.canonical_split(split, "--split")] if split else list(sources.SPLITS)
  return [{"id": item.key, "path": item.audio_path, "text": item.raw_text, "split": name}
          for name in wanted for item in items.get(name, [])]


def manifest_examples(rows: Sequence[Dict[str, str]], config) -> List[Example]:
  examples = []
  for row in rows:
    prepared = transcribe.prepare_file(row["path"], config)
    examples.append(Example(row["id"], row["text"], prepared.items, prepared.bounds,
                            prepared.result))
  return examples


def split_examples(config, split: str, max_examples: int = -1) -> List[Example]:
  """Prepared TFDS examples of a split (the features the model trained on)."""
  from echo_jax.data import pipeline
  examples = []
  for record in pipeline.iterate_examples(config, split):
    if 0 <= max_examples <= len(examples):
      break
    item = {"mel": np.asarray(record["mel"], np.float32),
            "f0": np.asarray(record["f0"], np.float32)}
    if "waveform" in tuple(config.model.features):
      item["waveform"] = np.asarray(record["waveform"], np.float32)
    key = record["id"].decode() if isinstance(record["id"], bytes) else str(record["id"])
    text = record["text"].decode() if isinstance(record["text"], bytes) else str(record["text"])
    seconds = item["mel"].shape[0] * int(config.data.hop_length) / int(config.data.sample_rate)
    examples.append(Example(key, text, [item], [(0, 0)],
                            transcribe.FileResult(path=key, num_chunks=1, duration_s=seconds),
                            token_ids=np.asarray(record["tokens"], np.int32)))
  return examples


class Evaluator:
  """The jitted decoder and teacher-forced pass for one run (reuse it across example sets)."""

  def __init__(self, config, model, variables, tokenizer, beam_size: int, batch_size: int):
    self.config = config
    self.beam_size = int(beam_size)
    self.transcriber = transcribe.BatchTranscriber(config, model, variables, tokenizer, beam_size,
                                                   batch_size)
    self.teacher_forcing = TeacherForcing(config, model, variables, tokenizer, batch_size)

  def __call__(self, examples: Sequence[Example]) -> Dict:
    return evaluate_examples(examples, self)


def evaluate_examples(examples: Sequence[Example], evaluator: Evaluator) -> Dict:
  """Decodes (filling each example's result.text) and returns the summary dict."""
  config, beam_size = evaluator.config, evaluator.beam_size
  prepared = [transcribe.PreparedFile(ex.result, ex.items, ex.bounds) for ex in examples]
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
                 "length_penalty": float(config.decode.length_penalty),
                 "seconds_incl_compile": decode_seconds},
  }
  if usable:
    summary["decoded"] = error_rates([ex.reference for ex in usable],
                                     [ex.result.text for ex in usable])
  summary["teacher_forced"] = evaluator.teacher_forcing(usable)
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
      if ex.result.error is None:
        row.update(hypothesis=ex.result.text, hypothesis_normalised=normalise(ex.result.text),
                   wer=utterance_wer(ex.reference, ex.result.text), chunks=ex.result.num_chunks)
      else:
        row.update(error=ex.result.error, detail=ex.result.detail)
      handle.write(json.dumps(row, ensure_ascii=False) + "\n")
  with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as handle:
    json.dump(summary, handle, indent=2, sort_keys=True)
    handle.write("\n")


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
  parser.add_argument("--max-examples", type=int, default=-1, help="-1: all")
  parser.add_argument("--beam-size", type=int, default=None,
                      help="default: config.decode.beam_size")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="default: config.data.eval_batch_size")
  parser.add_argument("--out", default=None, help="output directory")
  args = parser.parse_args(argv)
  if args.split is None and args.manifest is None:
    parser.error("give --split NAME or --manifest FILE")
  return args


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices are not for users
  from echo_jax import inference
  # stdout carries only the summary: progress printed while loading goes to stderr.
  with contextlib.redirect_stdout(sys.stderr):
    run = inference.load_run(args.workdir, args.checkpoint)
    config = run.config
    beam_size = args.beam_size if args.beam_size is not None else int(config.decode.beam_size)
    batch_size = (args.batch_size if args.batch_size is not None
                  else int(config.data.eval_batch_size))
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
      print("nothing to evaluate (no examples found)", file=sys.stderr)
      return 1
    evaluator = Evaluator(config, run.model, run.variables, run.tokenizer, beam_size, batch_size)
    summary = evaluator(examples)
    summary.update(workdir=os.path.abspath(args.workdir), checkpoint_step=run.step,
                   source=args.manifest or f"split:{args.split}")
    out_dir = args.out or os.path.join(args.workdir, "eval", f"{name}_step{run.step}")
    write_outputs(out_dir, examples, summary)
    summary["outputs"] = os.path.abspath(out_dir)
  print(json.dumps(summary, indent=2, sort_keys=True))
  for key, reason in summary["failed"].items():
    print(f"{key}: {reason}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
