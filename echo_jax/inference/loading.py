"""Load a trained run for inference: resolved config, tokenizer, model and parameters.

  run = load_run("runs/default")            # best-by-WER checkpoint, else the latest
  run = load_run("runs/default", step=2000)
  run = load_run("runs/default", average=3)  # the mean of the 3 newest checkpoints' parameters
  run.model, run.variables, run.tokenizer, run.config, run.step

The run's workdir holds the resolved config (`config.py`/`config.json`, written by the trainer),
`checkpoints/<step>/params`, and possibly a copy of the tokenizer file
(`tokenizer.model` or `tokenizer.json`). Without that copy the tokenizer is the one the data
preparation step keeps for the config's dataset (echo_jax.data.prepare).
"""

import dataclasses
import importlib.util
import json
import os
import sys
from typing import Any, Optional

import jax
import ml_collections
import numpy as np

from echo_jax.data.prepare import ensure_prepared
from echo_jax.data.tokenizer import Tokenizer, resolve_vocab_size
from echo_jax.errors import MissingInputError, UserError
from echo_jax.models.building import build_model, example_batch
from echo_jax import checkpointing

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")


@dataclasses.dataclass
class Run:
  workdir: str
  config: ml_collections.ConfigDict
  model: Any
  variables: dict
  tokenizer: Any
  step: int
  averaged_steps: tuple = ()  # the checkpoints whose parameters were averaged (load_run average)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config the trainer saved in `workdir` (config.py keeps tuples, else
  config.json)."""
  py_path = os.path.join(workdir, "config.py")
  json_path = os.path.join(workdir, "config.json")
  if os.path.isfile(py_path):
    spec = importlib.util.spec_from_file_location("echo_jax_run_config", py_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ml_collections.ConfigDict(module.get_config())
  if os.path.isfile(json_path):
    with open(json_path, encoding="utf-8") as handle:
      return ml_collections.ConfigDict(json.load(handle))
  raise MissingInputError(f"{workdir!r} has no config.py or config.json; pass the workdir of a "
                          "training run (python -m echo_jax.train --workdir ...)")


def tokenizer_path(workdir: str, config) -> str:
  for name in TOKENIZER_FILES:
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      return path
  return ensure_prepared(config).tokenizer_path


def load_tokenizer(workdir: str, config):
  """The run's tokenizer; config.model.vocab_size is resolved from it (UserError on a mismatch:
  the workdir's tokenizer does not match its model)."""
  tokenizer = Tokenizer.load(tokenizer_path(workdir, config))
  resolve_vocab_size(config, tokenizer)
  return tokenizer


def candidate_steps(workdir: str, step: Optional[int] = None,
                    best_metric: str = checkpointing.BEST_METRIC) -> list:
  """Checkpoint steps to load, in order of preference: `step` alone if given, else the best by
  `best_metric` (the run's train.best_metric) followed by the others, newest first (the
  fallbacks when the best is damaged)."""
  directory = os.path.abspath(checkpointing.checkpoint_dir(workdir))
  if not os.path.isdir(directory):
    raise MissingInputError(f"no checkpoints in {directory!r}; train first or pass the right "
                            "--workdir")
  checkpointer = checkpointing.Checkpointer(directory, keep_last=1, keep_best=0, async_save=False,
                                            best_metric=best_metric)
  try:
    steps = sorted(checkpointer.all_steps(), reverse=True)
    if not steps:
      raise MissingInputError(f"no checkpoints in {directory!r}; train first or pass the right "
                              "--workdir")
    if step is not None:
      if int(step) not in steps:
        raise UserError(f"checkpoint step {step} not in {directory!r}; pick one of "
                        f"{sorted(steps)} with --checkpoint")
      return [int(step)]
    best = checkpointer.best_step()
    first = int(best if best is not None else steps[0])
    return [first] + [s for s in steps if s != first]
  finally:
    checkpointer.close()


def choose_step(workdir: str, step: Optional[int] = None,
                best_metric: str = checkpointing.BEST_METRIC) -> int:
  """`step` if it exists, else the best checkpoint by `best_metric`, else the latest."""
  return candidate_steps(workdir, step, best_metric)[0]


