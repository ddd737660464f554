"""Tokenizers for transcripts: sentencepiece (unigram or BPE) or characters.

Ids 0-3 are fixed for both kinds: pad 0, bos 1, eos 2, unk 3. `encode` adds no BOS/EOS (the batch
builder does); `decode` drops pad/bos/eos wherever they are. For normalised text (see
`echo_jax.data.text`) `decode(encode(t)) == t` exactly: every character of the alphabet is forced
into the vocabulary, whatever the training texts hold.

    tok = Tokenizer.train(train_transcripts, "data/tfds/tokenizer", kind="sentencepiece",
                          vocab_size=512, model_type="unigram")   # writes tokenizer.model
    tok = Tokenizer.load("data/tfds/tokenizer.model")            # or tokenizer.json (char)
"""

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np

from echo_jax.data.text import ALPHABET
from echo_jax.errors import MissingInputError, UserError

from echo_jax.token_ids import BOS_ID, EOS_ID, NUM_SPECIAL, PAD_ID, UNK_ID
SPECIAL_IDS = frozenset({PAD_ID, BOS_ID, EOS_ID})  # dropped by decode
UNK_TEXT = "\u2047"  # what sentencepiece prints for unk; the char tokenizer does the same
KINDS = ("sentencepiece", "char")
MODEL_TYPES = ("unigram", "bpe")
CHAR_FORMAT = "echo_jax.char_tokenizer.v1"

log = logging.getLogger(__name__)


