"""Device mesh, shardings and global batch assembly for data-parallel training.

The mesh has one axis, `data`, spanning every device of every process. Batches are sharded over
`data`; parameters and optimizer state are placed by a named *param-sharding rule* (default:
replicated). A rule maps (mesh, abstract params) -> a pytree of NamedSharding, so other layouts
(e.g. FSDP) register themselves with `register_param_sharding` without touching the trainer.
"""

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

# Keys of a host batch that stay on the host (bookkeeping, never read by the model).
HOST_ONLY_KEYS = ("example_index",)

ParamShardingRule = Callable[[Mesh, Any], Any]
_PARAM_SHARDING_RULES: Dict[str, ParamShardingRule] = {}


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes) with axis `data`."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def register_param_sharding(name: str, rule: ParamShardingRule) -> None:
  """Registers `rule(mesh, abstract_params) -> pytree of NamedSharding` under `name`."""
  _PARAM_SHARDING_RULES[name] = rule


def available_param_shardings() -> Sequence[str]:
  return tuple(sorted(_PARAM_SHARDING_RULES))


def _replicate_all(mesh: Mesh, abstract_tree: Any) -> Any:
  return jax.tree.map(lambda _: replicated(mesh), abstract_tree)


register_param_sharding("replicated", _replicate_all)
from echo_jax.parallel import param_sharding as _fsdp  # noqa: E402  FSDP-style rule "fsdp"
register_param_sharding("fsdp", _fsdp.fsdp_rule(_fsdp.DEFAULT_MIN_SIZE))


def param_shardings(mesh: Mesh, abstract_params: Any, mode: str = "replicated") -> Any:
  """Per-leaf NamedSharding for parameters (and anything shaped like them) under rule `mode`."""
  if mode not in _PARAM_SHARDING_RULES:
    raise ValueError(
        f"train.param_sharding={mode!r} is not available; choose one of "
        f"{list(available_param_shardings())}.")
  return _PARAM_SHARDING_RULES[mode](mesh, abstract_params)


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
