"""Transcribe audio files with a trained run.

  python -m echo_jax.transcribe --workdir runs/default [--checkpoint STEP] FILE_OR_DIR ... \
      [--json] [--hypothesis attention|ctc|ctc_lm] [--lm auto|FILE|none] [--beam_size N] \
      [--batch_size N]

Reads wav/flac/ogg/mp3 (directories are searched recursively for those), downmixes and resamples
to the model's rate, computes the same log-mel and F0 as training, batches chunks padded to the
config's bucket edges (one compile per bucket), decodes, and prints `path<TAB>text` per file (or
one JSON object per line with --json). Audio longer than the largest bucket (or than
config.decode.chunk_seconds) is cut into overlapping chunks whose transcripts are stitched
(echo_jax.inference.longform). A file that cannot be used (unreadable, empty, silent, non-finite)
is reported with its reason on stderr (and as {"path", "error", "detail"} with --json); the others
still complete. Exit status: 0 if every file was transcribed, 1 if any failed.

Which transcript (--hypothesis): `attention`, the decoder's (greedy, or beam search with
--beam_size > 1, joint with the CTC prefix score when decode.ctc_weight > 0); `ctc`, the CTC
head's best path; `ctc_lm`, the CTC head's lexicon search with a word LM (--lm, default the run's
decode.lm_path). Default: ctc_lm when an LM is set (configs/default.py sets one: it is that
run's most accurate transcript), else attention. `evaluate` reports all three side by side.
"""

import argparse
import contextlib
import json
import os
import sys
from typing import Dict, Iterable, List, Optional, Sequence

import ml_collections
import numpy as np

from echo_jax.data import pipeline  # the default batch: data.eval_batch_size resolved
from echo_jax.errors import UserError, run_cli
from echo_jax.inference import ctc_decoding
from echo_jax.inference import decoding
from echo_jax.inference import loading
from echo_jax.inference.audio_input import (FileResult, PreparedFile, padded_batches,
                                            prepare_file)
from echo_jax.inference import longform

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def expand_inputs(inputs: Sequence[str]) -> List[str]:
  """Files as given (any extension: the reader decides) plus audio files found under directories."""
  paths = []
  for item in inputs:
    if os.path.isdir(item):
      found = []
      for root, _, names in os.walk(item):
        found.extend(os.path.join(root, n) for n in names if n.lower().endswith(AUDIO_EXTENSIONS))
      paths.extend(sorted(found))
    else:
      paths.append(item)
  return paths


HYPOTHESES = ("attention", "ctc", "ctc_lm")  # decoder, CTC best path, CTC + word-LM search


def default_hypothesis(config) -> str:
  """The run's best transcript by default: the word-LM CTC search when decode.lm_path is set,
  else the attention decoder."""
  return "ctc_lm" if config.decode.get("lm_path", "") else "attention"


