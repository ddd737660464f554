"""The CTC branch and label smoothing against brute-force references; the CTC head's parameters
and invariances; the joint loss of the train step against its formula."""

import importlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from echo_jax.inference import ctc_best_path
from echo_jax.training import losses
from echo_jax.training import metrics
from echo_jax.parallel import sharding
from echo_jax.training import edge_silence
from echo_jax.training import spec_augment
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from echo_jax.models import EchoModel, count_params, expected_param_count
from echo_jax.models.testing import pad_batch, random_batch, tiny_model_config
from ragged_batches import ragged_batch


def _collapse(path):
  out, previous = [], None
  for token in path:
    if token != previous and token != losses.CTC_BLANK_ID:
      out.append(token)
    previous = token
  return out


def _brute_force_ctc(logits: np.ndarray, labels) -> float:
  """-log of the summed probability of every frame path that collapses to `labels`."""
  log_probs = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), axis=-1), np.float64)
  frames, vocab = log_probs.shape
  total = -np.inf
  for path in itertools.product(range(vocab), repeat=frames):
    if _collapse(path) == list(labels):
      total = np.logaddexp(total, sum(log_probs[t, p] for t, p in enumerate(path)))
  return -total


@pytest.mark.parametrize("labels,frames", [([3, 3], 5), ([4, 3], 4), ([3], 3), ([5, 4, 3], 5)])
def test_ctc_loss_equals_brute_force(labels, frames):
  vocab = 6
  rng = np.random.default_rng(len(labels) * 10 + frames)
  logits = rng.normal(size=(1, frames, vocab)).astype(np.float32)
  # decoder_target_tokens: labels, then EOS, then padding (EOS is not a CTC label).
  targets = np.array([labels + [losses.EOS_ID, 0]], np.int32)
  sums = losses.ctc_sums(jnp.asarray(logits), jnp.ones((1, frames), bool), jnp.asarray(targets))
  assert float(sums["num_labels"]) == len(labels)
  np.testing.assert_allclose(float(sums["ctc_loss_sum"]), _brute_force_ctc(logits[0], labels),
                             rtol=1e-5)


def test_ctc_loss_ignores_padded_frames_and_dropped_rows():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
  targets = np.array([[3, 4, 2, 0], [4, 2, 0, 0]], np.int32)
  valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
  sums = losses.ctc_sums(jnp.asarray(logits), jnp.asarray(valid), jnp.asarray(targets))
  expected = _brute_force_ctc(logits[0, :3], [3, 4]) + _brute_force_ctc(logits[1, :2], [4])
  np.testing.assert_allclose(float(sums["ctc_loss_sum"]), expected, rtol=1e-5)
  dropped = losses.ctc_sums(jnp.asarray(logits), jnp.asarray(valid), jnp.asarray(targets),
                            row_weights=jnp.array([True, False]))
  np.testing.assert_allclose(float(dropped["ctc_loss_sum"]),
                             _brute_force_ctc(logits[0, :3], [3, 4]), rtol=1e-5)
  assert float(dropped["num_labels"]) == 2.0


def test_ctc_greedy_merges_repeats_and_drops_blanks_and_padding():
  best_paths = np.array([[0, 5, 5, 0, 5, 4, 4, 0, 7], [6, 6, 6, 0, 0, 3, 0, 0, 0]])
  valid = np.array([[True] * 8 + [False], [True] * 9])
  logits = np.eye(8, dtype=np.float32)[best_paths] * 10.0
  tokens = np.asarray(ctc_best_path.ctc_greedy_tokens(jnp.asarray(logits), jnp.asarray(valid)))
  np.testing.assert_array_equal(tokens[0], [5, 5, 4, 0, 0, 0, 0, 0, 0])  # frame 8 is padding
  np.testing.assert_array_equal(tokens[1], [6, 3, 0, 0, 0, 0, 0, 0, 0])


