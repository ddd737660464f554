"""Command line: the seed's report from a run's dumps, and the pictures.

  python -m echo_jax.diagnostics report RUN [--steps A:B] [--json]
  python -m echo_jax.diagnostics plot rotary --out DIR
  python -m echo_jax.diagnostics plot features --wav FILE [--config CFG] --out DIR
  python -m echo_jax.diagnostics plot attention --wav FILE [--config CFG] [--workdir RUN] --out DIR
  python -m echo_jax.diagnostics plot curves RUN [--out FILE.png]   (default RUN/curves.png)
  python -m echo_jax.diagnostics plot compare RUN RUN... --out FILE.png [--keys eval/ctc_cer,...]
      [--x_axis step|fraction]
  python -m echo_jax.diagnostics plot theta RUN [--steps A:B] [--config CFG] --out DIR
  python -m echo_jax.diagnostics words PREDICTIONS.jsonl --train MANIFEST.jsonl|TEXT.txt
      [--hypothesis ctc_hypothesis] [--json]   (word errors by the word's training count)
"""

import argparse
import json
import math
import os
import sys

import numpy as np

from echo_jax.config.files import load_config_file
from echo_jax.data.audio import load_audio
from echo_jax.data.features import compute_features
from echo_jax.diagnostics import report
from echo_jax.errors import UserError, run_cli
from echo_jax.inference import word_frequency
from echo_jax.training import diagnostics_dump as dump


DEFAULT_CONFIG = "configs/default.py"


def _load_config(path: str):
  """A config file's get_config() (the same files echo_jax.train takes)."""
  return load_config_file(path)


def _run_config(args) -> str:
  """--config, else the run's resolved config.py, else configs/default.py."""
  if args.config:
    return args.config
  resolved = os.path.join(args.run or "", "config.py")
  return resolved if args.run and os.path.exists(resolved) else DEFAULT_CONFIG


