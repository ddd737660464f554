"""Checkpoints with orbax: async saves, keep-last-K + keep-best-by-WER, resume, preemption.

A checkpoint step directory holds three items:
  params    the model parameters (what `init_from`, evaluation and transcription load)
  train     optimizer state, step counter, base RNG (everything else needed to resume bitwise)
  pipeline  JSON: every process's input-pipeline position, so a resumed run reads the next unseen batch
and, when an evaluation ran at that step, orbax's metrics file ({"wer": ...}) for best-by-WER.

Every process calls `save`/`restore` (orbax coordinates multi-host writes itself).
"""

import contextlib
import json
import os
import signal
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from echo_jax.config.check import BEST_METRICS
from echo_jax.errors import UserError

CHECKPOINT_SUBDIR = "checkpoints"
ITEM_NAMES = ("params", "train", "pipeline")
BEST_METRIC = "wer"  # lower is better; the default of train.best_metric
COMMIT_MARKER = "commit_success.txt"  # orbax writes it last, just before the atomic rename
QUARANTINE_PREFIX = "corrupt_"  # damaged steps are moved to checkpoints/corrupt_<step>/


class CheckpointMismatchError(UserError):
  """An intact checkpoint that does not fit this run (other model shapes or process count)."""


class NoUsableCheckpointError(UserError):
  """Every checkpoint of a run failed to restore (each was moved aside)."""


class CheckpointWriteError(UserError):
  """A save failed (disk full, directory not writable); earlier checkpoints are intact."""


def one_line(error: BaseException, limit: int = 300) -> str:
  """The first line of an exception's message, shortened: orbax errors span dozens of lines."""
  text = str(error).strip().splitlines()
  first = text[0] if text else ""
  message = f"{type(error).__name__}: {first}" if first else type(error).__name__
  return message if len(message) <= limit else message[:limit - 3] + "..."


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def shape_mismatches(params_dir: str, params_like: Any, limit: int = 3) -> List[str]:
  """How the saved parameter tree in `params_dir` differs from `params_like` (names and shapes);
  empty when it fits. Reading the metadata of a damaged checkpoint raises."""
  with ocp.StandardCheckpointer() as reader:
    metadata = reader.metadata(params_dir).item_metadata
  tree = getattr(metadata, "tree", metadata)
  saved = {_path_name(p): tuple(m.shape) for p, m in jax.tree_util.tree_leaves_with_path(tree)
           if hasattr(m, "shape")}
  if not saved:  # orbax logs and returns nothing for unreadable metadata
    raise OSError(f"the parameter metadata in {params_dir} is unreadable")
  wanted = {_path_name(p): tuple(np.shape(x))
            for p, x in jax.tree_util.tree_leaves_with_path(params_like)}
  problems = [f"{name}: saved {saved[name]}, this config {wanted[name]}"
              for name in sorted(saved.keys() & wanted.keys()) if saved[name] != wanted[name]]
  problems += [f"{name}: only in this config" for name in sorted(wanted.keys() - saved.keys())]
  problems += [f"{name}: only in the checkpoint" for name in sorted(saved.keys() - wanted.keys())]
  return problems[:limit]


def absolute(path: str) -> str:
  """orbax needs absolute paths; remote (gs://) paths already are."""
  return str(path) if "://" in str(path) else os.path.abspath(path)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(absolute(workdir), CHECKPOINT_SUBDIR)


def _metric_reader(name: str):
  """metrics -> the named error rate (inf where a checkpoint did not record it)."""
  return lambda metrics: float(metrics.get(name, float("inf")))


def _abstract(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings when present): the restore target for `tree`."""
  def leaf(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
  return jax.tree.map(leaf, tree)


def gather_json(obj: Any) -> List[Any]:
  """Every process's JSON-serialisable `obj`, in process order, on every process."""
  if jax.process_count() == 1:
    return [obj]
  data = np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), np.uint8)
  lengths = multihost_utils.process_allgather(np.asarray([data.size], np.int32))
  padded = np.zeros([int(np.max(lengths))], np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)  # [processes, max_len]
  return [json.loads(bytes(row[:int(n)]).decode("utf-8"))
          for row, n in zip(np.asarray(gathered), np.asarray(lengths).reshape(-1))]


TMP_MARKER = ".orbax-checkpoint-tmp"


def _remove_unfinished_saves(directory: str) -> None:
  """Deletes <step>.orbax-checkpoint-tmp* folders: saves killed half-way, never a checkpoint
  (orbax lists only renamed, committed steps), only disk space. Done here, before any save,
  rather than by orbax's own asynchronous clean-up, which can race with the next save."""
  root = epath.Path(directory)
  if jax.process_index() != 0 or not root.exists():
    return
  for child in root.iterdir():
    if TMP_MARKER in child.name and child.is_dir():
      child.rmtree()


def _save_replicated_arrays_from_one_replica() -> None:
  """On CPU, orbax saves each replicated array from one replica instead of in slices.

  orbax's default ("replica-parallel") splits a replicated array into one slice per replica so
  that several accelerators share the device-to-host copies. CPU devices are one host memory:
  the slices only add a jitted slice per array, device and shape (4 saves of the tiny model on
  8 CPU devices: ~5,800 slice dispatches, 15 s of a 48 s run). Accelerators keep the default.
  Restoring does not depend on how a checkpoint was chunked.
  """
  if jax.default_backend() == "cpu":
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