def test_label_smoothing_equals_optax_smoothed_cross_entropy():
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(2, 5, 11)).astype(np.float32))
  targets = jnp.asarray(np.array([[4, 5, 6, 2, 0], [7, 2, 0, 0, 0]], np.int32))
  for eps in (0.0, 0.1, 0.3):
    smoothed = optax.smooth_labels(jax.nn.one_hot(targets, 11), eps)
    reference = optax.softmax_cross_entropy(logits, smoothed)
    expected = float(jnp.sum(jnp.where(targets != 0, reference, 0.0)))
    got = float(losses.smoothed_token_loss_sum(logits, targets, eps))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.fixture(scope="module")
def ctc_model():
  cfg = tiny_model_config(ctc_head=True, spectrogram_downsample=2)
  model = EchoModel(cfg)
  batch = random_batch(cfg, [16, 9, 13], [7, 4, 6], 16, 7, seed=2)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  return cfg, model, batch, variables


def test_ctc_head_parameters_are_counted(ctc_model):
  cfg, _, _, variables = ctc_model
  assert "ctc_projection" in variables["params"] and "ctc_norm" in variables["params"]
  assert count_params(variables["params"]) == expected_param_count(cfg)
  without = tiny_model_config(spectrogram_downsample=2)
  assert expected_param_count(cfg) - expected_param_count(without) == 32 + 32 * 24 + 24


def test_ctc_output_ignores_padding_and_other_rows(ctc_model):
  cfg, model, batch, variables = ctc_model
  forward = jax.jit(lambda v, b: model.apply(v, b, method=EchoModel.forward))
  _, ctc = forward(variables, batch)
  _, padded = forward(variables, pad_batch(batch, 24, 9, cfg.hop_length))
  lengths = np.asarray(ctc.valid).sum(axis=1)
  np.testing.assert_array_equal(lengths, [8, 5, 7])  # ceil(frames / 2)
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(np.asarray(padded.logits)[row, :n], np.asarray(ctc.logits)[row, :n],
                               atol=2e-5)
  single = {k: v[1:2] for k, v in batch.items()}
  _, alone = forward(variables, single)
  np.testing.assert_allclose(np.asarray(alone.logits)[0, :5], np.asarray(ctc.logits)[1, :5],
                             atol=2e-5)


def test_ctc_upsample_splits_each_encoder_frame_into_k_ctc_frames(ctc_model):
  """With the k copies of a k=1 head's projection, the k=2 head's logits are the k=1 logits with
  every frame repeated, and so is the validity; the extra parameters are counted."""
  cfg, model, batch, variables = ctc_model
  cfg2 = tiny_model_config(ctc_head=True, spectrogram_downsample=2, ctc_upsample=2)
  model2 = EchoModel(cfg2)
  params = dict(variables["params"])
  head = params["ctc_projection"]
  params["ctc_projection"] = {"kernel": jnp.concatenate([head["kernel"]] * 2, axis=-1),
                              "bias": jnp.concatenate([head["bias"]] * 2, axis=-1)}
  shapes = jax.eval_shape(model2.init, jax.random.PRNGKey(0), batch)["params"]
  assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, params)
  assert expected_param_count(cfg2) - expected_param_count(cfg) == 32 * 24 + 24
  forward = lambda m, p: m.apply({"params": p}, batch, method=EchoModel.forward)[1]
  one, two = forward(model, variables["params"]), forward(model2, params)
  assert two.logits.shape == (3, 2 * one.logits.shape[1], 24)
  np.testing.assert_array_equal(np.asarray(two.valid), np.repeat(np.asarray(one.valid), 2, axis=1))
  np.testing.assert_allclose(np.asarray(two.logits), np.repeat(np.asarray(one.logits), 2, axis=1),
                             atol=2e-5)
  # Two CTC frames per encoder frame: "aa" (needs a blank between) fits where it did not.
  labels = jnp.asarray([[5, 5, 5, 0]])
  def loss(ctc, frames):
    valid = jnp.arange(ctc.logits.shape[1])[None] < frames
    return float(losses.ctc_sums(jnp.zeros_like(ctc.logits[:1]), valid, labels)["ctc_loss_sum"])
  assert loss(one, 4) > 1e4 and loss(two, 8) < 1e3  # 3 repeated labels need 5 frames


