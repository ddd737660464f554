"""Two checkouts timed call for call: the same train step or decode call, alternating old and new.

A shared VM's speed drifts by 2x within minutes, so two benchmark runs made one after the other can
disagree by more than the change being measured. Here one worker process per checkout compiles
everything first; then the driver asks them in turn for one timed call each (the order flips every
round), so both sides see the same machine at the same minute. Reported: the median seconds of
each side and the median of the per-round ratios old / new (> 1: the new checkout is faster).

  python docs/benchmarks/pingpong.py --old /tmp/echo_64602cf --new . --shape small \
      --cases train,encoder:4,greedy:1,beam:1,greedy:4,beam:4,greedy:8,beam:8 --rounds 9 \
      --out docs/benchmarks/vs_64602cf/pingpong_small.json

Cases: `train` (the trainer's step at the shape's batch), `encoder:B` (the jitted encoder alone),
`greedy:B` and `beam:B` (cached decoding, encoder included, beam --beam; random weights with EOS
suppressed, so every row decodes to the shape's token count). Each worker imports the echo_jax of
its own checkout; the helpers it needs exist under both layouts (the package `echo_jax.benchmark`
and the single module it replaced), so any commit since 64602cf can be either side.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time


def _api():
  """The checkout's helpers, under the package layout or the older single-module one."""
  try:
    from echo_jax.benchmark.decode import never_eos
    from echo_jax.benchmark.shapes import apply_shape, full_batch
    from echo_jax.benchmark.train import _compiled_stepper
    from echo_jax.inference import decoding
    from echo_jax.models.building import build_model
  except ImportError:
    from echo_jax import decoding
    from echo_jax.benchmark import _compiled_stepper, _never_eos as never_eos
    from echo_jax.benchmark import apply_shape, full_batch
    from echo_jax.trainer import build_model
  return dict(never_eos=never_eos, apply_shape=apply_shape, full_batch=full_batch,
              stepper=_compiled_stepper, decoding=decoding, build_model=build_model)


def _load_config(path: str):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def worker(config_path: str, shape: str, beam: int):
  """Answers one JSON request per stdin line with one timed call; prints nothing else there."""
  reply = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # whatever the libraries print goes to stderr
  import jax
  api = _api()
  config, frames, tokens, train_batch = api["apply_shape"](_load_config(config_path), shape)
  model = api["build_model"](config)
  init = api["full_batch"](config.model, 1, frames, tokens)
  variables = api["never_eos"]({"params": model.init(jax.random.PRNGKey(0), init)["params"]})
  decoding = api["decoding"]
  calls = {}

  def prepare(case: str):
    kind, _, size = case.partition(":")
    if kind == "train":
      step, _, _ = api["stepper"](config, frames, tokens, train_batch, False)
      return step
    batch = api["full_batch"](config.model, int(size), frames, tokens, seed=1)
    batch = {k: v for k, v in batch.items()
             if k not in ("decoder_input_tokens", "decoder_target_tokens", "example_index")}
    if kind == "encoder":
      fn = jax.jit(lambda v, b: decoding.encode_batch(model, v, b))
    else:
      fn = decoding.make_decode_fn(model, tokens, beam if kind == "beam" else 1, 0.6, True).fn
    return lambda: jax.block_until_ready(fn(variables, batch))

  for line in sys.stdin:
    case = json.loads(line)["case"]
    if case not in calls:
      calls[case] = prepare(case)
      for _ in range(3):  # compile, then warm up (first calls after a compile run slower)
        calls[case]()
    start = time.perf_counter()
    calls[case]()
    reply.write(json.dumps({"case": case, "seconds": time.perf_counter() - start}) + "\n")


def _median(values):
  values = sorted(values)
  n = len(values)
  return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--old", default="", help="the older checkout")
  parser.add_argument("--new", default=".", help="the newer checkout")
  parser.add_argument("--old_config", default="configs/default.py",
                      help="relative to --old (64602cf's default is the reference architecture)")
  parser.add_argument("--new_config", default="configs/base.py", help="relative to --new")
  parser.add_argument("--shape", default="small", choices=("small", "seed"))
  parser.add_argument("--cases", default="train,greedy:1,beam:1")
  parser.add_argument("--beam", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--out", default="")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--config", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.config, args.shape, args.beam)
  if not args.old:
    parser.error("--old: a checkout of the commit to compare with")

  script = os.path.abspath(__file__)
  sides = {}
  for name, root, config in (("old", args.old, args.old_config), ("new", args.new, args.new_config)):
    root = os.path.abspath(root)
    env = dict(os.environ, PYTHONPATH=root)
    sides[name] = subprocess.Popen(
        [sys.executable, script, "--worker", "--config", config, "--shape", args.shape,
         "--beam", str(args.beam)], cwd=root, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, bufsize=1)

  def ask(name, case):
    sides[name].stdin.write(json.dumps({"case": case}) + "\n")
    line = sides[name].stdout.readline()
    if not line:
      raise RuntimeError(f"the {name} worker stopped (see its messages above)")
    return json.loads(line)["seconds"]

  rows = []
  for case in args.cases.split(","):
    seconds = {"old": [], "new": []}
    for round_ in range(args.rounds):
      order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
      for name in order:
        seconds[name].append(ask(name, case))
    ratios = [o / n for o, n in zip(seconds["old"], seconds["new"])]
    rows.append({"case": case, "old_s": seconds["old"], "new_s": seconds["new"],
                 "old_median_s": _median(seconds["old"]), "new_median_s": _median(seconds["new"]),
                 "speedup_median_of_rounds": _median(ratios)})
    r = rows[-1]
    print(f"{case:10s} old {r['old_median_s']:.4f} s  new {r['new_median_s']:.4f} s  "
          f"old/new {r['speedup_median_of_rounds']:.2f}x", flush=True)
  for proc in sides.values():
    proc.stdin.close()
    proc.wait()
  result = {"args": vars(args), "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "rows": rows}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  print("\n| case | old median s | new median s | old / new (median of rounds) |")
  print("|---|---|---|---|")
  for r in rows:
    print(f"| {r['case']} | {r['old_median_s']:.4f} | {r['new_median_s']:.4f} | "
          f"{r['speedup_median_of_rounds']:.2f}x |")


if __name__ == "__main__":
  main()