class BatchTranscriber:
  """Decodes lists of feature dicts with one jitted decoder per (bucket, batch size).

  hypothesis: "attention" (greedy or beam search to EOS, joint with the CTC prefix score when
  decode.ctc_weight > 0), "ctc" (the CTC head's best path) or "ctc_lm" (the CTC lexicon search
  with decode.lm_path's word LM; workdir: the run whose kept LM copy "auto" may use)."""

  def __init__(self, config, model, variables, tokenizer, beam_size: int, batch_size: int,
               hypothesis: str = "attention", workdir: str = ""):
    if hypothesis not in HYPOTHESES:
      raise UserError(f"hypothesis {hypothesis!r} is unknown: use one of {', '.join(HYPOTHESES)}")
    if hypothesis != "attention" and not config.model.get("ctc_head", False):
      default = (" (the default when an LM is set; --lm none unsets it)"
                 if hypothesis == "ctc_lm" else "")
      raise UserError(f"--hypothesis {hypothesis}{default} reads the CTC head and this run's "
                      "model has none (trained without model.ctc_head=True); use --hypothesis "
                      "attention")
    self.config = config
    self.model = model
    self.variables = variables
    self.tokenizer = tokenizer
    self.batch_size = int(batch_size)
    self.hypothesis = hypothesis
    if hypothesis == "attention":
      ctc_weight = float(config.decode.get("ctc_weight", 0.0))
      self.decoder = decoding.make_decode_fn(model, int(config.decode.max_length),
                                             int(beam_size), float(config.decode.length_penalty),
                                             ctc_weight=ctc_weight)
    else:
      search = (ctc_decoding.lexicon_search(config, tokenizer, workdir)
                if hypothesis == "ctc_lm" else None)
      if hypothesis == "ctc_lm" and search is None:
        raise UserError("--hypothesis ctc_lm needs a word LM: this run's decode.lm_path is ''; "
                        "give --lm auto (the corpus LM) or --lm FILE.arpa")
      self.decoder = ctc_decoding.CtcDecoder(model, variables, tokenizer, search)

  def _texts(self, batch: Dict, num_rows: int) -> List[str]:
    if self.hypothesis == "attention":
      tokens = np.asarray(self.decoder.fn(self.variables, batch))
      return decoding.decode_batch_text(tokens[:num_rows], self.tokenizer)
    best_path, with_lm = self.decoder.texts(batch, num_rows)
    return with_lm if self.hypothesis == "ctc_lm" else best_path

  def __call__(self, items: Sequence[Dict[str, np.ndarray]]) -> List[str]:
    texts: List[Optional[str]] = [None] * len(items)
    for group, batch in padded_batches(items, self.config, self.batch_size):
      for i, text in zip(group, self._texts(batch, len(group))):
        texts[i] = text
    return texts


def transcribe_prepared(prepared: Sequence[PreparedFile], transcriber: "BatchTranscriber",
                        sample_rate: int) -> List[FileResult]:
  """Decodes all chunks of all files together, then stitches each file's chunk transcripts."""
  items, owners = [], []
  for index, entry in enumerate(prepared):
    items.extend(entry.items)
    owners.extend([index] * len(entry.items))
  texts = transcriber(items) if items else []
  chunk_texts: Dict[int, List[str]] = {}
  for owner, text in zip(owners, texts):
    chunk_texts.setdefault(owner, []).append(text)
  for owner, parts in chunk_texts.items():
    prepared[owner].result.text = longform.stitch_texts(parts, prepared[owner].bounds, sample_rate)
  return [entry.result for entry in prepared]


def transcribe_files(paths: Iterable[str], config, model, variables, tokenizer, beam_size: int = 1,
                     batch_size: int = 8, hypothesis: str = "attention",
                     workdir: str = "") -> List[FileResult]:
  """Transcribes every path; unusable files get `error` set and do not stop the others."""
  prepared = [prepare_file(path, config) for path in paths]
  transcriber = BatchTranscriber(config, model, variables, tokenizer, beam_size, batch_size,
                                 hypothesis, workdir)
  results = transcribe_prepared(prepared, transcriber, int(config.data.sample_rate))
  for result in results:
    result.hypothesis = hypothesis if result.error is None else ""
  return results


