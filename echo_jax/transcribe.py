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
import dataclasses
import json
import os
import sys
from typing import Dict, Iterable, List, Optional, Sequence

import ml_collections
import numpy as np

from echo_jax.data import pipeline  # the default batch: data.eval_batch_size resolved
from echo_jax.data.audio import AudioError, load_audio
from echo_jax.data.features import compute_features
from echo_jax.errors import UserError, run_cli
from echo_jax.inference import ctc_decoding
from echo_jax.inference import decoding
from echo_jax.inference import loading
from echo_jax.inference import longform

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


@dataclasses.dataclass
class FileResult:
  path: str
  text: Optional[str] = None
  duration_s: float = 0.0
  num_chunks: int = 0
  error: Optional[str] = None  # an AudioError reason: unreadable, empty, silent, non_finite
  detail: str = ""
  hypothesis: str = ""  # which decoder wrote text (BatchTranscriber.hypothesis)

  def to_json(self) -> Dict:
    if self.error is not None:
      return {"path": self.path, "error": self.error, "detail": self.detail}
    out = {"path": self.path, "text": self.text, "duration_s": round(self.duration_s, 3),
           "chunks": self.num_chunks}
    if self.hypothesis:
      out["hypothesis"] = self.hypothesis
    return out


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


def bucket_edge(num_frames: int, edges: Sequence[int]) -> int:
  """Smallest bucket edge holding num_frames frames."""
  for edge in sorted(edges):
    if num_frames <= edge:
      return int(edge)
  raise ValueError(f"{num_frames} frames exceed the largest bucket edge {max(edges)}; "
                   "chunking should have prevented this (check config.data.bucket_frames)")


def max_chunk_samples(config) -> int:
  """Longest chunk whose frame count (samples // hop + 1) fits the largest bucket edge."""
  data = config.data
  by_bucket = (max(data.bucket_frames) - 1) * data.hop_length
  by_config = int(round(config.decode.chunk_seconds * data.sample_rate))
  return int(min(by_bucket, by_config) if by_config > 0 else by_bucket)


def overlap_samples(config, chunk_samples: int) -> int:
  wanted = int(round(config.decode.chunk_overlap_seconds * config.data.sample_rate))
  return int(min(max(wanted, 0), chunk_samples // 2))


def features_of(wave: np.ndarray, config) -> Dict[str, np.ndarray]:
  """The training features of one waveform (echo_jax.data.features)."""
  features = compute_features(wave, config.data)
  out = {"mel": np.asarray(features["mel"], np.float32),
         "f0": np.asarray(features["f0"], np.float32)}
  if "waveform" in tuple(config.model.features):
    out["waveform"] = np.asarray(wave, np.float32)
  return out


def pad_batch(items: Sequence[Dict[str, np.ndarray]], edge: int, batch_size: int, config) -> Dict:
  """Pads items to `edge` frames and the batch to `batch_size` rows (repeating row 0, whose
  outputs are discarded, so every batch of a bucket has one shape)."""
  n_mels = config.data.n_mels
  hop = config.data.hop_length
  rows = list(items) + [items[0]] * (batch_size - len(items))
  batch = {
      "mel": np.zeros((batch_size, edge, n_mels), np.float32),
      "f0": np.zeros((batch_size, edge), np.float32),
      "num_frames": np.zeros((batch_size,), np.int32),
  }
  with_wave = "waveform" in rows[0]
  if with_wave:
    batch["waveform"] = np.zeros((batch_size, edge * hop), np.float32)
    batch["num_samples"] = np.zeros((batch_size,), np.int32)
  for i, item in enumerate(rows):
    frames = item["mel"].shape[0]
    batch["mel"][i, :frames] = item["mel"]
    batch["f0"][i, :frames] = item["f0"]
    batch["num_frames"][i] = frames
    if with_wave:
      samples = min(item["waveform"].shape[0], edge * hop)
      batch["waveform"][i, :samples] = item["waveform"][:samples]
      batch["num_samples"][i] = samples
  return batch


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
    edges = self.config.data.bucket_frames
    by_edge: Dict[int, List[int]] = {}
    for index, item in enumerate(items):
      by_edge.setdefault(bucket_edge(item["mel"].shape[0], edges), []).append(index)
    for edge, indices in sorted(by_edge.items()):
      for start in range(0, len(indices), self.batch_size):
        group = indices[start:start + self.batch_size]
        batch = pad_batch([items[i] for i in group], edge, self.batch_size, self.config)
        for i, text in zip(group, self._texts(batch, len(group))):
          texts[i] = text
    return texts


@dataclasses.dataclass
class PreparedFile:
  """One input file read and cut into chunk feature dicts (empty when result.error is set)."""
  result: FileResult
  items: List[Dict[str, np.ndarray]]
  bounds: List[tuple]


def prepare_file(path: str, config) -> PreparedFile:
  """Loads, checks and chunks one file; an unusable file sets result.error instead of raising."""
  sample_rate = int(config.data.sample_rate)
  result = FileResult(path=path)
  try:
    wave = load_audio(path, sample_rate)
  except AudioError as error:
    result.error, result.detail = error.reason, error.detail
    return PreparedFile(result, [], [])
  except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
    result.error, result.detail = "unreadable", f"{type(error).__name__}: {error}"
    return PreparedFile(result, [], [])
  chunk = max_chunk_samples(config)
  bounds = longform.chunk_bounds(len(wave), chunk, overlap_samples(config, chunk))
  result.duration_s = len(wave) / sample_rate
  result.num_chunks = len(bounds)
  items = [features_of(wave[start:end], config) for start, end in bounds]
  return PreparedFile(result, items, bounds)


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
  ctc_decoding.add_lm_arguments(parser)
  return parser.parse_args(argv)


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
