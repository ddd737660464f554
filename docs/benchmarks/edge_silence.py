"""How a second of near silence around each utterance changes a run's transcripts, with and
without the edge trimming of `decode.trim_silence_db` (docs/accuracy.md, section 8).

  python docs/benchmarks/edge_silence.py --workdir runs/default --num 120 \
      --out docs/results/edge_silence.json

Writes copies of the first --num test utterances of the corpus manifest as they are and with
1 s of Gaussian noise at -55 dBFS before and after (seeded), transcribes both sets with
`python -m echo_jax.transcribe` at each --trim_silence_db, and scores them against the manifest's
transcripts with jiwer.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jiwer
import numpy as np
import soundfile


def write_copies(manifest: str, num: int, folder: str) -> dict:
  rows = [json.loads(line) for line in open(manifest, encoding="utf-8")]
  rows = [r for r in rows if r["split"] == "test"][:num]
  rng = np.random.default_rng(0)
  corpus = os.path.dirname(manifest)
  for name in ("as_is", "padded"):
    os.makedirs(os.path.join(folder, name), exist_ok=True)
  for row in rows:
    wave, rate = soundfile.read(os.path.join(corpus, row["path"]))
    quiet = lambda: rng.normal(0.0, 10 ** (-55 / 20), rate)
    soundfile.write(os.path.join(folder, "as_is", row["id"] + ".wav"), wave, rate)
    soundfile.write(os.path.join(folder, "padded", row["id"] + ".wav"),
                    np.concatenate([quiet(), wave, quiet()]), rate)
  return {row["id"]: row["text"] for row in rows}


def transcribe(workdir: str, folder: str, hypothesis: str, trim_db: float) -> dict:
  out = subprocess.run(
      [sys.executable, "-m", "echo_jax.transcribe", "--workdir", workdir, "--json",
       "--hypothesis", hypothesis, "--trim_silence_db", str(trim_db), folder],
      check=True, capture_output=True, text=True).stdout
  rows = [json.loads(line) for line in out.splitlines() if line.strip()]
  return {os.path.basename(r["path"])[:-len(".wav")]: r["text"] for r in rows}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--manifest", default="data/echo_speech_corpus/manifest.jsonl")
  parser.add_argument("--num", type=int, default=120)
  parser.add_argument("--trim_db", default="0,40,30")
  parser.add_argument("--hypotheses", default="ctc,attention")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  results = []
  with tempfile.TemporaryDirectory() as folder:
    references = write_copies(args.manifest, args.num, folder)
    keys = sorted(references)
    for trim_db in [float(t) for t in args.trim_db.split(",")]:
      for hypothesis in args.hypotheses.split(","):
        for audio in ("as_is", "padded"):
          texts = transcribe(args.workdir, os.path.join(folder, audio), hypothesis, trim_db)
          refs, hyps = [references[k] for k in keys], [texts[k] for k in keys]
          row = {"trim_silence_db": trim_db, "hypothesis": hypothesis, "audio": audio,
                 "wer": jiwer.wer(refs, hyps), "cer": jiwer.cer(refs, hyps)}
          results.append(row)
          print(f"trim {trim_db:>4g} dB  {hypothesis:<9} {audio:<6}  WER {100 * row['wer']:5.1f} %"
                f"  CER {100 * row['cer']:5.1f} %", flush=True)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as handle:
      json.dump({"workdir": args.workdir, "utterances": args.num, "padding": "1 s of N(0, "
                 "(10^(-55/20))^2) noise before and after, seed 0", "results": results}, handle,
                indent=1)
      handle.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
