"""The trainer's own train step: throughput, FLOPs and MFU, its cost with diagnostics on, and
float32 vs bfloat16 compute."""

import copy
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import numpy as np

from echo_jax.benchmark import peak as peak_lib
from echo_jax.benchmark.measure import (compiled_memory_mib, device_memory, peak_rss_mib,
                                        summary, time_calls)
from echo_jax.benchmark.shapes import full_batch
from echo_jax.models.echo import expected_param_count
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.perf import flops as flops_lib
from echo_jax.perf.host_memory import release_freed_host_memory
from echo_jax.training import setup as setup_lib
from echo_jax.training import steps as steps_lib


def train_state_and_step(config, with_diagnostics: bool = False):
  """(mesh, model, initial train state, jitted train step) as the trainer builds them."""
  mesh = sharding_lib.make_mesh()
  run = setup_lib.create_training_setup(config, mesh)
  step = steps_lib.make_train_step(run.model, run.tx, run.schedule, mesh, run.shardings,
                                   with_diagnostics=with_diagnostics, train_config=config.train,
                                   data_config=config.data)
  return mesh, run.model, run.state, step


def train_setup(config, frames: int, tokens: int, batch_size: int, with_diagnostics: bool):
  """(model, state, step, global batch of full-length rows), everything on the devices."""
  mesh, model, state, step = train_state_and_step(config, with_diagnostics)
  host = full_batch(config.model, batch_size, frames, tokens)
  device_part, _ = sharding_lib.split_host_batch(host)
  batch = sharding_lib.global_batch(device_part, mesh)
  jax.block_until_ready(state)
  return model, state, step, batch


def _stepper(compiled, state, batch) -> Callable[[], None]:
  """one_step(): runs the compiled step on the latest state and waits for it."""
  holder = [state]

  def one_step():
    out = compiled(holder[0], batch)
    holder[0] = out[0]
    jax.block_until_ready(out)
  return one_step


def time_train_step(config, frames: int, tokens: int, batch_size: int, steps: int,
                    with_diagnostics: bool = False, warmup: int = 2,
                    probe: Optional[peak_lib.PeakProbe] = None) -> Dict[str, Any]:
  """Compiles the trainer's step ahead of time, runs `warmup` steps, then times `steps` steps
  (each right after a matmul-peak probe when `probe` is given)."""
  _, state, step, batch = train_setup(config, frames, tokens, batch_size, with_diagnostics)
  start = time.perf_counter()
  lowered = step.lower(state, batch)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  cost = flops_lib.xla_cost(compiled)
  memory = compiled_memory_mib(compiled)
  release_freed_host_memory()  # as the trainer does between compiling and running (compiled_step)
  hlo_dot_conv = flops_lib.dot_conv_flops_from_hlo(compiled.as_text())
  one_step = _stepper(compiled, state, batch)
  first = time_calls(one_step, 1)[0]
  if warmup > 1:
    time_calls(one_step, warmup - 1)
  times, probes = [], []
  for _ in range(max(int(steps), 1)):
    if probe is not None:
      probes.append(probe.gflops())
    times += time_calls(one_step, 1)
  return {"probe_gflops": probes, "step_times_s": times, "lower_s": lower_s,
          "compile_s": compile_s, "first_step_s": first,
          "xla_flops": float(cost.get("flops", float("nan"))),
          "xla_bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
          "xla_transcendentals": float(cost.get("transcendentals", float("nan"))),
          "hlo_dot_conv_flops": float(hlo_dot_conv), "step": summary(times),
          "xla_memory_mib": memory}


def throughput(config, frames: int, tokens: int, batch_size: int, step_s: float,
               analytic_flops: float, xla_flops: float, peak_gflops: float) -> Dict[str, float]:
  """Rates of one step of `step_s` seconds over a full batch, and its MFU against the peak."""
  hop, sr = int(config.data.hop_length), int(config.data.sample_rate)
  return {
      "frames_per_s": batch_size * frames / step_s,
      "tokens_per_s": batch_size * tokens / step_s,
      "examples_per_s": batch_size / step_s,
      "audio_seconds_per_s": batch_size * frames * hop / sr / step_s,
      "achieved_gflops": analytic_flops / step_s / 1e9,
      "mfu": peak_lib.mfu(analytic_flops, step_s, peak_gflops),
      "mfu_xla_flops": peak_lib.mfu(xla_flops, step_s, peak_gflops),
  }


