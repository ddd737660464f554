"""Training and evaluation: `train_and_evaluate(config, workdir)`, the training driver.

Data parallel with pmap's semantics written as `jax.jit` over a Mesh with one `data` axis (the
set-up in training.setup, the jitted steps in training.steps). The state is donated; the host
reads device values only at log, checkpoint and eval points. Evaluation is training.evaluation,
the run directory's files training.run_dir.
"""

import time
from typing import Any, Dict, List, Mapping, Optional

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from echo_jax.config import check as config_check
from echo_jax.data import pipeline
from echo_jax.data.prepare import ensure_prepared
from echo_jax.data.tokenizer import resolve_vocab_size
from echo_jax.parallel import distributed
from echo_jax.parallel import sharding as sharding_lib
from echo_jax import checkpointing
from echo_jax.training import evaluation
from echo_jax.training import metrics as metrics_lib
from echo_jax.training import setup
from echo_jax.training import steps
from echo_jax.training.compiled_step import CompiledPerSignature
from echo_jax.training.diagnostics_dump import DiagnosticsWriter
from echo_jax.training.host import fetch
from echo_jax.training.run_dir import (copy_tokenizer, say, write_nonfinite_dump,
                                       write_resolved_config)


class NonFiniteError(FloatingPointError):
  """Training stopped on a non-finite loss or gradient; a dump was written to the workdir."""


