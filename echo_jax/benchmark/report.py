"""Benchmark results as text: the targets met, the markdown tables of docs/performance.md, and the
ratio table new / old of two result JSONs (`--compare`)."""

import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from echo_jax.errors import MissingInputError, UserError


def load_result(path: str) -> Dict[str, Any]:
  """A result JSON written by `--out`."""
  if not os.path.isfile(path):
    raise MissingInputError(f"benchmark result {path!r} does not exist; write one with --out")
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise UserError(f"benchmark result {path!r} is not JSON ({e})") from None


def targets(result: Dict[str, Any]) -> Dict[str, Any]:
  """The issue's targets, met or not, from whatever sections ran."""
  out = {}
  if "train" in result:
    mfu = result["train"]["mfu_vs_probe"]  # each step against the peak probed just before it
    out["train_mfu_ge_0.7"] = {"value": mfu, "met": mfu >= 0.7}
  if "decode" in result:
    # The cache changes the decoder only; the encoder (identical in both) is timed separately.
    worst = min(r["decoder_speedup"] for r in result["decode"])
    out["decode_cache_speedup_ge_10"] = {
        "value": worst, "met": worst >= 10,
        "end_to_end_worst": min(r["speedup"] for r in result["decode"])}
  if "pipeline" in result and "delivered_over_consumed_audio" in result["pipeline"]:
    ratio = result["pipeline"]["delivered_over_consumed_audio"]
    out["pipeline_over_step_ge_5"] = {"value": ratio, "met": ratio >= 5}
  if "recompiles" in result:
    r = result["recompiles"]
    out["recompiles"] = {"value": r["compilations_after_warmup"],
                         "met": r["compilations_after_warmup"] == 0 and
                         r["compilations"] == r["buckets"]}
  return out


def result_name(result: Dict[str, Any]) -> str:
  """`config / shape` of a result (the config file's name without folder and .py)."""
  config = os.path.splitext(os.path.basename(result.get("config") or "?"))[0]
  return f"{config} / {result['shape']}" if result.get("shape") else config


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
  """Lines of one markdown table and a blank line after it; nothing when there are no rows."""
  if not rows:
    return []
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] +
          ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


# The dtypes section's products of a dense layer (benchmark.operators.MATMUL_ORIENTATIONS; this
# module stays free of jax so that `--table` and `--compare` start fast).
GEMM_PRODUCTS = ("forward", "input_gradient", "weight_gradient")


def _gemm_rows(result: Dict[str, Any]) -> List[List[str]]:
  """The dtypes section's GEMM rates, one row per product of a dense layer."""
  gemm = result["dtypes"]["gemm"]
  rows_, inner, cols = (gemm["shape"][k] for k in ("rows", "inner", "cols"))
  rows = []
  for orientation in GEMM_PRODUCTS:
    rate = gemm[orientation]
    rows.append([result_name(result), f"{rows_}x{inner} @ {inner}x{cols}",
                 orientation.replace("_", " "), f"{rate['float32']:.0f}",
                 f"{rate['bfloat16_accumulating_bfloat16']:.0f}",
                 f"{rate['bfloat16_accumulating_float32']:.0f}",
                 f"{rate['bfloat16_float32_accumulation_speedup']:.2f}"])
  return rows


