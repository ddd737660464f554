"""Build the word language model a run's CTC lexicon search decodes with.

  python -m echo_jax.lm.build --config configs/default.py [--order 3] [--text FILE ...] [--out F]
      [--nocorpus_sources]

Text: the training transcripts of the config's data, plus, for the synthetic corpus, every
sentence of its sources (fortunes, WordNet examples) and any --text files (one sentence per line),
all normalised as transcripts are scored; every sentence that is a validation or test transcript
is removed, so the LM has seen no held-out sentence. Writes an ARPA file (default
<data.root>/lm/words_<order>gram.arpa) and next to it <file>.json: the sources, sentence and word
counts, how many held-out sentences were removed, and the perplexity of the validation
transcripts. `decode.lm_path = "auto"` makes `evaluate` build this file on first use.
"""

import json
import os
import shutil
import sys
import time
from typing import Dict, Iterable, List, Sequence, Tuple

from echo_jax.data import text as text_lib
from echo_jax.errors import MissingInputError, UserError, run_cli
from echo_jax.lm import ngram

AUTO = "auto"  # decode.lm_path: the corpus LM at default_path(config), built when missing
DEFAULT_ORDER = 3


def default_path(config, order: int = DEFAULT_ORDER) -> str:
  from echo_jax.data import prepare
  return os.path.join(prepare.data_root(config), "lm", f"words_{order}gram.arpa")


def manifest_transcripts(config) -> Dict[str, List[str]]:
  """{split: normalised transcripts} of the manifest the config's data was prepared from."""
  from echo_jax.inference import examples as examples_lib  # the manifest readers
  manifest = examples_lib.source_manifest(config)
  if manifest is None or not os.path.exists(manifest):
    raise MissingInputError(
        f"no transcript manifest for data.dataset={config.data.dataset!r} (looked for "
        f"{manifest}); prepare the data first (`python -m echo_jax.data.prepare --config ...`) "
        "or build from text files with --text")
  out: Dict[str, List[str]] = {}
  for row in examples_lib.read_manifest(manifest):
    out.setdefault(row["split"], []).append(text_lib.normalise_transcript(row["text"]))
  return out


def read_text_file(path: str) -> List[str]:
  if not os.path.isfile(path):
    raise MissingInputError(f"--text {path}: no such file (one sentence per line)")
  with open(path, encoding="utf-8") as handle:
    return [text_lib.normalise_transcript(line) for line in handle]


def lm_sentences(config, text_files: Sequence[str] = (),
                 corpus_sources: bool = True) -> Tuple[List[str], Dict]:
  """The sentences to estimate from (held-out transcripts removed) and where they came from;
  corpus_sources=False leaves out the synthetic corpus's sentence sources."""
  by_split = manifest_transcripts(config)
  held_out = set(by_split.get("validation", [])) | set(by_split.get("test", []))
  sources: Dict[str, List[str]] = {"train transcripts": by_split.get("train", [])}
  if corpus_sources and str(config.data.dataset) == "echo_speech":
    from echo_jax.data import corpus_text
    for sentence in corpus_text.load_sentences():
      sources.setdefault(f"corpus source {sentence.source}", []).append(
          text_lib.normalise_transcript(sentence.raw))
  for path in text_files:
    sources[f"text file {os.path.abspath(path)}"] = read_text_file(path)
  kept, seen, counts = [], set(), {}
  removed = 0
  for name, sentences in sources.items():
    added = 0
    for sentence in sentences:
      if not sentence or sentence in seen:
        continue
      seen.add(sentence)
      if sentence in held_out:
        removed += 1
        continue
      kept.append(sentence)
      added += 1
    counts[name] = added
  if not kept:
    raise UserError("no training text for the language model: the training split has no "
                    "transcripts; add sentences with --text FILE")
  return kept, {"distinct_sentences_by_source": counts, "held_out_sentences_removed": removed,
                "validation_sentences": len(set(by_split.get("validation", [])))}


def perplexity(model: ngram.NgramModel, sentences: Iterable[str]) -> Dict:
  """Per-word perplexity (</s> counted, unknown words scored as <unk>) and the unknown rate."""
  vocabulary = set(model.vocabulary)
  log10_total = words = unknown = 0
  for sentence in sentences:
    history = [ngram.BOS]
    for word in sentence.split() + [ngram.EOS]:
      unknown += word not in vocabulary
      log10_total += model.log10_prob(history, word)
      words += 1
      history.append(word)
  if not words:
    return {"perplexity": None, "unknown_word_rate": None, "words": 0}
  return {"perplexity": 10 ** (-log10_total / words), "unknown_word_rate": unknown / words,
          "words": words}


