"""Write diagnostics pytrees to the workdir, and read them back without the model code.

Format (version `echo_jax.diagnostics.v1`), under `<workdir>/diagnostics/`:

- `step_<step:06d>.npz`: one numpy archive per dumped step. Each entry is one leaf of the
  diagnostics pytree; its key is the pytree path joined with `/`, e.g.
  `grad_mean_abs/encoder.blocks.spectrogram.1.attna.q.kernel`, `seed/Q/decoder._blocks.0.attna`,
  `rotary_theta/encoder.blocks.spectrogram.1.attna`. Values are float32 (scalars, or [B]/[B, T]
  per-utterance arrays).
- `index.json`: `{"format", "sparsity_threshold", "steps": [{"step", "file", "time"}...],
  "keys": {key: {"shape", "dtype"}}}`, rewritten atomically after every dump.

`np.load(path)` and `json.load` are all a reader needs; `load_run` below does exactly that.
Paths go through etils.epath, so a gs:// workdir works as a local one.
"""

import concurrent.futures
import io
import json
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from etils import epath

FORMAT = "echo_jax.diagnostics.v1"
SUBDIR = "diagnostics"
INDEX = "index.json"


def flatten(tree: Any, prefix: str = "") -> Dict[str, Any]:
  """Nested dicts -> {"a/b/c": leaf}; keys are taken as they are (dotted names stay dotted)."""
  if isinstance(tree, Mapping):
    out = {}
    for key, value in tree.items():
      if "/" in str(key):
        raise ValueError(f"diagnostics key {key!r} under {prefix!r} contains '/'; use dots.")
      out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return out
  return {prefix: tree}


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
  out: Dict[str, Any] = {}
  for key, value in flat.items():
    node = out
    parts = key.split("/")
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = value
  return out


def diagnostics_dir(run: str) -> epath.Path:
  """`run` may be a workdir (holding diagnostics/) or the diagnostics folder itself."""
  run = epath.Path(run)
  if (run / INDEX).exists():
    return run
  return run / SUBDIR


def _write_atomic(path: epath.Path, data: bytes) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_bytes(data)
  tmp.replace(path)


def _gather_if_needed(flat: Dict[str, Any]) -> Dict[str, Any]:
  """Arrays split over processes (per-utterance values of a multi-host batch) are all-gathered;
  a collective, so then `write` must run on every process. Replicated arrays (the trainer's
  out_shardings) need no gather: process 0 may call `write` alone."""
  import jax  # Imported here so that reading dumps never needs jax.
  sharded = {k for k, v in flat.items()
             if isinstance(v, jax.Array) and not v.is_fully_addressable
             and not v.is_fully_replicated}
  if not sharded:
    return flat
  from jax.experimental import multihost_utils
  gathered = multihost_utils.process_allgather({k: flat[k] for k in sorted(sharded)}, tiled=True)
  return {**flat, **gathered}


class DiagnosticsWriter:
  """Dumps diagnostics pytrees asynchronously: `write(step, tree)` returns at once (after the
  all-gather of process-split arrays), a background thread fetches the values and writes the
  archive. Only process 0 writes; call `write` on every process. `close()` waits for all writes and
  re-raises a failed write's error."""

  def __init__(self, workdir: str, process_index: Optional[int] = None):
    if process_index is None:
      import jax
      process_index = jax.process_index()
    self.directory = epath.Path(workdir) / SUBDIR
    self.is_writer = process_index == 0
    self._lock = threading.Lock()
    self._pending: List[concurrent.futures.Future] = []
    self._executor = None
    self._index = {"format": FORMAT, "sparsity_threshold": None, "steps": [], "keys": {}}
    if self.is_writer:
      self.directory.mkdir(parents=True, exist_ok=True)
      index_path = self.directory / INDEX
      if index_path.exists():  # A resumed run appends to its own index.
        self._index = json.loads(index_path.read_text())
      self._executor = concurrent.futures.ThreadPoolExecutor(
          max_workers=1, thread_name_prefix="diagnostics-writer")

  def write(self, step: int, tree: Any) -> None:
    self._raise_failed()
    flat = _gather_if_needed(flatten(tree))
    if not self.is_writer:
      return
    self._pending.append(self._executor.submit(self._write_now, int(step), flat))

  def _write_now(self, step: int, flat: Dict[str, Any]) -> epath.Path:
    import jax
    # imports jax, as above: reading dumps never needs jax
    from echo_jax.training.diagnostics_collect import SPARSITY_THRESHOLD
    host = {k: np.asarray(v, np.float32) for k, v in jax.device_get(flat).items()}
    name = f"step_{step:06d}.npz"
    path = self.directory / name
    buffer = io.BytesIO()
    np.savez(buffer, **host)
    _write_atomic(path, buffer.getvalue())
    with self._lock:
      steps = [s for s in self._index["steps"] if s["step"] != step]
      steps.append({"step": step, "file": name, "time": time.time()})
      self._index["steps"] = sorted(steps, key=lambda s: s["step"])
      self._index["sparsity_threshold"] = SPARSITY_THRESHOLD
      self._index["keys"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                             for k, v in sorted(host.items())}
      _write_atomic(self.directory / INDEX, json.dumps(self._index, indent=1).encode())
    return path

  def _raise_failed(self) -> None:
    done = [f for f in self._pending if f.done()]
    self._pending = [f for f in self._pending if not f.done()]
    for f in done:
      f.result()

  def wait(self) -> None:
    pending, self._pending = self._pending, []
    for f in pending:
      f.result()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      if self._executor is not None:
        self._executor.shutdown(wait=True)
        self._executor = None


def parse_steps(spec: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
  """"A:B" -> (A, B), both ends inclusive and optional ("100:", ":500", "300")."""
  if not spec:
    return None, None
  try:
    if ":" not in spec:
      return int(spec), int(spec)
    lo, hi = spec.split(":", 1)
    return (int(lo) if lo.strip() else None), (int(hi) if hi.strip() else None)
  except ValueError:
    raise ValueError(f"--steps {spec!r} is not A:B with integer steps (e.g. 100:500, 100:, :500)")


def load_index(run: str) -> Dict[str, Any]:
  path = diagnostics_dir(run) / INDEX
  if not path.exists():
    raise FileNotFoundError(
        f"no diagnostics index at {path}; train with config.diagnostics.every > 0 "
        f"or pass the run's workdir.")
  index = json.loads(path.read_text())
  if index.get("format") != FORMAT:
    raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
  return index


def load_step(run: str, step: int, file: Optional[str] = None) -> Dict[str, np.ndarray]:
  path = diagnostics_dir(run) / (file or f"step_{step:06d}.npz")
  with np.load(io.BytesIO(path.read_bytes())) as archive:
    return {k: archive[k] for k in archive.files}


def load_run(run: str, steps: Optional[str] = None) -> Dict[int, Dict[str, np.ndarray]]:
  """{step: {flat key: array}} for the dumped steps within `steps` ("A:B", inclusive)."""
  lo, hi = parse_steps(steps)
  index = load_index(run)
  selected = [s for s in index["steps"]
              if (lo is None or s["step"] >= lo) and (hi is None or s["step"] <= hi)]
  if not selected:
    available = [s["step"] for s in index["steps"]]
    raise ValueError(f"no diagnostics dumps in steps {steps!r}; dumped steps: {available}")
  return {s["step"]: load_step(run, s["step"], s["file"]) for s in selected}
