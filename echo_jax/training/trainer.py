"""Training and evaluation: `train_and_evaluate(config, workdir)`.

Data parallel with pmap's semantics written as `jax.jit` over a Mesh with one `data` axis: the
global batch is sharded over `data`, the train state is placed by the param-sharding rule
(replicated by default), XLA inserts the gradient all-reduce. The state is donated; the per-step
RNG is fold_in(base, step) inside the step; the host reads device values only at log, checkpoint
and eval points.
"""

import filecmp
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from echo_jax.training import checkpointing
from echo_jax.config import check as config_check
from echo_jax.parallel import distributed
from echo_jax import errors
from echo_jax.training import losses
from echo_jax.training import metrics as metrics_lib
from echo_jax.training import optim
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.training import spec_augment

from echo_jax.token_ids import BOS_ID, EOS_ID, PAD_ID


class NonFiniteError(FloatingPointError):
  """Training stopped on a non-finite loss or gradient; a dump was written to the workdir."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: number of completed steps
  params: Any
  opt_state: Any
  rng: jax.Array             # base PRNG key (raw uint32); step s uses fold_in(rng, s)
  first_bad_step: jax.Array  # int32 scalar: first step with a non-finite loss/grad, -1 if none

  def resumable(self) -> Dict[str, Any]:
    """What a checkpoint stores besides the params."""
    return {"step": self.step, "opt_state": self.opt_state, "rng": self.rng}


# ----------------------------------------------------------------------------------------------
# Model, batches, state.


def build_model(config: ml_collections.ConfigDict):
  from echo_jax.models import EchoModel
  return EchoModel(config=config.model)


def example_batch(config: ml_collections.ConfigDict, batch_size: int,
                  frames: Optional[int] = None) -> Dict[str, np.ndarray]:
  """A zero batch in the documented batch format (shapes only matter: used to init the model)."""
  frames = int(frames or config.data.bucket_frames[0])
  length = int(config.data.max_target_length)
  batch = {
      "mel": np.zeros([batch_size, frames, int(config.model.n_mels)], np.float32),
      "f0": np.zeros([batch_size, frames], np.float32),
      "num_frames": np.full([batch_size], frames, np.int32),
      "decoder_input_tokens": np.zeros([batch_size, length], np.int32),
      "decoder_target_tokens": np.zeros([batch_size, length], np.int32),
      "valid": np.ones([batch_size], bool),
  }
  batch["decoder_input_tokens"][:, 0] = BOS_ID
  if "waveform" in tuple(config.model.features):
    samples = frames * int(config.data.hop_length)
    batch["waveform"] = np.zeros([batch_size, samples], np.float32)
    batch["num_samples"] = np.full([batch_size], samples, np.int32)
  return batch


def state_shardings(abstract_state: TrainState, mesh, tx: optax.GradientTransformation,
                    mode: str) -> TrainState:
  """NamedShardings for every leaf of the train state under param-sharding rule `mode`.

  Optimizer moments follow their parameter's sharding; counters and the RNG are replicated.
  """
  rep = sharding_lib.replicated(mesh)
  params = sharding_lib.param_shardings(mesh, abstract_state.params, mode)
  opt_state = optax.tree_map_params(
      tx, lambda _, s: s, abstract_state.opt_state, params,
      transform_non_params=lambda _: rep)
  return TrainState(step=rep, params=params, opt_state=opt_state, rng=rep, first_bad_step=rep)


def create_train_state(model, tx: optax.GradientTransformation, config: ml_collections.ConfigDict,
                       mesh) -> Tuple[TrainState, TrainState]:
  """(state, its shardings): params from `model.init`, fresh optimizer state, base RNG."""
  batch = example_batch(config, 1)

  def init(seed_key):
    init_key, base_key = jax.random.split(seed_key)
    params = model.init(init_key, batch)["params"]
    return TrainState(step=jnp.zeros([], jnp.int32), params=params, opt_state=tx.init(params),
                      rng=base_key, first_bad_step=jnp.full([], -1, jnp.int32))

  seed_key = jax.random.PRNGKey(int(config.train.seed))
  abstract = jax.eval_shape(init, seed_key)
  shardings = state_shardings(abstract, mesh, tx, str(config.train.param_sharding))
  state = jax.jit(init, out_shardings=shardings)(seed_key)
  return state, shardings


# ----------------------------------------------------------------------------------------------
# Steps.


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule, mesh,
                    shardings: TrainState, with_diagnostics: bool = False,
                    train_config: Optional[ml_collections.ConfigDict] = None) -> Callable:
  """jit-compiled `(state, global_batch) -> (state, step_metrics[, diagnostics])`, state donated.

  The loss is (1 - w) * CE + w * CTC with w = train.ctc_weight: the token cross-entropy (label
  smoothed by train.label_smoothing) summed over the global batch divided by the global count of
  real (non-pad) target tokens, and the CTC loss summed likewise divided by the global label count;
  all in float32. SpecAugment (train.spec_augment) masks the log-mel batch first, from the step's
  RNG. A step with a non-finite loss or gradient leaves the state unchanged and records its step in
  `first_bad_step`; every later step is then a no-op, so the state the host sees is the last good
  one. `train_config` None means plain cross-entropy (no CTC, smoothing or SpecAugment).
  """
  ctc_weight = float(train_config.ctc_weight) if train_config is not None else 0.0
  smoothing = float(train_config.label_smoothing) if train_config is not None else 0.0
  masking = (train_config.spec_augment if train_config is not None
             and spec_augment.enabled(train_config.spec_augment) else None)

  def step_fn(state: TrainState, batch: Dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, mask_rng = jax.random.split(rng)
    if masking is not None:
      batch = {**batch, "mel": spec_augment.apply(mask_rng, batch["mel"], batch["num_frames"],
                                                  masking)}

    def loss_fn(params):
      kwargs = {"train": True, "rngs": {"dropout": dropout_rng}, "method": type(model).forward}
      if with_diagnostics:
        (logits, ctc), mutated = model.apply({"params": params}, batch, mutable=["intermediates"],
                                             **kwargs)
        intermediates = mutated.get("intermediates", {})
      else:
        logits, ctc = model.apply({"params": params}, batch, **kwargs)
        intermediates = None
      targets = batch["decoder_target_tokens"]
      sums = metrics_lib.token_sums(logits, targets)
      num_tokens = jnp.maximum(sums["num_tokens"], 1.0)
      ce = sums["loss_sum"] / num_tokens
      if smoothing > 0:
        ce_train = losses.smoothed_token_loss_sum(logits, targets, smoothing) / num_tokens
      else:
        ce_train = ce
      parts = {"ce_loss": ce}
      loss = ce_train
      if ctc_weight > 0:
        ctc_sums = losses.ctc_sums(ctc.logits, ctc.valid, targets)
        ctc_loss = ctc_sums["ctc_loss_sum"] / jnp.maximum(ctc_sums["num_labels"], 1.0)
        parts["ctc_loss"] = ctc_loss
        loss = (1.0 - ctc_weight) * ce_train + ctc_weight * ctc_loss
      return loss, (sums, parts, intermediates)

    (loss, (sums, parts, intermediates)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    grad_norm = optax.tree.norm(grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)

    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    healthy = state.first_bad_step < 0
    commit = finite & healthy

    def keep_good(new, old):
      return jax.tree.map(lambda n, o: jnp.where(commit, n, o), new, old)

    new_state = state.replace(
        step=state.step + 1,
        params=keep_good(new_params, state.params),
        opt_state=keep_good(new_opt_state, state.opt_state),
        first_bad_step=jnp.where(healthy & ~finite, state.step, state.first_bad_step))
    step_metrics = {
        "loss": loss,
        **parts,
        "grad_norm": grad_norm,
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        "num_tokens": sums["num_tokens"],
        "accuracy": sums["num_correct"] / jnp.maximum(sums["num_tokens"], 1.0),
        "finite": finite,
        "nonfinite_grads": jax.tree.map(lambda g: ~jnp.all(jnp.isfinite(g)), grads),
    }
    if with_diagnostics:
      from echo_jax.diagnostics.collect import diagnostics_from
      diagnostics = diagnostics_from(grads, state.params, updates, intermediates, batch)
      return new_state, step_metrics, diagnostics
    return new_state, step_metrics

  rep = sharding_lib.replicated(mesh)
  out_shardings = (shardings, rep, rep) if with_diagnostics else (shardings, rep)
  return jax.jit(step_fn, in_shardings=(shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=out_shardings, donate_argnums=(0,))


def make_eval_step(model, mesh, param_shardings) -> Callable:
  """jit `(params, global_batch) -> {loss_sum, num_tokens, num_correct[, ctc_loss_sum,
  num_labels]}` (teacher forced; the CTC sums when the model has a CTC head)."""
  def eval_fn(params, batch):
    logits, ctc = model.apply({"params": params}, batch, method=type(model).forward)
    sums = metrics_lib.token_sums(logits, batch["decoder_target_tokens"], batch.get("valid"))
    if ctc is not None:
      sums.update(losses.ctc_sums(ctc.logits, ctc.valid, batch["decoder_target_tokens"],
                                  batch.get("valid")))
    return sums

  return jax.jit(eval_fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def make_generate(model, mesh, param_shardings, max_length: int) -> Callable:
  """jit `(params, global_batch) -> tokens [B, max_length]` by greedy decoding to EOS."""
  from echo_jax.inference.decoding import greedy_decode

  def generate_fn(params, batch):
    return greedy_decode(model, {"params": params}, batch, max_length)

  return jax.jit(generate_fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))


def make_ctc_generate(model, mesh, param_shardings) -> Callable:
  """jit `(params, global_batch) -> tokens [B, T]`: CTC greedy (best path) transcripts."""
  from echo_jax.inference.decoding import ctc_greedy_decode

  def ctc_fn(params, batch):
    return ctc_greedy_decode(model, {"params": params}, batch)

  return jax.jit(ctc_fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))


# ----------------------------------------------------------------------------------------------
# Host-side helpers.


def ids_to_text(tokenizer, ids: np.ndarray) -> str:
  """Token ids up to the first EOS/pad (BOS dropped) -> text."""
  out = []
  for token in np.asarray(ids).tolist():
    if token in (EOS_ID, PAD_ID):
      break
    if token != BOS_ID:
      out.append(int(token))
  return tokenizer.decode(out)


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


def evaluate(config: ml_collections.ConfigDict, params, eval_step, generate, mesh, tokenizer,
             batches, ctc_generate: Optional[Callable] = None) -> Dict[str, float]:
  """Validation loss, teacher-forced token accuracy and (if enabled) WER/CER of greedy decoding;
  with `ctc_generate`, also the CTC loss and the WER/CER of CTC greedy decoding (ctc_wer, ctc_cer)."""
  totals = None
  references: List[str] = []
  hypotheses: List[str] = []
  ctc_hypotheses: List[str] = []
  examples = 0
  for local_batch in batches:
    device_batch, _ = sharding_lib.split_host_batch(local_batch)
    batch = sharding_lib.global_batch(device_batch, mesh)
    sums = eval_step(params, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    valid = to_host(batch["valid"]).astype(bool)
    examples += int(valid.sum())
    if config.eval.generate:
      tokens = to_host(generate(params, batch))
      targets = to_host(batch["decoder_target_tokens"])
      ctc_tokens = to_host(ctc_generate(params, batch)) if ctc_generate is not None else None
      for row in np.nonzero(valid)[0]:
        references.append(ids_to_text(tokenizer, targets[row]))
        hypotheses.append(ids_to_text(tokenizer, tokens[row]))
        if ctc_tokens is not None:
          ctc_hypotheses.append(ids_to_text(tokenizer, ctc_tokens[row]))
  if totals is None:
    raise ValueError(f"eval split {config.eval.split!r} produced no batches; check "
                     "config.eval.split and the prepared data.")
  totals = fetch(totals)
  count = max(float(totals["num_tokens"]), 1.0)
  result = {"loss": float(totals["loss_sum"]) / count,
            "token_accuracy": float(totals["num_correct"]) / count,
            "num_examples": float(examples)}
  if "ctc_loss_sum" in totals:
    result["ctc_loss"] = float(totals["ctc_loss_sum"]) / max(float(totals["num_labels"]), 1.0)
  if config.eval.generate:
    result.update(metrics_lib.error_rates(references, hypotheses))
    if ctc_hypotheses:
      result.update({f"ctc_{k}": v
                     for k, v in metrics_lib.error_rates(references, ctc_hypotheses).items()})
    result["examples"] = [{"reference": r, "hypothesis": h}
                          for r, h in list(zip(references, hypotheses))[:3]]
  return result


def say(message: str) -> None:
  """A console line from process 0 (library logs stay at WARNING; see train.py)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def write_resolved_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  if jax.process_index() != 0:
    return
  metrics_lib.make_dirs(workdir)
  with metrics_lib.open_file(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  with metrics_lib.open_file(os.path.join(workdir, "config.py"), "w") as f:
    f.write('"""Resolved config of this run."""\n\nimport ml_collections\n\n\n'
            f"def get_config():\n  return ml_collections.ConfigDict({config.to_dict()!r})\n")


def copy_tokenizer(tokenizer_path: str, workdir: str) -> None:
  """Keeps the run's tokenizer beside its checkpoints (tokenizer.model / tokenizer.json), so
  transcribe and evaluate need neither the prepared data nor its location."""
  if jax.process_index() != 0:
    return
  suffix = ".json" if tokenizer_path.endswith(".json") else ".model"
  target = os.path.join(workdir, "tokenizer" + suffix)
  if metrics_lib.is_remote(target):
    import tensorflow as tf  # only needed for remote workdirs
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


# ----------------------------------------------------------------------------------------------
# The job.


def _prepare_data(config: ml_collections.ConfigDict):
  """Process 0 prepares the data first (others may share its filesystem), then everyone loads."""
  from echo_jax.data.prepare import ensure_prepared
  prepared = None
  if jax.process_index() == 0:
    prepared = ensure_prepared(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("echo_jax:data_prepared")
  if prepared is None:
    prepared = ensure_prepared(config)
  return prepared


def _resolve_vocab(config: ml_collections.ConfigDict, tokenizer) -> None:
  vocab = int(tokenizer.vocab_size)
  if int(config.model.vocab_size) not in (-1, vocab):
    raise config_check.ConfigError(
        f"config.model.vocab_size={config.model.vocab_size} is invalid: the tokenizer has {vocab} "
        "ids; leave it at -1 to take the tokenizer's.")
  config.model.vocab_size = vocab


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

  from echo_jax.data import pipeline
  prepared = _prepare_data(config)
  tokenizer = prepared.load_tokenizer()
  _resolve_vocab(config, tokenizer)
  config_check.validate_config(config)
  write_resolved_config(config, workdir)
  copy_tokenizer(prepared.tokenizer_path, workdir)

  model = build_model(config)
  tx = optim.make_optimizer(config.train)
  schedule = optim.learning_rate_schedule(config.train)
  state, shardings = create_train_state(model, tx, config, mesh)
  train_step = make_train_step(model, tx, schedule, mesh, shardings, train_config=config.train)
  diag_every = int(config.diagnostics.every)
  diag_step = (make_train_step(model, tx, schedule, mesh, shardings, with_diagnostics=True,
                               train_config=config.train)
               if diag_every > 0 else None)
  eval_step = make_eval_step(model, mesh, shardings.params)
  generate = make_generate(model, mesh, shardings.params, int(config.decode.max_length))
  ctc_generate = (make_ctc_generate(model, mesh, shardings.params)
                  if config.model.ctc_head else None)

  ckpt = checkpointing.Checkpointer(
      checkpointing.checkpoint_dir(workdir), keep_last=int(config.train.keep_checkpoints),
      keep_best=int(config.train.keep_best))
  pipeline_state = None
  best_wer = float("inf")
  restored = ckpt.restore_newest(state.params, state.resumable(), report=say)
  start = None
  if restored is not None:
    start, params, resumable, pipeline_state = restored
    state = state.replace(params=params, **resumable)
    best = ckpt.best_step()
    best_metrics = ckpt.metrics(best) if best is not None else None
    if best_metrics and checkpointing.BEST_METRIC in best_metrics:
      best_wer = float(best_metrics[checkpointing.BEST_METRIC])
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
    from echo_jax.diagnostics.dump import DiagnosticsWriter
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
    wer = None if eval_metrics is None else eval_metrics.get("wer")
    ckpt.save(step, state.params, state.resumable(), train_iter.get_state(),
              metrics={checkpointing.BEST_METRIC: float(wer)} if wer is not None else None)
    last_saved_step = step

  def run_eval(step: int) -> Dict[str, Any]:
    nonlocal best_wer
    flush()
    started = time.perf_counter()
    batches = pipeline.make_eval_batches(config, str(config.eval.split), jax.process_index(),
                                         jax.process_count())
    result = evaluate(config, state.params, eval_step, generate, mesh, tokenizer, batches,
                      ctc_generate)
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
  summary["compiles"] = {"train_step": train_step._cache_size()}  # pylint: disable=protected-access
  return summary
