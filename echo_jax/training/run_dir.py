"""The run directory's host-side files: resolved config, tokenizer copy, non-finite dump; and
console lines from process 0.

Only process 0 writes (write_nonfinite_dump gathers every process's batch ids first, so all
processes call it).
"""

import filecmp
import json
import os
import shutil
from typing import Any, List, Mapping, Optional

import jax
import ml_collections
import numpy as np

from echo_jax import errors
from echo_jax import checkpointing
from echo_jax.training import metrics as metrics_lib


def say(message: str) -> None:
  """A console line from process 0 (library logs stay at WARNING; see train.py)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def config_changes(previous: Mapping[str, Any], current: Mapping[str, Any],
                   prefix: str = "") -> List[str]:
  """'section.field: old -> new' for every field that differs between two config dicts (as
  config.json stores them), fields only one of them has included."""
  changes = []
  for key in sorted(set(previous) | set(current)):
    name = f"{prefix}{key}"
    old, new = previous.get(key, "(unset)"), current.get(key, "(unset)")
    if isinstance(old, Mapping) and isinstance(new, Mapping):
      changes += config_changes(old, new, name + ".")
    elif old != new:
      changes.append(f"{name}: {old!r} -> {new!r}")
  return changes


def _recorded_config(workdir: str) -> Optional[Mapping[str, Any]]:
  """The config.json a previous start of this run wrote, or None."""
  path = os.path.join(workdir, "config.json")
  if not metrics_lib.path_exists(path):
    return None
  try:
    with metrics_lib.open_file(path, "r") as f:
      return json.loads(f.read())
  except (OSError, ValueError):  # a new run, or a file no run finished writing
    return None


def write_resolved_config(config: ml_collections.ConfigDict, workdir: str,
                          shown: int = 8) -> List[str]:
  """config.json and config.py (which keeps tuples) of the run, as inference.loading reads them.

  A run resumed with a different config (another train.num_steps stretches the learning-rate
  schedule, for instance) continues with the new one; the changes are printed and returned.
  """
  if jax.process_index() != 0:
    return []
  metrics_lib.make_dirs(workdir)
  resolved = config.to_json_best_effort(indent=2, sort_keys=True)
  previous = _recorded_config(workdir)
  changes = config_changes(previous, json.loads(resolved)) if previous is not None else []
  if changes:
    more = f" (+{len(changes) - shown} more)" if len(changes) > shown else ""
    say(f"note: {workdir} was started with another config; it continues with this one: "
        f"{'; '.join(changes[:shown])}{more}")
  with metrics_lib.open_file(os.path.join(workdir, "config.json"), "w") as f:
    f.write(resolved)
  with metrics_lib.open_file(os.path.join(workdir, "config.py"), "w") as f:
    f.write('"""Resolved config of this run."""\n\nimport ml_collections\n\n\n'
            f"def get_config():\n  return ml_collections.ConfigDict({config.to_dict()!r})\n")
  return changes


def copy_tokenizer(tokenizer_path: str, workdir: str) -> None:
  """Keeps the run's tokenizer beside its checkpoints (tokenizer.model / tokenizer.json), so
  transcribe and evaluate need neither the prepared data nor its location."""
  if jax.process_index() != 0:
    return
  suffix = ".json" if tokenizer_path.endswith(".json") else ".model"
  target = os.path.join(workdir, "tokenizer" + suffix)
  if metrics_lib.is_remote(target):
    import tensorflow as tf  # heavy, and only needed for remote workdirs
    tf.io.gfile.copy(tokenizer_path, target, overwrite=True)
  else:
    if os.path.exists(target) and not filecmp.cmp(target, tokenizer_path, shallow=False):
      raise errors.UserError(
          f"{target} (the tokenizer this run was trained with) differs from the prepared data's "
          f"{tokenizer_path}: the data or tokenizer settings changed since the run started; "
          f"resume with the run's own settings ({os.path.join(workdir, 'config.json')}) or use "
          "a new --workdir")
    shutil.copyfile(tokenizer_path, target)


def _leaf_names(tree) -> List[str]:
  return ["/".join(str(getattr(k, "key", k)) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def write_nonfinite_dump(workdir: str, step: int, step_metrics: Mapping[str, Any],
                         example_index: np.ndarray, last_good_step: Optional[int]) -> str:
  """JSON with the bad step's numbers, the offending parameters and every process's batch ids."""
  ids = checkpointing.gather_json([int(i) for i in np.asarray(example_index).reshape(-1)])
  path = os.path.join(workdir, f"nonfinite_step_{step}.json")
  if jax.process_index() == 0:
    flags = step_metrics["nonfinite_grads"]
    names = _leaf_names(flags)
    bad = [n for n, f in zip(names, jax.tree.leaves(flags)) if bool(f)]
    dump = {
        "step": int(step),
        "loss": float(step_metrics["loss"]),
        "grad_norm": float(step_metrics["grad_norm"]),
        "learning_rate": float(step_metrics["learning_rate"]),
        "num_tokens": float(step_metrics["num_tokens"]),
        "nonfinite_grad_params": bad,
        "example_index": [i for per_process in ids for i in per_process],
        "last_good_checkpoint_step": last_good_step,
    }
    with metrics_lib.open_file(path, "w") as f:
      f.write(json.dumps(dump, indent=2))
  return path