def _prepare_data(config: ml_collections.ConfigDict):
  """Process 0 prepares the data first (others may share its filesystem), then everyone loads."""
  prepared = None
  if jax.process_index() == 0:
    prepared = ensure_prepared(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("echo_jax:data_prepared")
  if prepared is None:
    prepared = ensure_prepared(config)
  return prepared


class _Pending:
  """Per-step device metrics and host bookkeeping since the last flush (no device sync)."""

  def __init__(self):
    self.steps: List[int] = []
    self.metrics: List[Dict[str, jax.Array]] = []
    self.example_index: List[np.ndarray] = []

  def add(self, step: int, step_metrics, example_index) -> None:
    self.steps.append(step)
    self.metrics.append(step_metrics)
    self.example_index.append(example_index)

  def clear(self) -> None:
    self.__init__()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Prepares data if missing, trains (resuming from `workdir`), evaluates, checkpoints.

  Returns a summary: final step, last train loss, last eval metrics, best WER, whether it stopped
  for preemption. Raises NonFiniteError (after writing a dump) on a non-finite loss/gradient.
  """
  distributed.initialize(config.distributed)
  if config.train.compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(config.train.compilation_cache_dir))
  config = ml_collections.ConfigDict(config.to_dict())  # a private, unlocked copy
  config_check.validate_config(config)

  mesh = sharding_lib.make_mesh()
  config_check.validate_batch_sizes(config, mesh.devices.size)
  is_chief = jax.process_index() == 0

  prepared = _prepare_data(config)
  tokenizer = prepared.load_tokenizer()
  resolve_vocab_size(config, tokenizer)
  config_check.validate_config(config)
  write_resolved_config(config, workdir)
  copy_tokenizer(prepared.tokenizer_path, workdir)

  run = setup.create_training_setup(config, mesh)
  model, tx, schedule, shardings, state = run.model, run.tx, run.schedule, run.shardings, run.state
  del run  # restoring replaces the initial state: nothing else may keep it alive
  train_step = CompiledPerSignature(steps.make_train_step(model, tx, schedule, mesh, shardings,
                                                          train_config=config.train,
                                                          data_config=config.data))
  diag_every = int(config.diagnostics.every)
  diag_step = (CompiledPerSignature(steps.make_train_step(
      model, tx, schedule, mesh, shardings, with_diagnostics=True, train_config=config.train,
      data_config=config.data))
               if diag_every > 0 else None)
  # Evaluation compiles ahead of time too: its executables' memory is not piled on top of what
  # the compiler just freed, mid-run, when the first evaluation comes.
  eval_step = CompiledPerSignature(steps.make_eval_step(model, mesh, shardings.params))
  generate = CompiledPerSignature(steps.make_generate(model, mesh, shardings.params,
                                                      int(config.decode.max_length)))
  ctc_generate = (CompiledPerSignature(steps.make_ctc_generate(model, mesh, shardings.params))
                  if config.model.ctc_head else None)

  ckpt = checkpointing.Checkpointer(
      checkpointing.checkpoint_dir(workdir), keep_last=int(config.train.keep_checkpoints),
      keep_best=int(config.train.keep_best),
      best_metric=str(config.train.get("best_metric", checkpointing.BEST_METRIC)))
  pipeline_state = None
  best_wer = float("inf")
  restored = ckpt.restore_newest(state.params, state.resumable(), report=say)
  start = None
  if restored is not None:
    start, params, resumable, pipeline_state = restored
    state = state.replace(params=params, **resumable)
    best_wer = min(ckpt.recorded(checkpointing.BEST_METRIC).values(), default=best_wer)
    say(f"resumed from step {start} in {ckpt.directory}")
  elif config.init_from:
    params = checkpointing.restore_params(str(config.init_from), state.params)
    state = state.replace(params=params)
    say(f"initialised params from {config.init_from}")
  start = int(start or 0)

  train_iter = pipeline.make_train_iterator(config, prepared, jax.process_index(),
                                            jax.process_count(), state=pipeline_state)
  writer = metrics_lib.MetricsWriter(workdir, enabled=is_chief)
  diag_writer = None
  if diag_step is not None:
    diag_writer = DiagnosticsWriter(workdir)  # every process calls write; process 0 writes
  num_steps = int(config.train.num_steps)
  log_every = max(int(config.train.log_every), 1)
  ckpt_every = max(int(config.train.checkpoint_every), 1)
  eval_every = int(config.eval.every)
  bar = metrics_lib.ProgressBar(num_steps, start, enabled=is_chief)
  watcher = checkpointing.PreemptionWatcher()
  pending = _Pending()
  summary: Dict[str, Any] = {"preempted": False, "eval": None}
  last_logged_step = start
  last_saved_step = start if start > 0 else None

  def flush() -> None:
    """Reads the pending step metrics (one device sync), logs them, stops on non-finite."""
    nonlocal last_logged_step
    if not pending.steps:
      return
    fetched = fetch(pending.metrics)
    for step, step_metrics, ids in zip(pending.steps, fetched, pending.example_index):
      if not bool(step_metrics["finite"]):
        path = write_nonfinite_dump(workdir, step, step_metrics, ids, ckpt.latest_step())
        ckpt.close()
        writer.close()
        bar.close()
        raise NonFiniteError(
            f"non-finite loss/gradient at step {step} (loss={float(step_metrics['loss'])}, "
            f"grad_norm={float(step_metrics['grad_norm'])}); dump: {path}; the last good "
            f"checkpoint is step {ckpt.latest_step()} in {ckpt.directory}.")
    losses = [float(m["loss"]) for m in fetched]
    last = fetched[-1]
    end_step = pending.steps[-1] + 1
    fps = bar.update(end_step - last_logged_step, losses[-1], float(last["learning_rate"]))
    record = {"loss": metrics_lib.host_mean(losses),
              "accuracy": metrics_lib.host_mean([float(m["accuracy"]) for m in fetched]),
              "grad_norm": metrics_lib.host_mean([float(m["grad_norm"]) for m in fetched]),
              "learning_rate": float(last["learning_rate"]),
              "frames_per_second": fps}
    for part in ("ce_loss", "ctc_loss"):
      if part in last:
        record[part] = metrics_lib.host_mean([float(m[part]) for m in fetched])
    writer.write(end_step, record, prefix="train/")
    summary["train_loss"] = losses[-1]
    last_logged_step = end_step
    pending.clear()

  def save(step: int, eval_metrics: Optional[Mapping[str, float]] = None) -> None:
    nonlocal last_saved_step
    flush()  # never save a state that followed a non-finite step
    recorded = {name: float(eval_metrics[name]) for name in config_check.BEST_METRICS
                if eval_metrics is not None and name in eval_metrics
                and np.isfinite(eval_metrics[name])}
    ckpt.save(step, state.params, state.resumable(), train_iter.get_state(),
              metrics=recorded or None)
    last_saved_step = step

  def run_eval(step: int) -> Dict[str, Any]:
    nonlocal best_wer
    flush()
    started = time.perf_counter()
    batches = pipeline.make_eval_batches(config, str(config.eval.split), jax.process_index(),
                                         jax.process_count())
    result = evaluation.evaluate(config, state.params, eval_step, generate, mesh, tokenizer,
                                 batches, ctc_generate)
    if "wer" in result and np.isfinite(result["wer"]):
      best_wer = min(best_wer, result["wer"])
      result["best_wer"] = best_wer
    result["seconds"] = time.perf_counter() - started
    examples = result.pop("examples", [])
    writer.write(step, result, prefix="eval/")
    bar.write(f"eval @ {step}: " + ", ".join(
        f"{k}={v:.4f}" for k, v in result.items() if isinstance(v, float)))
    for example in examples:
      bar.write(f"  ref: {example['reference']}\n  hyp: {example['hypothesis']}")
    summary["eval"] = result
    return result

  step = start
  try:
    while step < num_steps:
      local_batch = next(train_iter)
      device_batch, host = sharding_lib.split_host_batch(local_batch)
      bar.add_frames(int(np.sum(device_batch["num_frames"])) * jax.process_count())
      batch = sharding_lib.global_batch(device_batch, mesh)
      if diag_step is not None and step % diag_every == 0:
        state, step_metrics, diagnostics = diag_step(state, batch)
        diag_writer.write(step, diagnostics)
      else:
        state, step_metrics = train_step(state, batch)
      pending.add(step, step_metrics, host.get("example_index", np.zeros([0], np.int64)))
      step += 1
      if step % log_every == 0:
        flush()
      if step == num_steps:
        break  # the final eval + checkpoint follow the loop
      eval_metrics = None
      if eval_every > 0 and step % eval_every == 0:
        eval_metrics = run_eval(step)
      if step % ckpt_every == 0 or eval_metrics is not None:
        save(step, eval_metrics)
      if watcher.should_stop(step):
        if last_saved_step != step:
          save(step)
        summary["preempted"] = True
        say(f"preemption signal: saved step {step}, exiting")
        break
    if not summary["preempted"]:
      flush()
      final_eval = eval_every > 0  # eval.every = 0 turns evaluation off entirely
      if last_saved_step != num_steps:
        save(num_steps, run_eval(num_steps) if final_eval else None)
      elif final_eval and summary["eval"] is None:
        run_eval(num_steps)  # resumed a finished run: report its numbers again
  finally:
    watcher.close()
  ckpt.close()
  writer.close()
  if diag_writer is not None:
    diag_writer.close()
  bar.close()
  summary["step"] = step
  summary["best_wer"] = best_wer
  summary["compiles"] = {"train_step": train_step.num_compiled()}
  return summary
