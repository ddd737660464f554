"""CTC beam search over the words of a lexicon, scored by a word n-gram language model.

    search = LexiconSearch.from_arpa(tokenizer, "data/lm/words_3gram.arpa", lm_weight=1.5)
    text = search(log_probs)          # one utterance's CTC log posteriors [frames, vocab]

flashlight-text's LexiconDecoder (the wav2letter decoder torchaudio wraps) with its bundled KenLM:
a hypothesis extends a word only along the spelling trie of the lexicon, the space token closes a
word, and each finished word adds lm_weight * log P_LM(word | history) + word_score to the CTC
score; blank_penalty is subtracted from each frame's blank log posterior first. The lexicon is
the language model's vocabulary spelled with the tokenizer's characters, so every output word
is one the LM knows (words outside it cannot be produced: the unknown-word score is -inf).
Needs a character tokenizer whose alphabet has the space (echo_jax.data.tokenizer).
Scores are log10 in KenLM (so lm_weight multiplies log10 P, as in torchaudio's ctc_decoder).
"""

import contextlib
import copy
import dataclasses
import math
import os
import sys
from typing import List, Sequence

import numpy as np

from echo_jax.errors import UserError
from echo_jax.token_ids import NUM_SPECIAL, PAD_ID

WORD_SEPARATOR = " "


@dataclasses.dataclass(frozen=True)
class LexiconSearchOptions:
  lm_weight: float = 1.0  # multiplies the LM's log10 probability of each word
  word_score: float = 0.0  # added per word: > 0 favours more words, < 0 fewer
  beam_size: int = 50  # hypotheses kept per frame
  beam_threshold: float = 25.0  # hypotheses this far below the best are dropped
  # Subtracted from every frame's blank log posterior: > 0 makes the search emit characters where
  # the CTC head is unsure between a letter and blank (it deletes far more than it inserts).
  blank_penalty: float = 0.0


def arpa_unigrams(path: str) -> List[str]:
  """The words of an ARPA file's 1-gram section, <s>, </s> and <unk> left out."""
  words, inside = [], False
  with open(path, encoding="utf-8") as handle:
    for line in handle:
      line = line.strip()
      if line == "\\1-grams:":
        inside = True
      elif inside and line.startswith("\\"):
        break
      elif inside and line:
        word = line.split()[1]
        if word not in ("<s>", "</s>", "<unk>"):
          words.append(word)
  if not words:
    raise UserError(f"{path} has no 1-grams: is it an ARPA language model? Build one with "
                    "`python -m echo_jax.lm.build`")
  return words


class LexiconSearch:
  """A reusable decoder for one tokenizer, lexicon and language model."""

  def __init__(self, tokenizer, words: Sequence[str], lm_path: str,
               options: LexiconSearchOptions = LexiconSearchOptions()):
    from flashlight.lib.text import decoder as fl  # the only user of flashlight
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    if getattr(tokenizer, "kind", None) != "char":
      raise UserError("LM decoding spells words with single characters: the run needs "
                      f"data.tokenizer = 'char' (this one is {tokenizer!r})")
    (self._separator,) = tokenizer.encode(WORD_SEPARATOR)
    spellings = {w: _spelling(tokenizer, w) for w in words}
    spellable = [w for w in words if spellings[w] is not None]
    if not spellable:
      raise UserError(f"no word of {lm_path} can be spelled with {tokenizer!r}")
    self.options = options
    self.path = lm_path
    self._word_dict = Dictionary(list(spellable) + ["<unk>"])
    with _quiet_stderr():  # KenLM draws a loading bar on the process's stderr
      self._lm = KenLM(lm_path, self._word_dict)
    self._trie = fl.Trie(int(tokenizer.vocab_size), self._separator)
    start = self._lm.start(False)
    for word in spellable:
      index = self._word_dict.get_index(word)
      _, unigram = self._lm.score(start, index)
      self._trie.insert(spellings[word], index, unigram)
    self._trie.smear(fl.SmearingMode.MAX)
    self._vocab_size = int(tokenizer.vocab_size)
    self._decoder = self._make_decoder()
    self.num_words = len(spellable)

  def _make_decoder(self):
    from flashlight.lib.text import decoder as fl
    options = self.options
    flashlight_options = fl.LexiconDecoderOptions(
        beam_size=int(options.beam_size), beam_size_token=self._vocab_size,
        beam_threshold=float(options.beam_threshold), lm_weight=float(options.lm_weight),
        word_score=float(options.word_score), unk_score=-math.inf, sil_score=0.0,
        log_add=False, criterion_type=fl.CriterionType.CTC)
    return fl.LexiconDecoder(flashlight_options, self._trie, self._lm, self._separator, PAD_ID,
                             self._word_dict.get_index("<unk>"), [], False)

  @classmethod
  def from_arpa(cls, tokenizer, lm_path: str, **options) -> "LexiconSearch":
    return cls(tokenizer, arpa_unigrams(lm_path), lm_path, LexiconSearchOptions(**options))

  def with_options(self, **changes) -> "LexiconSearch":
    """The same lexicon and loaded LM searched with other options (no reloading: a weight grid
    builds the trie once)."""
    other = copy.copy(self)
    other.options = dataclasses.replace(self.options, **changes)
    other._decoder = other._make_decoder()
    return other

  def __call__(self, log_probs: np.ndarray) -> str:
    """The best word sequence for one utterance's CTC log posteriors [frames, vocab] (valid
    frames only; blank = the pad id)."""
    emissions = np.array(log_probs, dtype=np.float32, order="C")  # a copy: the penalty edits it
    if emissions.ndim != 2 or emissions.shape[0] == 0:
      return ""
    emissions[:, PAD_ID] -= float(self.options.blank_penalty)
    best = self._decoder.decode(emissions.ctypes.data, emissions.shape[0], emissions.shape[1])[0]
    return WORD_SEPARATOR.join(self._word_dict.get_entry(i) for i in best.words if i >= 0)


@contextlib.contextmanager
def _quiet_stderr():
  """Sends file descriptor 2 to /dev/null for the block (C++ writes bypass sys.stderr); errors
  still arrive as Python exceptions."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _spelling(tokenizer, word: str):
  """The word's token ids, one per character, or None when a character is not in the alphabet."""
  ids = tokenizer.encode(word)
  return ids if len(ids) == len(word) and min(ids, default=0) >= NUM_SPECIAL else None
