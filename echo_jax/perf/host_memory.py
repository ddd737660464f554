"""Handing host memory that is already free back to the operating system.

XLA:CPU allocates a compiled step's temporaries as one block, while the compiler (and the
initialisation program before it) frees many small allocations that glibc keeps mapped in its
heaps. Those freed pages still count in the process's resident set, and the step's block cannot
reuse them, so the peak resident set of a training process is roughly "what the compiler left
behind + the step's temporaries". Releasing the freed pages between compiling and running the
step lowers that peak by the compiler's share (measured at the seed shape: docs/performance.md,
"Memory at the seed shape").
"""

import ctypes
import ctypes.util
import functools
import gc
from typing import Optional


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[ctypes._CFuncPtr]:  # pylint: disable=protected-access
  """glibc's malloc_trim, or None where the C library has none (macOS, musl)."""
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
  if trim is not None:
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
  return trim


def current_rss_mib() -> float:
  """Resident set size of this process now (Linux; 0 elsewhere)."""
  try:
    with open("/proc/self/statm", encoding="ascii") as handle:
      pages = int(handle.read().split()[1])
  except OSError:
    return 0.0
  return pages * 4096 / 2**20


def release_freed_host_memory() -> bool:
  """Collects Python garbage (dropped executables and arrays can sit in reference cycles) and
  returns the C heap's free pages to the OS. True when the C library could do the latter."""
  gc.collect()
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True