def test_model_without_ctc_head_says_how_to_get_one():
  cfg = tiny_model_config()
  model = EchoModel(cfg)
  batch = random_batch(cfg, [8], [3], 8, 4)
  variables = model.init(jax.random.PRNGKey(0), batch)
  logits, ctc = model.apply(variables, batch, method=EchoModel.forward)
  assert ctc is None and logits.shape == (1, 4, 24)
  with pytest.raises(ValueError, match="ctc_head=True"):
    encoded = model.apply(variables, batch, method=EchoModel.encode)
    model.apply(variables, encoded, method=EchoModel.ctc)


def _joint_loss_training(edge_probability: float = 0.0):
  """(config, model, one-device mesh, initial state, its shardings, train step) of the tiny model
  with smoothed CE + CTC and SpecAugment (and edge silence with `edge_probability`). The tests
  without edge silence build the same step, so later ones load the first's compiled program from
  the session's compilation cache."""
  config = importlib.import_module("configs.tiny").get_config()
  config.model.vocab_size = 40
  config.model.ctc_head = True
  t = config.train
  t.ctc_weight, t.label_smoothing = 0.3, 0.1
  t.spec_augment.update(dict(freq_masks=2, freq_mask_bins=8, time_masks=2, time_mask_frames=30,
                             time_mask_max_fraction=0.2))
  t.warmup_steps = 0  # the first step moves the parameters by the full learning rate
  t.eps = 1e-3  # steps proportional to gradients: rounding-level ones stay rounding-level
  t.edge_silence.probability, t.edge_silence.max_frames = edge_probability, 40
  mesh = sharding.make_mesh(jax.devices()[:1])
  run = train_setup.create_training_setup(config, mesh)
  step = steps.make_train_step(run.model, run.tx, run.schedule, mesh, run.shardings,
                               train_config=t)
  return config, run.model, mesh, run.state, run.shardings, step


def _joint_loss(model, params, batch):
  """(0.7 * smoothed CE / tokens + 0.3 * CTC / labels, CTC / labels) of `batch` as the training
  of _joint_loss_training computes them. Dropout is off in the tiny config, so the forward pass is
  deterministic given the batch."""
  logits, ctc = model.apply({"params": params}, batch, train=True, method=EchoModel.forward)
  targets = jnp.asarray(batch["decoder_target_tokens"])
  tokens = float(metrics.token_sums(logits, targets)["num_tokens"])
  ce = float(losses.smoothed_token_loss_sum(logits, targets, 0.1)) / tokens
  ctc_sums = losses.ctc_sums(ctc.logits, ctc.valid, targets)
  ctc_loss = float(ctc_sums["ctc_loss_sum"]) / float(ctc_sums["num_labels"])
  return 0.7 * ce + 0.3 * ctc_loss, ctc_loss