class Checkpointer:
  """orbax CheckpointManager for a training run's `<workdir>/checkpoints`."""

  def __init__(self, directory: str, keep_last: int, keep_best: int, async_save: bool = True,
               best_metric: str = BEST_METRIC):
    _save_replicated_arrays_from_one_replica()
    if best_metric not in BEST_METRICS:
      raise ValueError(f"best_metric {best_metric!r}: use one of {', '.join(BEST_METRICS)}")
    self.best_metric = best_metric
    read = _metric_reader(best_metric)
    policies = [checkpoint_managers.LatestN(n=max(int(keep_last), 1))]
    if int(keep_best) > 0:
      policies.append(checkpoint_managers.BestN(
          get_metric_fn=read, reverse=True, n=int(keep_best),
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        best_fn=read, best_mode="min",
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save, create=True)
    self.directory = absolute(directory)
    _remove_unfinished_saves(self.directory)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEM_NAMES)
    self._in_flight: Optional[int] = None  # the async save not yet known to have finished

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def recorded(self, name: str) -> Dict[int, float]:
    """{step: value} of the error rate `name` over the kept checkpoints that recorded it."""
    values = {}
    for step in self._manager.all_steps():
      metrics = self._manager.metrics(step) or {}
      if name in metrics:
        values[step] = float(metrics[name])
    return values

  def best_step(self) -> Optional[int]:
    """Step with the lowest `best_metric` among the kept checkpoints; where none recorded it
    (runs saved before it was chosen record only the WER), the lowest WER; else the latest."""
    for name in dict.fromkeys((self.best_metric, BEST_METRIC)):
      scored = self.recorded(name)
      if scored:
        return min(scored, key=lambda step: (scored[step], -step))  # ties: the newer
    return self._manager.latest_step()

  def all_steps(self) -> List[int]:
    return list(self._manager.all_steps())

  def metrics(self, step: int) -> Optional[Dict[str, float]]:
    return self._manager.metrics(step)

  def save(self, step: int, params: Any, train_state: Any, pipeline_state: Any,
           metrics: Optional[Mapping[str, float]] = None) -> None:
    """Starts an async save of `step`. Collective: every process calls it with its own
    `pipeline_state` (JSON-serialisable); all processes' states are stored together."""
    pipeline = {"process_count": jax.process_count(), "states": gather_json(pipeline_state)}
    with self._write_errors(int(step)):
      self._manager.save(
          int(step),
          args=ocp.args.Composite(
              params=ocp.args.StandardSave(params),
              train=ocp.args.StandardSave(train_state),
              pipeline=ocp.args.JsonSave(pipeline)),
          metrics=dict(metrics) if metrics else None,
          force=True)
    self._in_flight = int(step)

  @contextlib.contextmanager
  def _write_errors(self, step: Optional[int] = None):
    """Turns a failed write (this save, or the async one before it, which orbax reports at the
    next save or wait) into one CheckpointWriteError naming the step and what is intact."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except - orbax/tensorstore raise many types
      failed = self._in_flight if self._in_flight is not None else step
      self._in_flight = None
      try:
        intact = [s for s in sorted(self._manager.all_steps()) if s != failed]
      except Exception:  # pylint: disable=broad-except - listing can fail for the same reason
        intact = []
      raise CheckpointWriteError(
          f"saving checkpoint step {failed} to {self.directory} failed ({one_line(e)}); the "
          f"earlier checkpoints {intact or '(none)'} are intact. Free disk space or make the "
          "workdir writable, then rerun the same command to resume.") from e

  def restore(self, step: int, params_like: Any, train_state_like: Any) -> Tuple[Any, Any, Any]:
    """(params, train_state, this process's pipeline state) at `step`, placed like the templates."""
    restored = self._manager.restore(
        int(step),
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(params_like)),
            train=ocp.args.StandardRestore(_abstract(train_state_like)),
            pipeline=ocp.args.JsonRestore()))
    pipeline = restored["pipeline"]
    if int(pipeline["process_count"]) != jax.process_count():
      raise CheckpointMismatchError(
          f"checkpoint step {step} in {self.directory} was written by {pipeline['process_count']} "
          f"processes, this run has {jax.process_count()}; resume with the same process count or "
          f"start a new workdir with --config.init_from={self.directory}.")
    return restored["params"], restored["train"], pipeline["states"][jax.process_index()]

  def step_dir(self, step: int) -> epath.Path:
    return epath.Path(self.directory) / str(int(step))

  @staticmethod
  def check_committed(step_dir) -> None:
    """Raises (a plain OSError: damage, not a user error) when the step's save never committed."""
    if not (epath.Path(step_dir) / COMMIT_MARKER).exists():
      raise OSError(f"no {COMMIT_MARKER}: the save of this step never committed")

  def check_fits(self, step: int, params_like: Any) -> None:
    """Raises CheckpointMismatchError when `step` is intact but holds another model's params;
    raises other errors when it is damaged (no commit marker, unreadable metadata)."""
    step_dir = self.step_dir(step)
    self.check_committed(step_dir)
    problems = shape_mismatches(str(step_dir / "params"), params_like)
    if problems:
      raise CheckpointMismatchError(
          f"checkpoint step {step} in {self.directory} holds a different model ("
          f"{'; '.join(problems)}); resume with the config that run was started with "
          f"({os.path.dirname(self.directory)}/config.json), or use a new --workdir (optionally "
          f"with --config.init_from of a compatible run).")

  def quarantine(self, step: int, reason: str) -> str:
    """Moves a damaged step to checkpoints/corrupt_<step>[_n]/ (never deletes it); collective.
    Returns the new path."""
    source = self.step_dir(step)
    target = epath.Path(self.directory) / f"{QUARANTINE_PREFIX}{int(step)}"
    suffix = 1
    while target.exists():
      target = epath.Path(self.directory) / f"{QUARANTINE_PREFIX}{int(step)}_{suffix}"
      suffix += 1
    if jax.process_index() == 0:
      source.rename(target)
      (target / "REASON.txt").write_text(reason + "\n")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"quarantine_{int(step)}")
    self._manager.reload()
    return str(target)

  def restore_newest(self, params_like: Any, train_state_like: Any,
                     report=logging.warning) -> Optional[Tuple[int, Any, Any, Any]]:
    """(step, params, train_state, pipeline state) of the newest checkpoint that restores, or None
    when the run has no checkpoint. A damaged step (missing or corrupt array files, no commit
    marker, unreadable metadata or pipeline state) is reported in one line and moved aside, and
    the next older step is tried; when none is left this raises NoUsableCheckpointError. An
    intact checkpoint of another model raises CheckpointMismatchError (nothing is moved)."""
    moved = []
    for step in sorted(self.all_steps(), reverse=True):
      problem = None
      try:
        self.check_fits(step, params_like)
        restored = self.restore(step, params_like, train_state_like)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except - any failure means "damaged"
        problem = one_line(e)
      problems = [p for p in gather_json(problem) if p]  # every process falls back together
      if not problems:
        return (step,) + tuple(restored)
      target = self.quarantine(step, problems[0])
      moved.append(target)
      report(f"checkpoint step {step} does not restore ({problems[0]}); moved it to {target} "
             "and trying the previous one")
    if moved:
      raise NoUsableCheckpointError(
          f"no checkpoint in {self.directory} restores; the damaged ones were moved to "
          f"{', '.join(moved)}. Rerun to start from step 0, or put an intact copy back.")
    return None

  def wait(self) -> None:
    with self._write_errors():
      self._manager.wait_until_finished()
    self._in_flight = None

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._manager.close()


