"""FSDP-style parameter sharding: each large parameter is split over the `data` axis.

Rule "fsdp" (chosen with `train.param_sharding`, applied by echo_jax.parallel.sharding's
`param_shardings`): a parameter with at least `train.fsdp_min_size` elements is split along its
largest dimension that the `data` axis size divides (the first such on ties); smaller parameters,
and those with no divisible dimension, stay replicated (splitting a tiny vector saves nothing and
costs an all-gather). The trainer maps the same shardings onto the optimizer moments, so
parameters and AdamW state both shrink by about the device count. Under `jax.jit` XLA then
all-gathers each weight where it is used and reduce-scatters its gradient, so the math is the
replicated step's math. The threshold is an argument, never module state: the shardings are a
pure function of the config.
"""

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from echo_jax.parallel.mesh import DATA_AXIS

DEFAULT_MIN_SIZE = 1 << 14  # elements; the schema's default train.fsdp_min_size


def check_min_size(min_size: Any) -> int:
  """`min_size` as an int; ValueError naming train.fsdp_min_size when it is not an integer >= 0."""
  if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
    raise ValueError(f"config.train.fsdp_min_size={min_size!r} is invalid: use an integer >= 0 "
                     "(parameters with fewer elements stay replicated).")
  return int(min_size)


def fsdp_spec(shape: Sequence[int], axis_size: int, min_size: int = DEFAULT_MIN_SIZE,
              axis: str = DATA_AXIS) -> P:
  """PartitionSpec splitting `shape`'s largest `axis_size`-divisible dimension, or P() if none."""
  size = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
  if axis_size <= 1 or size < min_size:
    return P()
  divisible = [i for i, d in enumerate(shape) if d % axis_size == 0]
  if not divisible:
    return P()
  dim = max(divisible, key=lambda i: (shape[i], -i))
  spec = [None] * len(shape)
  spec[dim] = axis
  return P(*spec)


def fsdp_shardings(mesh: Mesh, abstract_params: Any, min_size: int = DEFAULT_MIN_SIZE) -> Any:
  """Pytree of NamedSharding shaped like `abstract_params` (arrays or ShapeDtypeStructs)."""
  min_size = check_min_size(min_size)
  axis_size = int(mesh.shape[DATA_AXIS])
  return jax.tree.map(
      lambda leaf: NamedSharding(mesh, fsdp_spec(tuple(leaf.shape), axis_size, min_size)),
      abstract_params)


def bytes_per_device(abstract_tree: Any, shardings: Any) -> int:
  """Bytes one device holds of `abstract_tree` laid out by `shardings` (same structure)."""
  total = 0
  for leaf, sharding in zip(jax.tree.leaves(abstract_tree), jax.tree.leaves(shardings)):
    shard = sharding.shard_shape(tuple(leaf.shape))
    total += int(np.prod(shard, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total
