"""Benchmarks: matmul peak, train throughput/MFU, decode speed, input pipeline, features, compiles.

  python -m echo_jax.benchmark --config configs/default.py [--config.model.dtype=bfloat16] \
      [--shape small|seed] [--what peak,train,diagnostics,decode,pipeline,features,recompiles,dtypes] \
      [--profile DIR] --out bench.json
  python -m echo_jax.benchmark --table A.json B.json ...   # markdown tables of result JSONs
  python -m echo_jax.benchmark --compare OLD.json NEW.json # ratio table new / old
  python -m echo_jax.benchmark --config ... --compare OLD.json  # run, then the ratio table

Every rate is measured in this run next to the float32 matmul peak of this machine (a 2048^2
jnp matmul, best of several, measured at the start and again at the end; the better one is the
peak), so ratios stay meaningful on a shared, noisy machine. See docs/performance.md.

Shapes: `--shape small` (d 256, 4 heads, 2+2 layers, 1000 frames, 64 tokens, batch 4) and
`--shape seed` (d 512, 4 heads, 4+4 layers, 1500 frames, 128 tokens, batch 2), both at vocab 4000,
128 mels and no spectrogram downsampling, replace the config's model sizes and batch; without
`--shape` the train batch is the config's longest bucket (edge and global batch size) at
data.max_target_length tokens.
"""

import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Dict

import jax
from absl import flags

from echo_jax.benchmark import operators, report
from echo_jax.benchmark.data import bench_features, bench_pipeline
from echo_jax.benchmark.decode import bench_decode
from echo_jax.benchmark.measure import peak_rss_mib
from echo_jax.benchmark.op_profile import profile_train_step
from echo_jax.benchmark.peak import PEAK_SIZE, measure_peak
from echo_jax.benchmark.recompiles import bench_recompiles
from echo_jax.benchmark.shapes import SHAPES, apply_shape
from echo_jax.benchmark.train import bench_diagnostics, bench_train, bench_train_dtypes
from echo_jax.config import command_line
from echo_jax.errors import UserError, run_cli
from echo_jax.models.config import model_settings

SECTIONS = ("peak", "train", "diagnostics", "decode", "pipeline", "features", "recompiles",
            "dtypes")
DEFAULT_SECTIONS = ("peak", "train", "decode", "pipeline", "features", "recompiles")
PROG = "python -m echo_jax.benchmark"


def define_flags(values: flags.FlagValues) -> None:
  """The command's flags (besides --config), on `values`."""
  def string(name, default, text):
    flags.DEFINE_string(name, default, text, flag_values=values)

  def integer(name, default, text):
    flags.DEFINE_integer(name, default, text, flag_values=values)

  flags.DEFINE_bool("table", False, "print markdown tables of the result JSON files given as "
                    "arguments and exit", flag_values=values)
  string("compare", "", "OLD.json: print the ratio table new / old against the result JSON given "
         "as argument, or against this run's result when --config is given")
  string("what", ",".join(DEFAULT_SECTIONS), f"comma-separated sections of {','.join(SECTIONS)}")
  flags.DEFINE_enum("shape", None, sorted(SHAPES), "fixed benchmark shape replacing the config's "
                    "model sizes and batch", flag_values=values)
  string("out", "", "JSON file for the results")
  flags.DEFINE_float("card_peak_tflops", 0.0, "the accelerator's data-sheet peak for the compute "
                     "dtype (e.g. 989 for H100 SXM bfloat16 dense); adds train.mfu_vs_card",
                     flag_values=values)
  integer("peak_size", PEAK_SIZE, "matrix size of the float32 matmul peak and its probes")
  integer("steps", 5, "timed train steps (after warm-up)")
  integer("warmup", 2, "untimed train steps after the compile (the first one included)")
  string("decode_batches", "1,8", "batch sizes at which greedy decoding is timed")
  integer("beam", 4, "beam size of the beam-search rows")
  string("beam_batches", "1,8", "batch sizes at which beam search is timed too")
  integer("decode_length", 0, "decode max_length (default: config.decode.max_length / shape "
          "tokens)")
  integer("decode_repeats", 2, "timed calls per decoding row (median)")
  integer("pipeline_batches", 40, "batches the input pipeline is timed over")
  integer("pipeline_utterances", 96, "utterances of the synthetic pipeline dataset")
  integer("recompile_steps", 50, "train steps of the recompiles section")
  string("profile", "", "trace two train steps with jax.profiler into this folder and report "
         "where the op time goes")
  string("workdir", "", "where the synthetic pipeline data is kept")


