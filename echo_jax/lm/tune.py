"""Choose the LM search's weights on a held-out split: one pass of the encoder, then a grid.

  python -m echo_jax.lm.tune --workdir runs/default --split validation [--lm auto] \
      [--lm_weights=0.5,1,1.5,2] [--word_scores=-2,-1,0,1] [--blank_penalties=0,0.5,1] \
      [--max_examples 300]

The run's CTC log posteriors of the split are computed once (as `evaluate` does, padded bucket
batches under jit); then every (lm_weight, word_score, blank_penalty) triple is decoded with the
lexicon search and scored. Prints one line per triple and the best by WER (ties: lower CER),
and writes the grid to <workdir>/eval/lm_tune_<split>_step<STEP>.json. Tune on validation,
report on test.
"""

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from typing import Dict, List, Sequence

import numpy as np

from echo_jax.errors import UserError, run_cli


def _floats(text: str, flag: str) -> List[float]:
  try:
    values = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise UserError(f"{flag}={text!r}: give comma-separated numbers, e.g. 0.5,1,1.5") from None
  if not values:
    raise UserError(f"{flag} is empty: give comma-separated numbers, e.g. 0.5,1,1.5")
  return values


def split_log_probs(run, split: str, max_examples: int, batch_size: int):
  """(references, [valid frames, vocab] log posteriors) of a split's single-chunk examples."""
  from echo_jax.inference import ctc_decoding
  from echo_jax.inference import examples as examples_lib
  examples = [ex for ex in examples_lib.split_examples(run.config, split, max_examples)
              if len(ex.items) == 1]
  if not examples:
    raise UserError(f"split {split!r} has no example to tune on")
  ctc = ctc_decoding.CtcDecoder(run.model, run.variables, run.tokenizer)
  references, log_probs = [], []
  for group, batch in examples_lib.bucket_batches(examples, run.config, batch_size):
    _, posteriors, valid = ctc.decode_batch(batch)
    posteriors, valid = np.asarray(posteriors), np.asarray(valid)
    for row, ex in enumerate(group):
      references.append(ex.reference)
      log_probs.append(posteriors[valid[row], row])
  return references, log_probs


def grid(tokenizer, lm_path: str, references: Sequence[str], log_probs: Sequence[np.ndarray],
         lm_weights: Sequence[float], word_scores: Sequence[float], beam_size: int,
         blank_penalties: Sequence[float] = (0.0,),
         log=lambda line: print(line, flush=True)) -> List[Dict]:
  from echo_jax.inference import ctc_lexicon
  from echo_jax.inference.scoring import error_rates
  rows = []
  loaded = ctc_lexicon.LexiconSearch.from_arpa(tokenizer, lm_path, beam_size=beam_size)
  for weight, score, penalty in itertools.product(lm_weights, word_scores, blank_penalties):
    search = loaded.with_options(lm_weight=weight, word_score=score, blank_penalty=penalty)
    start = time.perf_counter()
    rates = error_rates(references, [search(p) for p in log_probs])
    rows.append({"lm_weight": weight, "word_score": score, "blank_penalty": penalty,
                 "wer": rates["wer"], "cer": rates["cer"],
                 "seconds": round(time.perf_counter() - start, 2)})
    log(f"lm_weight {weight:g}  word_score {score:g}  blank_penalty {penalty:g}  "
        f"WER {100 * rates['wer']:.1f} %  CER {100 * rates['cer']:.1f} %")
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m echo_jax.lm.tune",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="training run directory (CTC head)")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--checkpoint", type=int, default=None)
  parser.add_argument("--average", type=int, default=1,
                      help="the mean parameters of the K newest checkpoints (as evaluate)")
  parser.add_argument("--lm", default="auto", help="ARPA file, or 'auto' (the corpus LM)")
  parser.add_argument("--lm_weights", default="0.5,1,1.5,2")
  parser.add_argument("--word_scores", default="-2,-1,0,1")
  parser.add_argument("--blank_penalties", default="0",
                      help="values subtracted from each frame's blank log posterior, e.g. 0,0.5,1")
  parser.add_argument("--lm_beam_size", type=int, default=50)
  parser.add_argument("--max_examples", type=int, default=300, help="-1: the whole split")
  parser.add_argument("--batch_size", type=int, default=8)
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  weights = _floats(args.lm_weights, "--lm_weights")
  scores = _floats(args.word_scores, "--word_scores")
  penalties = _floats(args.blank_penalties, "--blank_penalties")
  if args.lm_beam_size < 1:
    raise UserError(f"--lm_beam_size={args.lm_beam_size} is invalid: use 1 or more")

  from absl import logging as absl_logging

  from echo_jax.inference import loading
  from echo_jax.lm import build as lm_build
  absl_logging.set_verbosity(absl_logging.ERROR)
  with contextlib.redirect_stdout(sys.stderr):  # stdout: the grid lines only
    run = loading.load_run(args.workdir, args.checkpoint, args.average)
    if not run.config.model.get("ctc_head", False):
      raise UserError(f"{args.workdir}: the model has no CTC head; the LM search decodes it")
    lm_path = lm_build.resolve(run.config, args.lm, args.workdir)
    references, log_probs = split_log_probs(run, args.split, args.max_examples, args.batch_size)
  rows = grid(run.tokenizer, lm_path, references, log_probs, weights, scores, args.lm_beam_size,
              penalties)
  best = min(rows, key=lambda r: (r["wer"], r["cer"]))
  print(f"best: --lm_weight {best['lm_weight']:g} --lm_word_score {best['word_score']:g} "
        f"--lm_blank_penalty {best['blank_penalty']:g} (WER {100 * best['wer']:.1f} %, "
        f"CER {100 * best['cer']:.1f} % on {len(references)} "
        f"{args.split} utterances)")
  out = os.path.join(args.workdir, "eval", f"lm_tune_{args.split}_step{run.step}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".tmp", "w", encoding="utf-8") as handle:
    json.dump({"lm": lm_path, "split": args.split, "examples": len(references),
               "checkpoint_step": run.step, "averaged_steps": list(run.averaged_steps),
               "beam_size": args.lm_beam_size, "grid": rows,
               "best": best}, handle, indent=2)
  os.replace(out + ".tmp", out)
  return 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
