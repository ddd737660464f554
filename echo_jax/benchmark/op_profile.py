"""`--profile DIR`: where the train step's op time goes, from a jax.profiler trace joined with the
compiled HLO, plus the operator micro-benchmarks at the run's shape."""

import collections
import glob
import gzip
import json
import os
import re
from typing import Any, Dict

import jax

from echo_jax.benchmark import operators
from echo_jax.benchmark.train import train_setup
from echo_jax.perf import flops as flops_lib


def source_group(op_name: str) -> str:
  """A source op path without the jit wrapper and layer numbers (blocks_spectrogram_1 -> ...),
  the autodiff wrappers spelled forward / backward."""
  group = re.sub(r"_\d+/", "/", op_name.replace("jit(step_fn)/", ""))
  group = re.sub(r"transpose\(jvp\(EchoModel[\w.]*\)\)", "backward", group)
  group = re.sub(r"jvp\(EchoModel[\w.]*\)", "forward", group)
  return group or "(no source op)"


def profile_breakdown(trace_file: str, hlo_text: str, top: int = 25) -> Dict[str, Any]:
  """Op time of a jax.profiler trace of a compiled step, split into contractions (ops whose HLO
  holds a dot/convolution) and everything else, grouped by source op, with GFLOP/s per group, and
  by module (forward and backward together)."""
  instructions = flops_lib.hlo_instructions(hlo_text)
  with gzip.open(trace_file) as f:
    events = json.load(f)["traceEvents"]
  busy_us = collections.Counter()
  calls = collections.Counter()
  intervals = []
  for event in events:
    name = event.get("name")
    if "dur" in event and name in instructions:
      busy_us[name] += float(event["dur"])
      calls[name] += 1
      intervals.append((float(event["ts"]), float(event["ts"]) + float(event["dur"])))
  # Wall time with at least one op running vs the whole span: the rest is waiting for cores.
  intervals.sort()
  covered, (run_start, run_end) = 0.0, intervals[0] if intervals else (0.0, 0.0)
  for begin, end in intervals[1:]:
    if begin > run_end:
      covered += run_end - run_start
      run_start, run_end = begin, end
    else:
      run_end = max(run_end, end)
  covered += run_end - run_start
  span_us = intervals[-1][1] - intervals[0][0] if intervals else 0.0
  total_us = sum(busy_us.values())
  contraction_us = sum(t for n, t in busy_us.items() if instructions[n]["flops"] > 0)
  contraction_flops = sum(instructions[n]["flops"] * calls[n] for n in busy_us)
  groups_us, groups_flops = collections.Counter(), collections.Counter()
  for name, t in busy_us.items():
    group = source_group(instructions[name]["op_name"])
    groups_us[group] += t
    groups_flops[group] += instructions[name]["flops"] * calls[name]
  modules_us = collections.Counter()  # forward + backward per module: a group less its op
  for group, t in groups_us.items():
    modules_us[re.sub(r"^(forward|backward)/", "", group).rsplit("/", 1)[0]] += t
  return {
      "span_seconds": span_us / 1e6,
      "idle_share": 1.0 - covered / span_us if span_us else float("nan"),
      "op_seconds": total_us / 1e6,
      "contraction_seconds": contraction_us / 1e6,
      "contraction_share": contraction_us / total_us if total_us else float("nan"),
      "contraction_gflops": contraction_flops / max(contraction_us, 1e-9) / 1e3,
      "top": [{"source": g, "seconds": t / 1e6, "share": t / total_us,
               "gflops": groups_flops[g] / t / 1e3 if groups_flops[g] else 0.0}
              for g, t in groups_us.most_common(top)],
      "modules": [{"module": m, "seconds": t / 1e6, "share": t / total_us}
                  for m, t in modules_us.most_common(top)],
  }


def profile_train_step(config, frames: int, tokens: int, batch_size: int, trace_dir: str,
                       steps: int = 2) -> Dict[str, Any]:
  """Traces `steps` steady-state steps with jax.profiler and breaks the op time down."""
  _, state, step, batch = train_setup(config, frames, tokens, batch_size, False)
  compiled = step.lower(state, batch).compile()
  for _ in range(2):
    state = compiled(state, batch)[0]
  jax.block_until_ready(state)
  os.makedirs(trace_dir, exist_ok=True)
  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      out = compiled(state, batch)
      state = out[0]
      jax.block_until_ready(out)
  traces = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.trace.json.gz")),
                  key=os.path.getmtime)
  if not traces:
    raise RuntimeError(f"jax.profiler wrote no *.trace.json.gz under {trace_dir}")
  result = profile_breakdown(traces[-1], compiled.as_text())
  d_model, heads = int(config.model.d_model), int(config.model.num_heads)
  result.update({"trace": traces[-1], "steps": steps,
                 "depthwise_conv": operators.bench_depthwise(batch_size, frames, d_model),
                 "attention_core": operators.bench_attention_core(batch_size, frames, heads,
                                                                  d_model),
                 "rotary": operators.bench_rotary(batch_size, frames, heads, d_model)})
  if config.model.get("spectrogram_frontend") == "conv2d":
    result["patch_conv2d"] = operators.bench_patch_conv2d(
        batch_size, frames, int(config.model.n_mels), int(config.model.frontend_channels))
  return result