def machine() -> Dict[str, Any]:
  info = {"platform": platform.platform(), "python": sys.version.split()[0],
          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
          "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
          "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    info["cpu_model"] = names[0] if names else ""
  except OSError:
    pass
  return info


def run(args: command_line.CommandLine) -> Dict[str, Any]:
  """Runs the sections `args.what` names on `args.config` and returns (and saves) the result."""
  what = [w.strip() for w in args.what.split(",") if w.strip()]
  unknown = sorted(set(what) - set(SECTIONS))
  if unknown:
    raise UserError(f"--what has unknown sections {unknown}; choose from {list(SECTIONS)}")
  base_config = args.config
  config, frames, tokens, batch = apply_shape(base_config, args.shape)
  result: Dict[str, Any] = {"config": args.config_path, "shape": args.shape, "what": what,
                            "machine": machine(), "command": " ".join(sys.argv)}

  def save():
    if args.out:
      with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1, default=float)
      os.replace(args.out + ".tmp", args.out)

  def section(name, fn):
    start = time.perf_counter()
    print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
    result[name] = fn()
    result.setdefault("section_seconds", {})[name] = time.perf_counter() - start
    save()
    print(f"[benchmark] {name}: {json.dumps(result[name], default=float)[:600]}",
          file=sys.stderr, flush=True)

  peak_dtype = str(config.model.dtype)  # bfloat16 runs are compared with the bfloat16 peak
  section("peak_start", lambda: measure_peak(args.peak_size, dtype=peak_dtype))
  peak = lambda: max(result["peak_start"]["gflops"], result.get("peak_end", {}).get("gflops", 0))
  if "train" in what:
    section("train", lambda: bench_train(config, frames, tokens, batch, args.steps, peak(),
                                         args.warmup, args.peak_size))
  if args.profile:
    section("profile", lambda: profile_train_step(config, frames, tokens, batch, args.profile))
  if "diagnostics" in what:
    section("diagnostics", lambda: bench_diagnostics(config, frames, tokens, batch, args.steps,
                                                     args.warmup))
  if "decode" in what:
    batch_sizes = [int(b) for b in args.decode_batches.split(",")]
    length = int(args.decode_length or config.decode.max_length)
    beam_batches = [int(b) for b in args.beam_batches.split(",") if b.strip()]
    section("decode", lambda: bench_decode(config, frames, batch_sizes, args.beam, length,
                                           args.decode_repeats, beam_batches))
  if "dtypes" in what:  # the train step, and the MLP's first layer at one row per frame
    settings = model_settings(config.model)
    section("dtypes", lambda: {
        "train": bench_train_dtypes(config, frames, tokens, batch, args.steps, args.warmup),
        "gemm": operators.bench_matmul_dtypes(batch * frames, settings.d_model,
                                              settings.mlp_dim)})
  if "features" in what:
    section("features", lambda: bench_features(config))
  if "pipeline" in what:
    workdir = args.workdir or os.path.join(tempfile.gettempdir(), "echo_jax_benchmark")
    section("pipeline", lambda: bench_pipeline(base_config, workdir, args.pipeline_batches,
                                               args.pipeline_utterances, result.get("train")))
  if "recompiles" in what:
    bucketed = apply_shape(base_config, None)[0]  # the config's own buckets
    section("recompiles", lambda: bench_recompiles(bucketed, args.recompile_steps))
  section("peak_end", lambda: measure_peak(args.peak_size, dtype=peak_dtype))
  result["peak_gflops"] = max([peak()] + list(result.get("train", {}).get("probe_gflops", [])))
  if "train" in what:  # the final MFU uses the better of the two peak measurements
    t = result["train"]
    t["mfu"] = t["achieved_gflops"] / result["peak_gflops"]
    t["mfu_xla_flops"] = t["xla_flops"] / t["step"]["median_s"] / 1e9 / result["peak_gflops"]
  if "train" in what and args.card_peak_tflops > 0:  # accelerators: against the data-sheet peak
    result["train"]["mfu_vs_card"] = (result["train"]["achieved_gflops"] /
                                      (args.card_peak_tflops * 1e3))
  result["peak_rss_mib"] = peak_rss_mib()
  result["targets"] = report.targets(result)
  save()
  return result


def main(argv=None) -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  args = command_line.parse(sys.argv[1:] if argv is None else argv, define_flags, PROG, __doc__)
  if args.table:
    print(report.render_tables([report.load_result(path) for path in args.args]))
    return
  if args.compare and args.args:
    if len(args.args) != 1 or args.config is not None:
      raise UserError("--compare OLD.json takes one NEW.json argument, or --config to run the "
                      "benchmark and compare its result")
    print(report.render_comparison(report.load_result(args.compare),
                                   report.load_result(args.args[0])))
    return
  if args.args:
    raise UserError(f"unexpected arguments {args.args}; result files go with --table or --compare")
  if args.config is None:
    raise UserError("--config is required (e.g. --config configs/default.py)")
  old = report.load_result(args.compare) if args.compare else None  # fail before the run
  result = run(args)
  print(json.dumps({"peak_gflops": result["peak_gflops"], "targets": result["targets"]},
                   indent=1, default=float))
  if old is not None:
    print(report.render_comparison(old, result))


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))