def format_result(result: FileResult, as_json: bool) -> str:
  if as_json:
    return json.dumps(result.to_json(), ensure_ascii=False)
  return f"{result.path}\t{result.text}"


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m echo_jax.transcribe",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
  parser.add_argument("--workdir", required=True, help="training run directory")
  parser.add_argument("--checkpoint", type=int, default=None,
                      help="checkpoint step (default: best by WER, else latest)")
  parser.add_argument("--average", type=int, default=1,
                      help="transcribe with the mean parameters of the K newest checkpoints (up "
                           "to --checkpoint when given); 1: no averaging")
  parser.add_argument("--json", action="store_true", help="one JSON object per line")
  parser.add_argument("--beam_size", type=int, default=None,
                      help="the attention decoder's beam (--lm_beam_size is the LM search's; "
                           "default: config.decode.beam_size)")
  parser.add_argument("--batch_size", type=int, default=None,
                      help="chunks per decode batch (default: config.data.eval_batch_size)")
  parser.add_argument("--ctc_weight", type=float, default=None,
                      help="weight of the CTC prefix score in joint CTC/attention decoding "
                           "(needs a CTC head; default: config.decode.ctc_weight)")
  parser.add_argument("--hypothesis", choices=HYPOTHESES, default=None,
                      help="which transcript: the attention decoder's, the CTC head's best path, "
                           "or the CTC head's word-LM search (default: ctc_lm when the run's "
                           "decode.lm_path (or --lm) names an LM, else attention)")
  add_trim_argument(parser)
  ctc_decoding.add_lm_arguments(parser)
  return parser.parse_args(argv)


def add_trim_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--trim_silence_db", type=float, default=None,
                      help="cut leading and trailing audio quieter than this many dB below the "
                           "file's peak, keeping 0.1 s; 0: keep everything (default: "
                           "config.decode.trim_silence_db, 40)")


def apply_trim_silence(config, trim_silence_db):
  """config with decode.trim_silence_db set from the command line (None: keep the run's)."""
  if trim_silence_db is None:
    return config
  if not 0.0 <= trim_silence_db <= 120.0:
    raise UserError(f"--trim_silence_db={trim_silence_db} is invalid: use a number in [0, 120] "
                    "(0: no trimming)")
  config = ml_collections.ConfigDict(config.to_dict())
  config.decode.trim_silence_db = float(trim_silence_db)
  return config


def apply_ctc_weight(config, ctc_weight):
  """config with decode.ctc_weight set from the command line (None: keep the run's)."""
  if ctc_weight is None:
    return config
  if not 0.0 <= ctc_weight <= 1.0:
    raise UserError(f"--ctc_weight={ctc_weight} is invalid: use a number in [0, 1]")
  if ctc_weight > 0 and not config.model.get("ctc_head", False):
    raise UserError(f"--ctc_weight={ctc_weight}: this run's model has no CTC head "
                     "(trained without config.model.ctc_head=True); use 0")
  config = ml_collections.ConfigDict(config.to_dict())
  config.decode.ctc_weight = float(ctc_weight)
  return config


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices are not for users
  paths = expand_inputs(args.inputs)
  if not paths:
    raise UserError(f"no audio files in {' '.join(args.inputs)}; give audio files (wav, flac, "
                    "mp3, ogg, ...) or folders that contain them")
  # stdout carries only the transcripts: progress printed while loading goes to stderr.
  with contextlib.redirect_stdout(sys.stderr):
    run = loading.load_run(args.workdir, args.checkpoint, args.average)
    config = ctc_decoding.apply_lm_flags(apply_ctc_weight(run.config, args.ctc_weight), args)
    config = apply_trim_silence(config, args.trim_silence_db)
    hypothesis = args.hypothesis or default_hypothesis(config)
    beam_size = args.beam_size if args.beam_size is not None else int(config.decode.beam_size)
    batch_size = (args.batch_size if args.batch_size is not None
                  else pipeline.global_batch_sizes(config.data, 1).eval)  # decodes on one device
    results = transcribe_files(paths, config, run.model, run.variables, run.tokenizer,
                               beam_size=beam_size, batch_size=batch_size,
                               hypothesis=hypothesis, workdir=args.workdir)
  failed = 0
  for result in results:
    if result.error is not None:
      failed += 1
      print(f"{result.path}: {result.error}" + (f" ({result.detail})" if result.detail else ""),
            file=sys.stderr)
      if args.json:
        print(format_result(result, True))
    else:
      print(format_result(result, args.json))
  if failed:
    print(f"{failed} of {len(results)} files failed", file=sys.stderr)
  return 1 if failed else 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
