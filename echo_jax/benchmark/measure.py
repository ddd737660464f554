"""Timing, memory and compile counting shared by every benchmark."""

import resource
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np
from jax._src import monitoring  # the only place an event listener can be unregistered

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def peak_rss_mib() -> float:
  """Peak resident set size of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_memory() -> Optional[Dict[str, float]]:
  """Peak device memory on accelerators (None on CPU, where peak RSS is the measure)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return None
  stats = device.memory_stats() or {}
  return {k: float(v) / 2**20 for k, v in stats.items() if "bytes" in k and "peak" in k}


def compiled_memory_mib(compiled) -> Optional[Dict[str, float]]:
  """XLA's buffer assignment of a compiled program: arguments, outputs, aliased (donated) and
  temporary buffers in MiB; the temporaries are what the program adds to its inputs at its peak.
  None where the backend does not report it."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return {name: float(getattr(analysis, f"{name}_size_in_bytes")) / 2**20
          for name in ("argument", "output", "alias", "temp")}


def time_calls(fn: Callable[[], Any], repeats: int) -> List[float]:
  """Seconds of each of `repeats` calls of fn (which blocks until its result is ready)."""
  times = []
  for _ in range(max(int(repeats), 1)):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def summary(times: Sequence[float]) -> Dict[str, float]:
  return {"median_s": float(np.median(times)), "min_s": float(np.min(times)),
          "max_s": float(np.max(times)), "n": len(times)}


def alternating_best(fns: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, float]:
  """Best seconds of each fn, calls interleaved so that machine load hits all alike."""
  best = {name: float("inf") for name in fns}
  for _ in range(max(int(repeats), 1)):
    for name, fn in fns.items():
      best[name] = min(best[name], time_calls(fn, 1)[0])
  return best


class CompileCounter:
  """Counts XLA backend compilations (every jit cache miss compiles once) while active."""

  def __init__(self):
    self.count = 0
    self.seconds = 0.0
    self._active = False

  def _listener(self, event: str, duration: float, **_) -> None:
    if self._active and event == BACKEND_COMPILE_EVENT:
      self.count += 1
      self.seconds += float(duration)

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    self._active = True
    return self

  def __exit__(self, *exc):
    self._active = False
    monitoring.unregister_event_duration_listener(self._listener)
    return False
