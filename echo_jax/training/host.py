"""Device values on the host, in single- and multi-process runs alike."""

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def fetch(tree: Any) -> Any:
  """Host copies of replicated device values; works when arrays span other processes' devices."""
  def leaf(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(leaf, tree)


def to_host(x: jax.Array) -> np.ndarray:
  """The whole global array on every process."""
  if jax.process_count() == 1:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
