"""Device mesh, shardings and global batch assembly for data-parallel training.

The mesh has one axis, `data`, spanning every device of every process (echo_jax.parallel.mesh).
Batches are sharded over `data`; parameters and optimizer state are placed by the
*param-sharding rule* `train.param_sharding`: "replicated" (default) or "fsdp"
(echo_jax.parallel.param_sharding, with `train.fsdp_min_size`). `param_shardings` picks the rule
from the config alone; other layouts can be added with `register_param_sharding`, an explicit
extension point that nothing in the package calls (validation only reads the rule names).
"""

from typing import Any, Callable, Dict, Mapping, Sequence, Union

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from echo_jax.parallel import param_sharding as fsdp_lib
# The mesh and basic layouts, re-exported: callers take every layout from this one module.
from echo_jax.parallel.mesh import DATA_AXIS, batch_sharding, make_mesh, replicated

__all__ = [
    "DATA_AXIS", "HOST_ONLY_KEYS", "available_param_shardings", "batch_sharding", "global_batch",
    "make_mesh", "param_shardings", "register_param_sharding", "replicated", "split_host_batch",
]

# Keys of a host batch that stay on the host (bookkeeping, never read by the model).
HOST_ONLY_KEYS = ("example_index",)

ParamShardingRule = Callable[[Mesh, Any], Any]
# The built-in rules: (mesh, abstract params, train.fsdp_min_size) -> shardings.
_BUILTIN_RULES = {
    "replicated": lambda mesh, tree, _: jax.tree.map(lambda _: replicated(mesh), tree),
    "fsdp": fsdp_lib.fsdp_shardings,
}
_PARAM_SHARDING_RULES: Dict[str, ParamShardingRule] = {}  # added by register_param_sharding


def register_param_sharding(name: str, rule: ParamShardingRule) -> None:
  """Adds `rule(mesh, abstract_params) -> pytree of NamedSharding` under `name`."""
  if name in _BUILTIN_RULES:
    raise ValueError(f"param-sharding rule {name!r} is built in; register another name")
  _PARAM_SHARDING_RULES[name] = rule


def available_param_shardings() -> Sequence[str]:
  return tuple(sorted(set(_BUILTIN_RULES) | set(_PARAM_SHARDING_RULES)))


def param_shardings(mesh: Mesh, abstract_params: Any,
                    mode: Union[str, ml_collections.ConfigDict] = "replicated") -> Any:
  """Per-leaf NamedSharding for parameters (and anything shaped like them).

  `mode` is config.train (its param_sharding rule and fsdp_min_size) or a rule name (with the
  default fsdp_min_size).
  """
  min_size = fsdp_lib.DEFAULT_MIN_SIZE
  if not isinstance(mode, str):
    min_size = mode.get("fsdp_min_size", fsdp_lib.DEFAULT_MIN_SIZE)
    mode = str(mode.param_sharding)
  if mode in _BUILTIN_RULES:
    return _BUILTIN_RULES[mode](mesh, abstract_params, min_size)
  if mode in _PARAM_SHARDING_RULES:
    return _PARAM_SHARDING_RULES[mode](mesh, abstract_params)
  raise ValueError(
      f"train.param_sharding={mode!r} is not available; choose one of "
      f"{list(available_param_shardings())}.")


def split_host_batch(batch: Mapping[str, np.ndarray]):
  """(device part, host part): host-only bookkeeping keys are kept out of the device batch."""
  device = {k: v for k, v in batch.items() if k not in HOST_ONLY_KEYS}
  host = {k: v for k, v in batch.items() if k in HOST_ONLY_KEYS}
  return device, host


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
  """Assembles this process's rows into global arrays sharded over `data`.

  Every process passes its own contiguous slice of the global batch (process i holds rows
  [i*b, (i+1)*b)); the result has the global batch size on axis 0.
  """
  sharding = batch_sharding(mesh)
  return {
      key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
      for key, value in local_batch.items()
  }
