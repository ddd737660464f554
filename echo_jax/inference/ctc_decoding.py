"""The encoder-only hypotheses of a model with a CTC head, shared by `evaluate` and `transcribe`.

  decoder = CtcDecoder(model, variables, tokenizer, lexicon_search(config, tokenizer))
  best_path_texts, lm_texts = decoder.texts(batch, num_rows)

One jitted pass per padded batch gives the CTC best path (repeats merged, blanks dropped) and the
log posteriors the word-LM lexicon search (echo_jax.inference.ctc_lexicon) reads, so the head runs
once for both. Also the --lm* command-line flags both commands take, and the config's
decode.lm_path / lm_weight / lm_word_score / lm_beam_size / lm_blank_penalty turned into a search.
"""

import argparse
import time
from typing import Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np

from echo_jax.errors import UserError
from echo_jax.inference import ctc_lexicon
from echo_jax.inference import ctc_prefix
from echo_jax.inference import decoding


def lexicon_search(config, tokenizer, workdir: str = "") -> Optional[ctc_lexicon.LexiconSearch]:
  """The word-LM CTC search decode.lm_path asks for ("": none; "auto": the corpus LM, built on
  first use, or the copy kept in the run's workdir), with decode.lm_weight / lm_word_score /
  lm_beam_size."""
  from echo_jax.lm import build as lm_build  # builds the corpus LM on first use
  lm_path = str(config.decode.get("lm_path", ""))
  if lm_path and not config.model.get("ctc_head", False):  # before building an LM for nothing
    raise UserError("--lm: LM decoding searches the CTC head's output and this run's model has "
                    "none (trained without model.ctc_head=True); use --lm none")
  path = lm_build.resolve(config, lm_path, workdir)
  if not path:
    return None
  defaults = ctc_lexicon.LexiconSearchOptions()
  return ctc_lexicon.LexiconSearch.from_arpa(
      tokenizer, path, lm_weight=float(config.decode.get("lm_weight", defaults.lm_weight)),
      word_score=float(config.decode.get("lm_word_score", defaults.word_score)),
      beam_size=int(config.decode.get("lm_beam_size", defaults.beam_size)),
      blank_penalty=float(config.decode.get("lm_blank_penalty", defaults.blank_penalty)))


class CtcDecoder:
  """CTC best path (and, with a LexiconSearch, the word-LM search) of padded batches; one compile
  per batch shape."""

  def __init__(self, model, variables, tokenizer,
               search: Optional[ctc_lexicon.LexiconSearch] = None):
    self.variables, self.tokenizer, self.search = variables, tokenizer, search
    self.search_seconds = 0.0  # time spent in the LM search so far (host side)

    def best_path_and_log_probs(variables, batch):
      encoded = model.apply(variables, batch, method=decoding._encode_method(model))
      ctc = model.apply(variables, encoded, method=decoding._ctc_method(model))  # the head once
      log_probs = ctc_prefix.frame_log_probs(ctc.logits, ctc.valid)  # [T, B, V]
      return decoding.ctc_greedy_tokens(ctc.logits, ctc.valid), log_probs, ctc.valid
    self._decode = jax.jit(best_path_and_log_probs)

  def decode_batch(self, batch: Dict):
    """(best-path tokens [B, T], log posteriors [T, B, V], valid frames [B, T]) of a batch."""
    return self._decode(self.variables, batch)

  def texts(self, batch: Dict, num_rows: int) -> Tuple[List[str], Optional[List[str]]]:
    """(best-path texts, LM-search texts or None without a search) of the first num_rows rows."""
    tokens, log_probs, valid = self.decode_batch(batch)
    best_path = decoding.decode_batch_text(np.asarray(tokens)[:num_rows], self.tokenizer)
    if self.search is None:
      return best_path, None
    log_probs, valid = np.asarray(log_probs), np.asarray(valid)
    start = time.perf_counter()
    with_lm = [self.search(log_probs[valid[row], row]) for row in range(num_rows)]
    self.search_seconds += time.perf_counter() - start
    return best_path, with_lm


def add_lm_arguments(parser: argparse.ArgumentParser) -> None:
  """The --lm, --lm_weight, --lm_word_score and --lm_beam_size flags (None: the run's value)."""
  parser.add_argument("--lm", default=None,
                      help="word language model for the CTC lexicon search (needs a CTC head and "
                           "character targets): an ARPA file, 'auto' (the corpus LM of `python -m "
                           "echo_jax.lm.build`, built when missing) or 'none' "
                           "(default: config.decode.lm_path)")
  parser.add_argument("--lm_weight", type=float, default=None,
                      help="weight of the LM's log10 probability (default: config.decode.lm_weight)")
  parser.add_argument("--lm_word_score", type=float, default=None,
                      help="score added per word (default: config.decode.lm_word_score)")
  parser.add_argument("--lm_beam_size", type=int, default=None,
                      help="LM search beam (default: config.decode.lm_beam_size)")
  parser.add_argument("--lm_blank_penalty", type=float, default=None,
                      help="subtracted from each frame's CTC blank log posterior in the LM search "
                           "(default: config.decode.lm_blank_penalty)")


def apply_lm_flags(config, args) -> ml_collections.ConfigDict:
  """config with the --lm* flags given set in decode (the others keep the run's values)."""
  given = {"lm_path": args.lm, "lm_weight": args.lm_weight, "lm_word_score": args.lm_word_score,
           "lm_beam_size": args.lm_beam_size, "lm_blank_penalty": args.lm_blank_penalty}
  given = {k: v for k, v in given.items() if v is not None}
  if not given:
    return config
  if given.get("lm_beam_size", 1) < 1:
    raise UserError(f"--lm_beam_size={args.lm_beam_size} is invalid: use 1 or more")
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in given.items():
    config.decode[key] = "" if key == "lm_path" and value.lower() == "none" else value
  return config
