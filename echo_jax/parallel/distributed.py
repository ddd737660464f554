"""Multi-process start-up: `jax.distributed.initialize` when configured, before any computation.

- TPU pod: `distributed.initialize=True` with no coordinator; JAX discovers the pod itself. A
  multi-worker TPU VM (TPU_WORKER_HOSTNAMES lists several hosts) initialises even when not asked.
- GPU cluster / local processes: explicit coordinator address, process count and id.
- CPU processes talk over gloo collectives.
"""

import os

import jax
import ml_collections
from absl import logging

_initialized = False


def _on_multi_worker_tpu_vm() -> bool:
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h.strip()]) > 1


def should_initialize(dist: ml_collections.ConfigDict) -> bool:
  return bool(dist.initialize) or _on_multi_worker_tpu_vm()


def initialize(dist: ml_collections.ConfigDict) -> None:
  """Initialises the JAX distributed runtime when `dist` (config.distributed) asks for it.

  Must run before the first JAX computation. Idempotent within a process.
  """
  global _initialized
  if _initialized or not should_initialize(dist):
    return
  # CPU processes need a cross-process collectives backend; harmless on GPU/TPU.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if dist.coordinator_address:
    if int(dist.num_processes) < 1 or not 0 <= int(dist.process_id) < int(dist.num_processes):
      raise ValueError(
          f"distributed.process_id={dist.process_id} must be in [0, distributed.num_processes="
          f"{dist.num_processes}).")
    jax.distributed.initialize(
        coordinator_address=dist.coordinator_address,
        num_processes=int(dist.num_processes),
        process_id=int(dist.process_id))
  else:
    jax.distributed.initialize()  # cluster auto-detection (TPU pods, SLURM, ...)
  _initialized = True
  logging.info("distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def is_initialized() -> bool:
  return _initialized


def shutdown() -> None:
  global _initialized
  if _initialized:
    jax.distributed.shutdown()
    _initialized = False
