"""A jitted step run through executables compiled ahead of time, one per input signature.

jax.jit compiles on the first call of each input shape and runs the new executable right away,
so the step's temporaries are allocated on top of the memory the compiler has just freed but
the process still holds. Compiling ahead of time leaves a gap between the two, in which that
memory is handed back (perf.host_memory); the executables are the jitted function's own (same
donation, shardings and values).
"""

from typing import Any, Callable, Dict, Hashable

import jax

from echo_jax.perf.host_memory import release_freed_host_memory


def _signature(args) -> Hashable:
  leaves, treedef = jax.tree.flatten(args)
  return treedef, tuple((tuple(x.shape), str(x.dtype), getattr(x, "sharding", None))
                        for x in leaves)


class CompiledPerSignature:
  """Calls `jitted(*args)` through one ahead-of-time executable per input signature (tree
  structure, shapes, dtypes, shardings)."""

  def __init__(self, jitted: Callable[..., Any]):
    self._jitted = jitted
    self._executables: Dict[Hashable, Any] = {}

  def __call__(self, *args):
    key = _signature(args)
    executable = self._executables.get(key)
    if executable is None:
      executable = self._jitted.lower(*args).compile()
      self._executables[key] = executable
      release_freed_host_memory()
    return executable(*args)

  def num_compiled(self) -> int:
    """How many executables were compiled (one per signature seen)."""
    return len(self._executables)