def build(config, order: int = DEFAULT_ORDER, text_files: Sequence[str] = (), out: str = "",
          corpus_sources: bool = True,
          log=lambda message: print(message, file=sys.stderr)) -> str:
  """Estimates and writes the LM (and its .json record); returns the ARPA path."""
  out = os.path.abspath(out or default_path(config, order))
  start = time.perf_counter()
  sentences, record = lm_sentences(config, text_files, corpus_sources)
  log(f"language model: {len(sentences)} sentences ({record['held_out_sentences_removed']} "
      "validation/test sentences removed); estimating ...")
  model = ngram.estimate((s.split() for s in sentences), order)
  validation = manifest_transcripts(config).get("validation", [])
  record.update(order=order, sentences=len(sentences),
                words=sum(len(s.split()) for s in sentences),
                ngrams=[len(p) for p in model.probabilities],
                smoothing="interpolated modified Kneser-Ney (echo_jax.lm.ngram)",
                validation=perplexity(model, validation))
  log(f"language model: {record['ngrams']} n-grams; validation perplexity "
      f"{record['validation']['perplexity']:.0f}; writing {out}")
  ngram.write_arpa(model, out)
  record["seconds"] = round(time.perf_counter() - start, 1)
  tmp = out + ".json.tmp"
  with open(tmp, "w", encoding="utf-8") as handle:
    json.dump(record, handle, indent=2, sort_keys=True)
  os.replace(tmp, out + ".json")
  return out


def kept_path(config, workdir: str) -> str:
  """Where a run keeps its copy of the corpus LM: <workdir>/lm/<the default file name>."""
  return os.path.join(workdir, "lm", os.path.basename(default_path(config)))


def keep_copy(path: str, kept: str) -> None:
  """Copies the ARPA file (and its .json record) to `kept`, each through a temporary file, so a
  run's folder holds the LM it was decoded with and transcribes where the corpus is absent."""
  os.makedirs(os.path.dirname(kept), exist_ok=True)
  for source, target in ((path, kept), (path + ".json", kept + ".json")):
    if os.path.exists(source):
      shutil.copyfile(source, target + ".tmp")
      os.replace(target + ".tmp", target)


def resolve(config, lm_path: str, workdir: str = "") -> str:
  """An ARPA path from decode.lm_path: "" -> "" (no LM), "auto" -> the corpus LM, else the file,
  which must exist.

  "auto" takes <data.root>/lm/words_3gram.arpa; where that is missing, the copy a run keeps in
  <workdir>/lm/ (workdir given), else it builds the corpus LM. With a workdir, the LM found or
  built is copied there once, so the run's folder can be moved to a machine without the corpus."""
  if not lm_path:
    return ""
  if lm_path != AUTO:
    if not os.path.isfile(lm_path):
      raise MissingInputError(f"language model {lm_path} not found: build one with `python -m "
                              "echo_jax.lm.build --config CONFIG --out FILE`, or use --lm auto")
    return os.path.abspath(lm_path)
  path = default_path(config)
  kept = kept_path(config, workdir) if workdir else ""
  if not os.path.exists(path):
    if kept and os.path.exists(kept):
      return kept
    try:
      path = build(config)
    except MissingInputError as error:
      raise MissingInputError(
          f"decode.lm_path='auto': the corpus word LM {path} is missing and cannot be built here "
          f"({error}); pass --lm FILE.arpa (a run decoded by `evaluate` keeps its copy in "
          "<workdir>/lm/), or --lm none for no LM") from None
  if kept and not os.path.exists(kept):
    keep_copy(path, kept)
  return path


HELP = __doc__


def main(argv=None) -> int:
  from echo_jax.config import command_line

  def define(values):
    from absl import flags
    flags.DEFINE_integer("order", DEFAULT_ORDER, "n-gram order", flag_values=values)
    flags.DEFINE_multi_string("text", [], "extra text file, one sentence per line",
                              flag_values=values)
    flags.DEFINE_string("out", "", "ARPA file (default <data.root>/lm/words_<order>gram.arpa)",
                        flag_values=values)
    flags.DEFINE_bool("corpus_sources", True, "synthetic corpus: also learn from its sentence "
                      "sources (fortunes, WordNet), held-out sentences removed",
                      flag_values=values)

  args = command_line.parse(sys.argv[1:] if argv is None else argv, define,
                            "python -m echo_jax.lm.build", HELP)
  if args.config is None:
    raise UserError("--config FILE is required, e.g. --config configs/default.py")
  if args.args:
    raise UserError(f"unexpected arguments {args.args}")
  print(build(args.config, int(args.order), list(args.text), str(args.out),
              bool(args.corpus_sources)))
  return 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
