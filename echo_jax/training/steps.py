"""The jitted steps over a mesh: train (state donated), eval (teacher-forced sums), greedy and
CTC-greedy generation.

Data parallel with pmap's semantics written as `jax.jit` over a Mesh with one `data` axis: the
global batch is sharded over `data`, the state is placed by its shardings (training.setup), XLA
inserts the gradient all-reduce. The per-step RNG is fold_in(base, step) inside the step.
"""

from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from echo_jax.inference.decoding import ctc_greedy_decode, greedy_decode
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.training import losses
from echo_jax.training import metrics as metrics_lib
from echo_jax.training import edge_silence
from echo_jax.training import frequency_warp
from echo_jax.training import spec_augment
from echo_jax.training.diagnostics_collect import diagnostics_from
from echo_jax.training.setup import TrainState


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule, mesh,
                    shardings: TrainState, with_diagnostics: bool = False,
                    train_config: Optional[ml_collections.ConfigDict] = None,
                    data_config: Optional[ml_collections.ConfigDict] = None) -> Callable:
  """jit-compiled `(state, global_batch) -> (state, step_metrics[, diagnostics])`, state donated.

  The loss is (1 - w) * CE + w * CTC with w = train.ctc_weight: the token cross-entropy (label
  smoothed by train.label_smoothing) summed over the global batch divided by the global count of
  real (non-pad) target tokens, and the CTC loss summed likewise divided by the global label count;
  all in float32. With intermediate CTC layers, CTC is (1 - u) * final + u * the mean of the
  intermediate CTC losses, u = train.intermediate_ctc_weight. Edge silence (train.edge_silence)
  pads utterances with quiet frames and then SpecAugment (train.spec_augment) masks the log-mel
  batch, both first and from the step's RNG; between them train.frequency_warp (VTLP) rescales
  each utterance's frequencies (it reads the mel scale from `data_config`). A step with a
  non-finite loss or gradient leaves the state unchanged and records its step in
  `first_bad_step`; every later step is then a no-op, so the state the host sees is the last good
  one. `train_config` None means plain cross-entropy (no CTC, smoothing or SpecAugment).
  """
  ctc_weight = float(train_config.ctc_weight) if train_config is not None else 0.0
  intermediate_weight = (float(train_config.get("intermediate_ctc_weight", 0.0))
                         if train_config is not None else 0.0)
  smoothing = float(train_config.label_smoothing) if train_config is not None else 0.0
  masking = (train_config.spec_augment if train_config is not None
             and spec_augment.enabled(train_config.spec_augment) else None)
  edges = train_config.get("edge_silence") if train_config is not None else None
  edges = edges if edges is not None and float(edges.probability) > 0 else None
  warping = train_config.get("frequency_warp") if train_config is not None else None
  warping = warping if warping is not None and float(warping.probability) > 0 else None
  if warping is not None:
    if data_config is None:
      raise ValueError("train.frequency_warp needs the features' mel scale: pass data_config")
    centres_hz = frequency_warp.mel_centres_hz(int(data_config.sample_rate),
                                               int(data_config.n_mels), float(data_config.fmin),
                                               float(data_config.fmax))
    nyquist = float(data_config.sample_rate) / 2

  def step_fn(state: TrainState, batch: Dict[str, jax.Array]):
    rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, mask_rng = jax.random.split(rng)
    if edges is not None:
      mel, f0, frames = edge_silence.apply(jax.random.fold_in(mask_rng, 1), batch["mel"],
                                           batch["f0"], batch["num_frames"],
                                           int(edges.max_frames), float(edges.probability))
      batch = {**batch, "mel": mel, "f0": f0, "num_frames": frames}
    if warping is not None:
      mel, _ = frequency_warp.apply(jax.random.fold_in(mask_rng, 2), batch["mel"],
                                    batch["num_frames"], centres_hz, nyquist,
                                    float(warping.max_factor), float(warping.probability))
      batch = {**batch, "mel": mel}
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
        ctc_loss = losses.ctc_loss_per_label(ctc.logits, ctc.valid, targets)
        parts["ctc_loss"] = ctc_loss
        ctc_train = ctc_loss
        if intermediate_weight > 0 and ctc.intermediate_logits:
          parts["intermediate_ctc_loss"] = losses.mean_ctc_loss(ctc.intermediate_logits,
                                                                ctc.valid, targets)
          ctc_train = ((1.0 - intermediate_weight) * ctc_loss
                       + intermediate_weight * parts["intermediate_ctc_loss"])
        loss = (1.0 - ctc_weight) * ce_train + ctc_weight * ctc_train
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
  def generate_fn(params, batch):
    return greedy_decode(model, {"params": params}, batch, max_length)

  return jax.jit(generate_fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))


def make_ctc_generate(model, mesh, param_shardings) -> Callable:
  """jit `(params, global_batch) -> tokens [B, T]`: CTC greedy (best path) transcripts."""
  def ctc_fn(params, batch):
    return ctc_greedy_decode(model, {"params": params}, batch)

  return jax.jit(ctc_fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))