def render_tables(results: Sequence[Dict[str, Any]]) -> str:
  """Markdown tables of benchmark JSON results (docs/performance.md)."""
  lines = []

  rows = []
  for r in results:
    if "train" not in r:
      continue
    t = r["train"]
    rows.append([result_name(r), f"{t['batch']}x{t['frames']} / {t['tokens']}",
                 f"{t['params'] / 1e6:.2f}M", f"{t['step']['median_s']:.3f}",
                 f"{t['frames_per_s']:.0f}", f"{t['tokens_per_s']:.0f}",
                 f"{t['analytic_flops'] / 1e9:.1f}", f"{t['xla_flops'] / t['analytic_flops']:.3f}",
                 f"{t['achieved_gflops']:.1f}", f"{r['peak_gflops']:.1f}",
                 f"{np.median(t['probe_gflops']):.1f}" if t.get("probe_gflops") else "-",
                 f"{t['mfu_vs_probe']:.1%}", f"{t['mfu']:.1%}", f"{t['compile_s']:.1f}",
                 f"{t['peak_rss_mib']:.0f}"])
  lines += markdown_table(
      ["config / shape", "batch x frames / tokens", "params", "step s", "frames/s", "tokens/s",
       "GFLOP/step (analytic)", "XLA / analytic", "achieved GFLOP/s", "run peak GFLOP/s",
       "probe GFLOP/s (median)", "MFU vs probe", "MFU vs run peak", "compile s",
       "peak RSS MiB"], rows)

  rows = []
  for r in results:
    if "diagnostics" in r:
      d = r["diagnostics"]
      rows.append([result_name(r), f"{d['plain_step_s']:.3f}", f"{d['diagnostics_step_s']:.3f}",
                   f"{d['ratio']:.3f}", f"{d['plain_compile_s']:.1f}",
                   f"{d['diagnostics_compile_s']:.1f}"])
  lines += markdown_table(["config / shape", "plain step s", "diagnostics step s", "ratio",
                           "plain compile s", "diagnostics compile s"], rows)

  rows = []
  for r in results:
    for d in r.get("decode", []):
      c, u = d["cached"], d["uncached"]
      rows.append([result_name(r), d["batch"], d["beam"], d["max_length"],
                   c["generated_tokens"], f"{c['encoder_seconds']:.3f}",
                   f"{c['decoder_seconds']:.3f}", f"{u['decoder_seconds']:.3f}",
                   f"{c['decoder_tokens_per_s']:.0f}", f"{u['decoder_tokens_per_s']:.0f}",
                   f"{d['decoder_speedup']:.1f}x", f"{c['real_time_factor']:.4f}",
                   f"{u['real_time_factor']:.4f}", f"{d['speedup']:.1f}x",
                   f"{d['analytic_speedup_bound']:.0f}x"])
  lines += markdown_table(
      ["config / shape", "batch", "beam", "max len", "tokens", "encoder s", "cached decoder s",
       "uncached decoder s", "cached decoder tok/s", "uncached decoder tok/s",
       "decoder speed-up", "cached RTF (all)", "uncached RTF (all)", "end-to-end speed-up",
       "FLOP ratio per step"], rows)

  rows = []
  for r in results:
    if "pipeline" in r:
      p = r["pipeline"]
      consumed = p.get("step_consumes", {})
      rows.append([result_name(r), f"{p['examples_per_s']:.0f}",
                   f"{p['audio_seconds_per_s']:.0f}",
                   f"{consumed.get('examples_per_s', float('nan')):.2f}",
                   f"{consumed.get('audio_seconds_per_s', float('nan')):.1f}",
                   f"{p.get('delivered_over_consumed_audio', float('nan')):.0f}x"])
  lines += markdown_table(["config", "delivered examples/s", "delivered audio s/s",
                           "step consumes examples/s", "step consumes audio s/s",
                           "delivered / consumed"], rows)

  rows = []
  for r in results:
    if "features" in r:
      f = r["features"]
      rows.append([result_name(r), f"{f['log_mel']['audio_s_per_cpu_s']:.0f}",
                   f"{f['f0']['audio_s_per_cpu_s']:.0f}",
                   f"{f['both']['audio_s_per_cpu_s']:.0f}",
                   f"{f['both']['audio_s_per_wall_s']:.0f}"])
  lines += markdown_table(["config", "log-mel audio s / CPU s", "F0 audio s / CPU s",
                           "both audio s / CPU s", "both audio s / wall s"], rows)

  rows = []
  for r in results:
    if "recompiles" in r:
      c = r["recompiles"]
      rows.append([result_name(r), c["steps"], c["buckets"], c["compilations"],
                   c["compilations_after_warmup"], c["jit_cache_size"]])
  lines += markdown_table(["config", "steps", "buckets", "compilations", "after warm-up",
                           "jit cache entries"], rows)

  dtype_results = [r for r in results if "dtypes" in r]
  rows = [[result_name(r), f"{t['batch']}x{t['frames']} / {t['tokens']}",
           f"{t['float32_step_s']:.3f}", f"{t['bfloat16_step_s']:.3f}",
           f"{t['bfloat16_speedup']:.3f}", len(t["pairs_s"])]
          for r in dtype_results for t in [r["dtypes"]["train"]]]
  lines += markdown_table(["config / shape", "batch x frames / tokens", "float32 step s",
                           "bfloat16 step s", "bfloat16 speed-up (median of pairs)", "pairs"],
                          rows)
  rows = [row for r in dtype_results for row in _gemm_rows(r)]
  lines += markdown_table(["config / shape", "GEMM", "product", "float32 GFLOP/s",
                           "bf16 (bf16 accumulation) GFLOP/s", "bf16 (f32 accumulation) GFLOP/s",
                           "bf16 f32-acc / float32"], rows)
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Two results side by side.