def _resolve_checkpoint_root(path: str) -> Tuple[str, Optional[int]]:
  """Accepts a run's workdir, its checkpoints dir, or one step dir -> (checkpoints dir, step).

  Works for local and gs:// paths (etils.epath)."""
  root = epath.Path(absolute(path))
  if (root / CHECKPOINT_SUBDIR).is_dir():
    return str(root / CHECKPOINT_SUBDIR), None
  if root.name.isdigit() and (root / "params").is_dir():
    return str(root.parent), int(root.name)
  return str(root), None


def restore_params(path: str, params_like: Any = None, step: Optional[int] = None) -> Any:
  """Parameters from another run: `path` is its workdir, checkpoints dir or a step dir.

  Uses `step` if given, else the best-WER checkpoint, else the latest. With `params_like` the
  arrays are placed/shaped like it (and a shape mismatch is an error).
  """
  root, path_step = _resolve_checkpoint_root(path)
  options = ocp.CheckpointManagerOptions(best_fn=_metric_reader(BEST_METRIC), best_mode="min",
                                         read_only=True, create=False)
  manager = ocp.CheckpointManager(root, options=options, item_names=ITEM_NAMES)
  try:
    chosen = step if step is not None else path_step
    if chosen is None:
      chosen = manager.best_step()
    if chosen is None:
      chosen = manager.latest_step()  # no checkpoint has a WER
    if chosen is None:
      raise FileNotFoundError(f"no checkpoint found under {path!r} (looked in {root!r}).")
    target = (ocp.args.StandardRestore(_abstract(params_like)) if params_like is not None
              else ocp.args.StandardRestore())
    restored = manager.restore(int(chosen), args=ocp.args.Composite(params=target))
    logging.info("restored params of step %d from %s", chosen, root)
    return restored["params"]
  finally:
    manager.close()


class PreemptionWatcher:
  """Tells the loop when to save and stop after SIGTERM (preemption).

  Multi-process: JAX's preemption sync manager agrees on one step for all processes (it must be
  asked at every step). Single process: a SIGTERM handler sets a flag read at step boundaries.
  """

  def __init__(self):
    self._flag = False
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi:
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame):  # noqa: ARG002 - signal handler signature
    self._flag = True

  def should_stop(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(int(step))
    return self._flag

  def close(self) -> None:
    if not self._multi and self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