class Tokenizer:
  """A trained tokenizer; build with `Tokenizer.train` or `Tokenizer.load`."""

  def __init__(self, path: str, kind: str, sp=None, chars: Sequence[str] = ()):
    self.path = path
    self.kind = kind
    self._sp = sp
    self._chars = list(chars)
    self._char_to_id = {c: i + NUM_SPECIAL for i, c in enumerate(self._chars)}

  # ------------------------------------------------------------------------------- properties
  @property
  def vocab_size(self) -> int:
    if self._sp is not None:
      return int(self._sp.get_piece_size())
    return NUM_SPECIAL + len(self._chars)

  def __repr__(self) -> str:
    return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, path={self.path!r})"

  # ---------------------------------------------------------------------------- encode/decode
  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without BOS/EOS; unknown characters map to UNK_ID."""
    if not isinstance(text, str):
      raise TypeError(f"Tokenizer.encode expects str, got {type(text).__name__}")
    if self._sp is not None:
      return list(self._sp.encode(text))
    return [self._char_to_id.get(c, UNK_ID) for c in text]

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`; pad/bos/eos are dropped wherever they appear (decoding does not stop)."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise ValueError(f"token ids {bad[:5]} are outside [0, {self.vocab_size}) of {self.path}; "
                       "was the model trained with another tokenizer?")
    kept = [i for i in ids if i not in SPECIAL_IDS]
    if self._sp is not None:
      return self._sp.decode(kept)
    return "".join(UNK_TEXT if i == UNK_ID else self._chars[i - NUM_SPECIAL] for i in kept)

  # ------------------------------------------------------------------------------- training
  @classmethod
  def train(cls, texts: Iterable[str], out_path_prefix: str, kind: str = "sentencepiece",
            vocab_size: int = 512, model_type: str = "unigram") -> "Tokenizer":
    """Train on `texts` and save to `<prefix>.model` (sentencepiece) or `<prefix>.json` (char).

    Deterministic for the same texts in the same order. A sentencepiece vocabulary larger than
    the texts support is reduced to the largest size sentencepiece accepts (with a warning); one
    smaller than the alphabet plus the 4 special ids is raised to that minimum. `vocab_size` is
    ignored by the char kind (its vocabulary is the special ids plus the characters seen plus the
    normalised alphabet).
    """
    if kind not in KINDS:
      raise ValueError(f"tokenizer kind {kind!r} unknown; use one of {KINDS}")
    texts = [t for t in texts if t]
    if not texts:
      raise ValueError("Tokenizer.train got no non-empty training text")
    if any(not isinstance(t, str) for t in texts):
      raise TypeError("Tokenizer.train expects an iterable of str")
    out_dir = os.path.dirname(os.path.abspath(out_path_prefix))
    os.makedirs(out_dir, exist_ok=True)
    if kind == "char":
      return cls._train_char(texts, out_path_prefix)
    if model_type not in MODEL_TYPES:
      raise ValueError(f"sentencepiece model_type {model_type!r} unknown; use one of {MODEL_TYPES}")
    return cls._train_sentencepiece(texts, out_path_prefix, int(vocab_size), model_type)

  @classmethod
  def _train_char(cls, texts: list[str], prefix: str) -> "Tokenizer":
    chars = sorted(set(ALPHABET + " ").union(*map(set, texts)))
    path = prefix + ".json"
    _atomic_write_text(path, json.dumps({"format": CHAR_FORMAT, "chars": chars}, indent=1))
    return cls(path, "char", chars=chars)

  @classmethod
  def _train_sentencepiece(cls, texts: list[str], prefix: str, vocab_size: int,
                           model_type: str) -> "Tokenizer":
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    required = "".join(sorted(set(ALPHABET).union(*map(set, texts)) - {" "}))
    size = vocab_size
    for _ in range(3):
      try:
        # Train into a temp prefix, then rename: a reader never sees a half-written model.
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(prefix))) as tmp:
          tmp_prefix = os.path.join(tmp, "spm")
          spm.SentencePieceTrainer.train(
              sentence_iterator=iter(texts), model_prefix=tmp_prefix, vocab_size=size,
              model_type=model_type, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
              character_coverage=1.0, required_chars=required, normalization_rule_name="identity",
              add_dummy_prefix=True, remove_extra_whitespaces=True, num_threads=1,
              input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
          for ext in (".model", ".vocab"):
            os.replace(tmp_prefix + ext, prefix + ext)
        break
      except RuntimeError as e:
        too_high = re.search(
            r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", str(e))
        too_low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
        if too_high:
          new_size = int(too_high.group(1))
        elif too_low:
          new_size = int(too_low.group(1))
        else:
          raise
        log.warning("sentencepiece vocab_size %d does not fit %d training texts; using %d",
                    size, len(texts), new_size)
        size = new_size
    return cls.load(prefix + ".model")

  # -------------------------------------------------------------------------------- loading
  @classmethod
  def load(cls, path: str) -> "Tokenizer":
    """Load a `.model` (sentencepiece) or `.json` (char) file written by `train`."""
    if not os.path.isfile(path):
      raise MissingInputError(f"no tokenizer file {path}; train one with Tokenizer.train "
                              "(the data prepare step saves it next to the dataset)")
    if path.endswith(".json"):
      with open(path, encoding="utf-8") as f:
        spec = json.load(f)
      if spec.get("format") != CHAR_FORMAT:
        raise UserError(f"{path} is not a char tokenizer file (format {spec.get('format')!r})")
      return cls(path, "char", chars=spec["chars"])
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    sp = spm.SentencePieceProcessor(model_file=path)
    expected = {PAD_ID: sp.pad_id(), BOS_ID: sp.bos_id(), EOS_ID: sp.eos_id(), UNK_ID: sp.unk_id()}
    if any(k != v for k, v in expected.items()):
      raise UserError(f"{path} has special ids pad/bos/eos/unk = {list(expected.values())}; "
                       f"echo_jax needs {PAD_ID}/{BOS_ID}/{EOS_ID}/{UNK_ID}; retrain it with "
                       "Tokenizer.train")
    return cls(path, "sentencepiece", sp=sp)


def trim_tokens(row: Sequence[int]) -> list[int]:
  """Token ids up to (not including) the first EOS, without PAD/BOS."""
  out = []
  for token in np.asarray(row).tolist():
    if token == EOS_ID:
      break
    if token not in (PAD_ID, BOS_ID):
      out.append(int(token))
  return out


def ids_to_text(tokenizer, ids: Sequence[int]) -> str:
  """Text of a target or decoded id row: cut at the first EOS, special ids dropped."""
  return tokenizer.decode(trim_tokens(ids))


def expected_vocab_size(data_config) -> int:
  """The id count a tokenizer trained with these data settings has, before one exists: the special
  ids plus the normalised alphabet and space for the char kind, else data.vocab_size."""
  if data_config.tokenizer == "char":
    return NUM_SPECIAL + len(set(ALPHABET + " "))
  return int(data_config.vocab_size)


def resolve_vocab_size(config, tokenizer: Tokenizer) -> None:
  """Sets config.model.vocab_size to the tokenizer's id count; -1 (unset) takes it, any other
  value must already equal it (else the model and the tokenizer disagree: UserError)."""
  vocab = int(tokenizer.vocab_size)
  if int(config.model.vocab_size) not in (-1, vocab):
    raise UserError(
        f"config.model.vocab_size={config.model.vocab_size} does not match tokenizer "
        f"{tokenizer.path} ({vocab} ids); leave it at -1 to take the tokenizer's.")
  config.model.vocab_size = vocab


def _atomic_write_text(path: str, content: str) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(content)
  os.replace(tmp, path)