def _finite_or_null(obj):
  """Strict JSON: NaN/inf (a ratio with a zero denominator) become null."""
  if isinstance(obj, dict):
    return {k: _finite_or_null(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite_or_null(v) for v in obj]
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def _report(args) -> int:
  dumps = dump.load_run(args.run, args.steps)
  summary = report.summarize(dumps)
  if args.json:
    json.dump(_finite_or_null(summary), sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
  else:
    sys.stdout.write(report.format_report(summary, title=f"Diagnostics of {args.run}"))
  return 0


def _words(args) -> int:
  pairs = word_frequency.read_predictions(args.predictions, args.hypothesis)
  counts = word_frequency.word_counts(word_frequency.read_training_transcripts(args.train))
  result = word_frequency.errors_by_frequency(pairs, counts)
  result.update(predictions=args.predictions, hypothesis=args.hypothesis, train=args.train)
  if args.json:
    json.dump(_finite_or_null(result), sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
  else:
    sys.stdout.write(f"{args.hypothesis} of {args.predictions}, words by their count in {args.train}\n")
    sys.stdout.write(word_frequency.format_table(result))
  return 0


def _out_path(args) -> str:
  """--out as a .png path or a folder for <what>.png; curves default to RUN/curves.png."""
  if args.out is None:
    if args.what != "curves" or not args.run:
      raise UserError(f"plot {args.what} needs --out DIR (or a .png path)")
    folder = os.path.dirname(args.run) if args.run.endswith(".jsonl") else args.run
    return os.path.join(folder, "curves.png")
  return args.out if args.out.endswith(".png") else os.path.join(args.out, f"{args.what}.png")


def _metrics_path(run: str) -> str:
  """RUN as given to `plot curves` / `plot compare`: a workdir, or its metrics.jsonl itself."""
  return run if run.endswith(".jsonl") else os.path.join(run, "metrics.jsonl")


def _compared_metrics(runs) -> dict:
  """{name: metrics.jsonl path} of `plot compare`'s runs; a run is named by its folder."""
  if len(runs) < 2:
    raise UserError("plot compare needs two or more RUNs (workdirs with metrics.jsonl)")
  paths = [_metrics_path(r) for r in runs]
  for path in paths:
    if not os.path.exists(path):
      raise UserError(f"plot compare: {path} does not exist; give training workdirs")
  names = [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
  if len(set(names)) < len(names):  # same folder names under different parents
    names = [os.path.dirname(p) for p in paths]
  return dict(zip(names, paths))


def _plot(args) -> int:
  # imports matplotlib (and jax): `report` and --help start without them
  from echo_jax.diagnostics import plots
  out = _out_path(args)
  if args.what == "rotary":
    path = plots.plot_rotary(out, theta_modes=args.theta_modes, f0_values=args.f0,
                             base_theta=args.theta, positions=args.positions,
                             head_dim=args.head_dim)
  elif args.what == "features":
    path = _plot_features(args, out)
  elif args.what == "compare":
    path = plots.plot_compare(out, _compared_metrics(args.runs),
                              [k for k in (args.keys or "").split(",") if k], args.x_axis)
  elif args.what == "curves":
    if not args.run:
      raise UserError("plot curves needs RUN (a workdir with metrics.jsonl)")
    path = plots.plot_curves(out, _metrics_path(args.run))
  elif args.what == "theta":
    path = _plot_theta(args, out)
  elif args.what == "attention":
    path = _plot_attention(args, out)
  else:
    raise UserError(f"unknown picture {args.what!r}")
  print(path)
  return 0


def _read_wave(args, sample_rate):
  if not args.wav:
    raise UserError(f"plot {args.what} needs --wav FILE (a speech recording)")
  return load_audio(args.wav, sample_rate)


def _plot_features(args, out):
  # imports matplotlib (and jax): `report` and --help start without them
  from echo_jax.diagnostics import plots
  config = _load_config(args.config or DEFAULT_CONFIG)
  wave = _read_wave(args, int(config.data.sample_rate))
  feats = compute_features(wave, config.data)
  return plots.plot_features(out, feats["mel"], feats["f0"], config.data,
                             title=os.path.basename(args.wav) + ":")


def _plot_theta(args, out):
  # imports matplotlib (and jax): `report` and --help start without them
  from echo_jax.diagnostics import plots
  if not args.run:
    raise UserError("plot theta needs RUN (a workdir with diagnostics dumps)")
  dumps = dump.load_run(args.run, args.steps)
  f0s, thetas = [], []
  for step, flat in sorted(dumps.items()):
    theta_keys = sorted(k for k in flat if k.startswith("rotary_theta/"))
    if "f0_mean_voiced" not in flat or not theta_keys:
      raise UserError(f"step {step} of {args.run} has no f0_mean_voiced/rotary_theta; the model "
                       "must sow rotary_theta and the train step must pass the batch to "
                       "diagnostics_from")
    theta = flat[theta_keys[0]]
    theta = theta.reshape(theta.shape[0], -1).mean(axis=1)  # per_frame mode: mean over frames
    f0s.append(flat["f0_mean_voiced"])
    thetas.append(theta)
  model_cfg = _load_config(_run_config(args)).model
  return plots.plot_theta(out, np.concatenate(f0s), np.concatenate(thetas),
                          str(model_cfg.theta_mode), float(model_cfg.theta),
                          title=f"rotary θ per utterance vs mean F0 ({len(dumps)} dumps)")


def _plot_attention(args, out):
  # imports matplotlib, jax, flax and orbax: `report` and --help start without them
  from echo_jax.diagnostics import attention_maps, plots
  config = _load_config(args.config or DEFAULT_CONFIG)
  maps = attention_maps.from_wave(config, _read_wave(args, int(config.data.sample_rate)),
                                  workdir=args.workdir, text=args.text, layers=args.layers,
                                  heads=args.heads)
  return plots.plot_attention(out, maps, title=os.path.basename(args.wav))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m echo_jax.diagnostics", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  rep = sub.add_parser("report", help="the seed's diagnostic report from a run's dumps")
  rep.add_argument("run", help="workdir (or its diagnostics/ folder)")
  rep.add_argument("--steps", default=None, help="A:B, inclusive; either end may be empty")
  rep.add_argument("--json", action="store_true", help="every number as JSON")
  rep.set_defaults(func=_report)

  words = sub.add_parser("words", help="word errors by how often the word is in training text")
  words.add_argument("predictions", help="predictions.jsonl written by echo_jax.evaluate")
  words.add_argument("--train", required=True,
                     help="training transcripts: the corpus manifest (.jsonl, its train rows) or "
                     "a text file with one transcript a line")
  words.add_argument("--hypothesis", default="hypothesis",
                     help="which hypothesis: hypothesis (attention), ctc_hypothesis, "
                     "ctc_lm_hypothesis")
  words.add_argument("--json", action="store_true", help="the numbers as JSON")
  words.set_defaults(func=_words)

  plot = sub.add_parser("plot", help="write a PNG")
  plot.add_argument("what",
                    choices=["rotary", "features", "attention", "curves", "compare", "theta"])
  plot.add_argument("run", nargs="*", default=[],
                    help="workdir (curves: its metrics.jsonl, or that file; theta: its dumps); "
                    "compare: two or more")
  plot.add_argument("--keys", default=None,
                    help="compare: comma list of metrics (default: every eval loss and error rate)")
  plot.add_argument("--x_axis", choices=["step", "fraction"], default="step",
                    help="compare: steps, or the fraction of each run's steps")
  plot.add_argument("--out", default=None,
                    help="output folder (or a .png path); curves default to RUN/curves.png")
  plot.add_argument("--config", default=None,
                    help="config file (default: RUN/config.py for theta, else configs/default.py)")
  plot.add_argument("--steps", default=None)
  plot.add_argument("--wav", default=None)
  plot.add_argument("--text", default=None, help="transcript for teacher-forced decoder maps")
  plot.add_argument("--workdir", default=None, help="run whose latest checkpoint to load")
  plot.add_argument("--layers", default=None,
                    help="comma list of attention modules (dotted names); default: first/last")
  plot.add_argument("--heads", default=None, help="comma list of heads (default: all)")
  plot.add_argument("--theta_modes", nargs="+", default=["fixed", "seed", "clamped", "mel"])
  plot.add_argument("--f0", nargs="+", type=float, default=[0.0, 100.0, 150.0, 220.0, 300.0])
  plot.add_argument("--theta", type=float, default=10000.0)
  plot.add_argument("--positions", type=int, default=32)
  plot.add_argument("--head_dim", type=int, default=128)
  plot.set_defaults(func=_plot)
  args = parser.parse_args(argv)
  if args.command == "plot":
    args.runs = list(args.run)
    if args.what != "compare" and len(args.runs) > 1:
      parser.error(f"plot {args.what} takes one RUN, got {len(args.runs)}")
    args.run = args.runs[0] if args.runs else None
  return args.func(args)


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