def test_train_step_loss_is_the_weighted_sum_and_spec_augment_only_trains():
  """step loss == (1 - w) * smoothed CE / tokens + w * CTC / labels on the SpecAugmented batch,
  from the step's RNG; the eval step sees the batch unmasked."""
  config, model, mesh, state, shardings, step = _joint_loss_training()
  t = config.train
  params, rng = jax.device_get(state.params), jax.device_get(state.rng)
  batch = ragged_batch(config, 4, 256, 40, 0)
  _, step_metrics = step(state, sharding.global_batch(batch, mesh))

  _, mask_rng = jax.random.split(jax.random.fold_in(rng, 0))
  masked = dict(batch, mel=spec_augment.apply(mask_rng, batch["mel"], batch["num_frames"],
                                              t.spec_augment))
  assert not np.allclose(np.asarray(masked["mel"]), batch["mel"])
  loss, ctc_loss = _joint_loss(model, params, masked)
  np.testing.assert_allclose(float(step_metrics["loss"]), loss, rtol=1e-4)
  np.testing.assert_allclose(float(step_metrics["ctc_loss"]), ctc_loss, rtol=1e-4)
  targets = jnp.asarray(batch["decoder_target_tokens"])

  eval_step = steps.make_eval_step(model, mesh, shardings.params)
  sums = eval_step(jax.device_put(params, shardings.params), sharding.global_batch(batch, mesh))
  plain_logits, plain_ctc = model.apply({"params": params}, batch, method=EchoModel.forward)
  expected = metrics.token_sums(plain_logits, targets)
  np.testing.assert_allclose(float(sums["loss_sum"]), float(expected["loss_sum"]), rtol=1e-4)
  np.testing.assert_allclose(
      float(sums["ctc_loss_sum"]),
      float(losses.ctc_sums(plain_ctc.logits, plain_ctc.valid, targets)["ctc_loss_sum"]),
      rtol=1e-4)


def test_train_step_trains_on_the_edge_padded_batch():
  """With train.edge_silence on, the step's loss is the joint loss of the batch padded with the
  step RNG's quiet frames (then SpecAugmented over its new lengths)."""
  config, model, mesh, state, shardings, step = _joint_loss_training(edge_probability=1.0)
  t = config.train
  params, rng = jax.device_get(state.params), jax.device_get(state.rng)
  batch = ragged_batch(config, 4, 256, 40, 0)
  _, step_metrics = step(state, sharding.global_batch(batch, mesh))

  _, mask_rng = jax.random.split(jax.random.fold_in(rng, 0))
  mel, f0, frames = edge_silence.apply(jax.random.fold_in(mask_rng, 1), batch["mel"], batch["f0"],
                                       batch["num_frames"], 40, 1.0)
  assert np.all(np.asarray(frames) > batch["num_frames"])  # every row of this batch has room
  padded = dict(batch, f0=f0, num_frames=frames,
                mel=spec_augment.apply(mask_rng, mel, frames, t.spec_augment))
  np.testing.assert_allclose(float(step_metrics["loss"]), _joint_loss(model, params, padded)[0],
                             rtol=1e-4)


def test_train_step_is_the_same_at_any_token_padding():
  """Trimming the token padding (data.bucket_target_lengths) changes neither the joint loss
  (smoothed CE + CTC) nor the update: pads are masked everywhere."""
  config, _, mesh, state, shardings, step = _joint_loss_training()
  host_state = jax.device_get(state)
  batch = ragged_batch(config, 4, 256, 40, 3)
  longest = int(np.max(np.sum(batch["decoder_target_tokens"] != 0, axis=1)))
  assert batch["decoder_target_tokens"].shape[1] > longest + 8  # there is padding to trim
  trimmed = dict(batch, decoder_input_tokens=batch["decoder_input_tokens"][:, :longest],
                 decoder_target_tokens=batch["decoder_target_tokens"][:, :longest])
  results = []
  for b in (batch, trimmed):
    new_state, step_metrics = step(jax.device_put(host_state, shardings),
                                   sharding.global_batch(b, mesh))
    results.append(jax.device_get((step_metrics, new_state.params)))
  (padded_metrics, padded_params), (trimmed_metrics, trimmed_params) = results
  moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), padded_params,
                                 host_state.params)
  assert max(jax.tree_util.tree_leaves(moved)) > 1e-4  # the comparison below is not vacuous
  for key in ("loss", "ctc_loss", "num_tokens"):
    np.testing.assert_allclose(float(trimmed_metrics[key]), float(padded_metrics[key]), rtol=1e-6,
                               err_msg=key)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6),
                         trimmed_params, padded_params)