def bench_train(config, frames: int, tokens: int, batch_size: int, steps: int,
                peak_gflops: float, warmup: int = 2,
                peak_size: int = peak_lib.PEAK_SIZE) -> Dict[str, Any]:
  """The train step timed next to the matmul peak: rates, FLOPs (analytic, XLA's, the HLO's
  contractions), MFU, memory and the rates of the model's own GEMM shapes."""
  result = time_train_step(config, frames, tokens, batch_size, steps, warmup=warmup,
                           probe=peak_lib.PeakProbe(peak_size, dtype=str(config.model.dtype)))
  step_s = result["step"]["median_s"]
  analytic = flops_lib.train_step_flops(config.model, batch_size, frames, tokens)
  result["mfu_vs_probe"] = peak_lib.mfu_vs_probe(analytic, result["step_times_s"],
                                                 result["probe_gflops"])
  forward = flops_lib.forward_flops(config.model, batch_size, frames, tokens)
  result.update({
      "frames": frames, "tokens": tokens, "batch": batch_size,
      "params": int(expected_param_count(config.model)),
      **throughput(config, frames, tokens, batch_size, step_s, analytic, result["xla_flops"],
                   peak_gflops),
      "analytic_flops": float(analytic),
      "analytic_forward_flops": {k: float(v) for k, v in forward.items()},
      "xla_over_analytic": result["xla_flops"] / analytic,
      "hlo_dot_conv_over_analytic": result["hlo_dot_conv_flops"] / analytic,
      "peak_rss_mib": peak_rss_mib(),
      "device_memory_mib": device_memory(),
  })
  # What the model's own GEMM shapes reach on this machine (bounds the MFU from above).
  s_rows = batch_size * frames // int(config.model.spectrogram_downsample)
  d = int(config.model.d_model)
  result["gemm_gflops"] = {
      f"{s_rows}x{d}x{d}": peak_lib.matmul_rate(s_rows, d, d),
      f"{s_rows}x{d}x{4 * d}": peak_lib.matmul_rate(s_rows, d, 4 * d),
      f"{s_rows}x{4 * d}x{d}": peak_lib.matmul_rate(s_rows, 4 * d, d),
  }
  return result


def _compiled_stepper(config, frames: int, tokens: int, batch_size: int,
                      with_diagnostics: bool) -> Tuple[Callable[[], None], float, float]:
  """(one_step() that runs and waits for one step, compile seconds, XLA FLOPs)."""
  _, state, step, batch = train_setup(config, frames, tokens, batch_size, with_diagnostics)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  return _stepper(compiled, state, batch), compile_s, flops_lib.xla_flops(compiled)


def alternate_steps(first: Callable[[], None], second: Callable[[], None], steps: int,
                    warmup: int = 2) -> List[Tuple[float, float]]:
  """(first s, second s) of `steps` pairs of calls, alternating which runs first so that an order
  effect cancels and machine load hits both alike."""
  for _ in range(warmup):
    first()
    second()
  pairs = []
  for i in range(max(int(steps), 1)):
    if i % 2:
      second_s = time_calls(second, 1)[0]
      first_s = time_calls(first, 1)[0]
    else:
      first_s = time_calls(first, 1)[0]
      second_s = time_calls(second, 1)[0]
    pairs.append((first_s, second_s))
  return pairs


def bench_diagnostics(config, frames: int, tokens: int, batch_size: int, steps: int,
                      warmup: int = 2) -> Dict[str, Any]:
  """The train step with the diagnostics outputs vs the plain step (what runs when diagnostics
  are off), compiled side by side and timed alternately, step for step."""
  plain, plain_compile_s, plain_flops = _compiled_stepper(config, frames, tokens, batch_size, False)
  diag, diag_compile_s, diag_flops = _compiled_stepper(config, frames, tokens, batch_size, True)
  pairs = alternate_steps(plain, diag, steps, warmup)
  plain_times, diag_times = zip(*pairs)
  return {"plain_step_s": float(np.median(plain_times)),
          "diagnostics_step_s": float(np.median(diag_times)),
          "ratio": float(np.median([d / p for p, d in pairs])),
          "pairs_s": [list(p) for p in pairs],
          "diagnostics_compile_s": diag_compile_s, "plain_compile_s": plain_compile_s,
          "diagnostics_xla_flops": diag_flops, "plain_xla_flops": plain_flops}


def bench_train_dtypes(config, frames: int, tokens: int, batch_size: int, steps: int,
                       warmup: int = 2) -> Dict[str, Any]:
  """The train step with float32 compute vs bfloat16 compute (params float32 in both), compiled
  side by side and timed alternately, step for step."""
  steppers = {}
  for dtype in ("float32", "bfloat16"):
    variant = copy.deepcopy(config)
    variant.model.dtype = dtype
    steppers[dtype] = _compiled_stepper(variant, frames, tokens, batch_size, False)[0]
  pairs = alternate_steps(steppers["float32"], steppers["bfloat16"], steps, warmup)
  f32_times, bf16_times = zip(*pairs)
  return {"float32_step_s": float(np.median(f32_times)),
          "bfloat16_step_s": float(np.median(bf16_times)),
          "bfloat16_speedup": float(np.median([f / b for f, b in pairs])),
          "pairs_s": [list(p) for p in pairs], "batch": batch_size, "frames": frames,
          "tokens": tokens}