def restore_first_usable(workdir: str, like: Any, steps: list, explicit: bool,
                         warn=None) -> tuple:
  """(step, params) of the first of `steps` that restores. A damaged explicit --checkpoint is a
  one-line user error; a damaged best/latest falls back to the next step with a warning."""
  warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
  for i, chosen in enumerate(steps):
    try:
      checkpointing.Checkpointer.check_committed(
          os.path.join(checkpointing.checkpoint_dir(workdir), str(chosen)))
      mismatch = checkpointing.shape_mismatches(
          os.path.join(checkpointing.checkpoint_dir(workdir), str(chosen), "params"), like)
      if mismatch:
        raise checkpointing.CheckpointMismatchError(
            f"checkpoint step {chosen} in {workdir} does not fit the run's config "
            f"({'; '.join(mismatch)}); was config.py edited after training?")
      return chosen, checkpointing.restore_params(workdir, like, step=chosen)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except - any read failure: damaged
      reason = checkpointing.one_line(e)
      if explicit:
        raise UserError(f"checkpoint step {chosen} in {workdir} does not restore ({reason}); "
                        "pass another --checkpoint or omit it to use the best usable one") from e
      if i + 1 == len(steps):
        raise UserError(f"no checkpoint in {workdir} restores (the last tried, step {chosen}: "
                        f"{reason}); retrain or restore the checkpoints from a copy") from e
      warn(f"checkpoint step {chosen} does not restore ({reason}); using step {steps[i + 1]}")
  raise AssertionError("unreachable: steps is never empty")


def abstract_params(model, config):
  """Parameter shapes/dtypes of `model` (traced, nothing computed): the restore target."""
  batch = example_batch(config, batch_size=1)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  return shapes["params"]


def averaged_steps(workdir: str, count: int, step: Optional[int] = None) -> list:
  """The `count` newest checkpoint steps up to `step` (default: the newest), newest first."""
  if int(count) < 1:
    raise UserError(f"--average={count} is invalid: use 1 (no averaging) or more checkpoints")
  steps = sorted(candidate_steps(workdir), reverse=True)
  if step is not None:
    candidate_steps(workdir, step)  # a step the run does not have: its error
    steps = [s for s in steps if s <= int(step)]
  if len(steps) < int(count):
    raise UserError(f"--average={count}: {workdir} keeps {len(steps)} checkpoint(s) up to step "
                    f"{steps[0]} ({sorted(steps)}); average fewer, or train with more kept "
                    "(config.train.keep_checkpoints)")
  return steps[:int(count)]


def average_params(trees: list) -> Any:
  """Element-wise mean of parameter trees of one structure, accumulated in float32 (a float16
  or bfloat16 parameter keeps its dtype)."""
  def mean(*leaves):
    total = sum(np.asarray(leaf, np.float32) for leaf in leaves)
    return (total / len(leaves)).astype(np.asarray(leaves[0]).dtype)
  return jax.tree_util.tree_map(mean, *trees)


def load_run(workdir: str, step: Optional[int] = None, average: int = 1) -> Run:
  """The run's model and parameters: of `step`, else the best checkpoint by the run's
  train.best_metric (WER for runs saved before it), else the latest;
  with average = K > 1 the mean of the K newest checkpoints (up to `step` when given), the
  checkpoint averaging of speech recipes (ESPnet's average_checkpoints, icefall's --avg)."""
  workdir = os.path.abspath(workdir)  # orbax needs absolute paths
  config = load_config(workdir)
  averaging = int(average) != 1
  # before the tokenizer: a wrong step or count fails fast
  best_metric = str(config.train.get("best_metric", checkpointing.BEST_METRIC))
  steps = (averaged_steps(workdir, average, step) if averaging
           else candidate_steps(workdir, step, best_metric))
  tokenizer = load_tokenizer(workdir, config)
  model = build_model(config)
  like = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                abstract_params(model, config))
  if averaging:
    trees = [restore_first_usable(workdir, like, [s], explicit=True)[1] for s in steps]
    return Run(workdir=workdir, config=config, model=model,
               variables={"params": average_params(trees)}, tokenizer=tokenizer, step=steps[0],
               averaged_steps=tuple(steps))
  chosen, params = restore_first_usable(workdir, like, steps, explicit=step is not None)
  return Run(workdir=workdir, config=config, model=model, variables={"params": params},
             tokenizer=tokenizer, step=chosen)
