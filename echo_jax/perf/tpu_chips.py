"""What a TPU chip offers, by generation: HBM per chip, peak bf16 FLOP/s, device layout.

Numbers are Google Cloud's published per-chip specifications:
  v4:  https://cloud.google.com/tpu/docs/v4   "HBM2 capacity and bandwidth: 32 GiB, 1200 GBps",
       "Peak compute per chip: 275 teraflops (bf16 or int8)"; two TensorCores run as one
       megacore device.
  v5e: https://cloud.google.com/tpu/docs/v5e  "HBM2 capacity and bandwidth: 16 GB, 819 GBps",
       "Peak compute per chip (bf16): 197 TFLOPs"; one TensorCore per chip.
  v5p: https://cloud.google.com/tpu/docs/v5p  "HBM2e capacity and bandwidth: 95 GB, 2765 GBps",
       "Peak compute per chip (bf16): 459 TFLOPs"; two TensorCores run as one megacore device.
  v6e: https://cloud.google.com/tpu/docs/v6e  "HBM capacity per chip: 32 GB",
       "Peak compute per chip (bf16): 918 TFLOPs"; one TensorCore per chip.
HBM stacks come in binary sizes, so the pages' "GB" are read as GiB (JAX on a v5e reports a
bytes_limit just under 16 GiB: the runtime keeps a little for itself, hence `usable_fraction`).
"""

import dataclasses
import re
from typing import Dict

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class TpuChip:
  generation: str        # as in a topology name: "v5e" in "v5e:4x4"
  device_kind: str       # jax Device.device_kind of one chip
  hbm_bytes: int         # HBM per chip
  peak_bf16_flops: float  # per chip per second
  megacore: bool         # True: the chip's two TensorCores form one JAX device


CHIPS: Dict[str, TpuChip] = {
    "v4": TpuChip("v4", "TPU v4", 32 * GIB, 275e12, True),
    "v5e": TpuChip("v5e", "TPU v5 lite", 16 * GIB, 197e12, False),
    "v5p": TpuChip("v5p", "TPU v5", 95 * GIB, 459e12, True),
    "v6e": TpuChip("v6e", "TPU v6 lite", 32 * GIB, 918e12, False),
}

# The share of HBM a program may plan for: the TPU runtime reserves a little for itself.
usable_fraction = 0.97

_TOPOLOGY = re.compile(r"^(v\d+[a-z]*):(\d+(?:x\d+){1,2})$")


def parse_topology(name: str):
  """'v5e:4x4' -> (TpuChip, (4, 4)); a clear error for anything else."""
  match = _TOPOLOGY.match(name.strip())
  if not match:
    raise ValueError(f"--topology {name!r} is not a TPU topology; write GENERATION:SHAPE, "
                     "e.g. v5e:2x2, v5e:4x4, v4:2x2x2, v5p:2x2x1, v6e:2x4.")
  generation, shape = match.group(1), tuple(int(s) for s in match.group(2).split("x"))
  if generation not in CHIPS:
    raise ValueError(f"--topology {name!r}: unknown TPU generation {generation!r}; known: "
                     f"{', '.join(sorted(CHIPS))}.")
  return CHIPS[generation], shape


def num_chips(shape) -> int:
  count = 1
  for s in shape:
    count *= int(s)
  return count


# gcloud accelerator types -> topology. v4/v5p names count TensorCores (2 per chip), v5e/v6e
# names count chips; shapes are the default slice shapes in the pages above.
_V4_V5P_SHAPES = {8: "2x2x1", 16: "2x2x2", 32: "2x2x4", 64: "2x4x4", 128: "4x4x4",
                  256: "4x4x8", 512: "4x8x8", 1024: "8x8x8"}
_V5E_V6E_SHAPES = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
                   256: "16x16"}
_ACCELERATOR = re.compile(r"^(v4|v5p|v5litepod|v5e|v6e)-(\d+)$")


def topology_name(name: str) -> str:
  """A topology ('v5e:4x4') as is, or a gcloud accelerator type ('v5litepod-16') converted."""
  name = name.strip()
  if _TOPOLOGY.match(name):
    return name
  match = _ACCELERATOR.match(name)
  if match:
    kind, count = match.group(1), int(match.group(2))
    generation = "v5e" if kind == "v5litepod" else kind
    shapes = _V4_V5P_SHAPES if generation in ("v4", "v5p") else _V5E_V6E_SHAPES
    if count in shapes:
      return f"{generation}:{shapes[count]}"
  raise ValueError(f"{name!r} is neither a TPU topology (e.g. v5e:4x4, v4:2x2x2) nor a known "
                   f"accelerator type (e.g. v5litepod-16, v4-16, v5p-8, v6e-8); pass the topology.")