Row = Tuple[str, str, str]  # (benchmark, shape, metric)


def headline_numbers(result: Dict[str, Any]) -> Dict[Row, float]:
  """The numbers worth comparing between two runs, keyed by (benchmark, shape, metric)."""
  out: Dict[Row, float] = {}
  if "peak_gflops" in result:
    out[("peak", "matmul", "GFLOP/s")] = result["peak_gflops"]
  if "train" in result:
    t = result["train"]
    shape = f"{t['batch']}x{t['frames']} / {t['tokens']}"
    out[("train", shape, "step s")] = t["step"]["median_s"]
    out[("train", shape, "frames/s")] = t["frames_per_s"]
    out[("train", shape, "tokens/s")] = t["tokens_per_s"]
    out[("train", shape, "MFU vs probe")] = t["mfu_vs_probe"]
    out[("train", shape, "compile s")] = t["compile_s"]
    out[("train", shape, "peak RSS MiB")] = t["peak_rss_mib"]
    if t.get("xla_memory_mib"):
      out[("train", shape, "XLA temp MiB")] = t["xla_memory_mib"]["temp"]
  if "diagnostics" in result:
    d = result["diagnostics"]
    out[("diagnostics", "-", "plain step s")] = d["plain_step_s"]
    out[("diagnostics", "-", "diagnostics step s")] = d["diagnostics_step_s"]
  for d in result.get("decode", []):
    name = "greedy decode" if d["beam"] == 1 else f"beam {d['beam']} decode"
    shape = f"batch {d['batch']}, {d['frames']} frames, {d['max_length']} tokens"
    out[(name, shape, "cached s")] = d["cached"]["seconds"]
    out[(name, shape, "cached decoder s")] = d["cached"]["decoder_seconds"]
    out[(name, shape, "uncached s")] = d["uncached"]["seconds"]
  if "pipeline" in result:
    out[("pipeline", "-", "audio s/s")] = result["pipeline"]["audio_seconds_per_s"]
  if "features" in result:
    for name in ("log_mel", "f0", "both"):
      out[("features", name, "audio s / CPU s")] = result["features"][name]["audio_s_per_cpu_s"]
  if "dtypes" in result:
    t = result["dtypes"]["train"]
    shape = f"{t['batch']}x{t['frames']} / {t['tokens']}"
    out[("train float32 vs bfloat16", shape, "float32 step s")] = t["float32_step_s"]
    out[("train float32 vs bfloat16", shape, "bfloat16 step s")] = t["bfloat16_step_s"]
    for orientation in GEMM_PRODUCTS:
      for dtype_name, rate in result["dtypes"]["gemm"][orientation].items():
        if not dtype_name.endswith("speedup"):
          out[("matmul " + orientation.replace("_", " "), dtype_name, "GFLOP/s")] = rate
  if "recompiles" in result:
    r = result["recompiles"]
    out[("recompiles", f"{r['steps']} steps", "compilations")] = r["compilations"]
  return out


def compare(old: Dict[str, Any], new: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Rows of new / old for every headline number either result has (rows matched by benchmark,
  shape and metric; a number only one side has gets None on the other and no ratio)."""
  old_numbers, new_numbers = headline_numbers(old), headline_numbers(new)
  keys = list(old_numbers) + [k for k in new_numbers if k not in old_numbers]
  rows = []
  for key in keys:
    before, after = old_numbers.get(key), new_numbers.get(key)
    ratio = None
    if before is not None and after is not None and before != 0:
      ratio = float(after) / float(before)
    rows.append({"benchmark": key[0], "shape": key[1], "metric": key[2], "old": before,
                 "new": after, "new_over_old": ratio})
  return rows


def _number(value: Optional[float]) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "-"
  return f"{value:.4g}"


def render_comparison(old: Dict[str, Any], new: Dict[str, Any]) -> str:
  """The markdown ratio table new / old (for seconds below 1 is faster, for rates above 1)."""
  rows = [[r["benchmark"], r["shape"], r["metric"], _number(r["old"]), _number(r["new"]),
           "-" if r["new_over_old"] is None else f"{r['new_over_old']:.3f}"]
          for r in compare(old, new)]
  title = f"new: {result_name(new)} ({new.get('machine', {}).get('date_utc', '?')}); " \
          f"old: {result_name(old)} ({old.get('machine', {}).get('date_utc', '?')})"
  return "\n".join([title, ""] + markdown_table(
      ["benchmark", "shape", "metric", "old", "new", "new / old"], rows))
