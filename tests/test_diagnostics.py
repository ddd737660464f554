"""In-step diagnostics on a fixed tiny model and batch: the dumped numbers equal the same
quantities computed directly (jax.grad, optax, model intermediates) outside the train step, and
training with diagnostics enabled reaches the same parameters as training without."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from echo_jax.training import metrics
from echo_jax.training import optim
from echo_jax.parallel import sharding
from echo_jax.models import building
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from echo_jax.training import diagnostics_dump as dump
from echo_jax.training import diagnostics_naming as naming
from echo_jax.models import pitch, rotary

VOCAB = 40
FRAMES = 64
TOKENS = 16
BATCH = 8


def _batch(config, seed):
  """Ragged audio and text, some unvoiced frames, one utterance with no voiced frame at all."""
  rng = np.random.default_rng(seed)
  batch = building.example_batch(config, BATCH, FRAMES)
  num_frames = rng.integers(FRAMES // 3, FRAMES + 1, size=BATCH).astype(np.int32)
  valid = np.arange(FRAMES)[None, :] < num_frames[:, None]
  batch["num_frames"] = num_frames
  batch["mel"] = (rng.normal(size=batch["mel"].shape) * valid[..., None]).astype(np.float32)
  voiced = valid & (rng.random((BATCH, FRAMES)) < 0.6)
  voiced[3] = False
  f0 = rng.uniform(80, 300, size=(BATCH, 1)) * (1 + 0.05 * rng.normal(size=(BATCH, FRAMES)))
  batch["f0"] = np.where(voiced, f0, 0.0).astype(np.float32)
  batch["decoder_input_tokens"][:] = 0
  batch["decoder_target_tokens"][:] = 0
  for row in range(BATCH):
    n = int(rng.integers(2, TOKENS - 1))
    ids = rng.integers(4, VOCAB, size=n)
    batch["decoder_target_tokens"][row, :n + 1] = np.append(ids, 2)
    batch["decoder_input_tokens"][row, :n + 1] = np.append(1, ids)
  return batch


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  config = importlib.import_module("configs.tiny").get_config()
  config.model.vocab_size = VOCAB
  config.data.bucket_frames = (FRAMES,)
  config.data.max_target_length = TOKENS
  config.train.warmup_steps = 1
  # The diagnostics step is another program, which XLA may fuse and round differently. With the
  # default eps (1e-9) AdamW moves a parameter by about the learning rate whatever the size of
  # its gradient, so a rounding-level gradient (attention keys at init) would differ by up to
  # that; with eps 1e-3 a step is proportional to small gradients and the parameters compare at
  # rounding level.
  config.train.eps = 1e-3
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  schedule = optim.learning_rate_schedule(config.train)
  mesh = sharding.make_mesh(jax.devices()[:2])  # data parallel, yet cheap to compile
  state, shardings = train_setup.create_train_state(model, tx, config, mesh)
  plain_step = steps.make_train_step(model, tx, schedule, mesh, shardings)
  diag_step = steps.make_train_step(model, tx, schedule, mesh, shardings, with_diagnostics=True)
  batches = [_batch(config, seed) for seed in range(3)]
  params0, opt0 = jax.device_get((state.params, state.opt_state))

  # Run A: diagnostics at steps 0 and 2 (config.diagnostics.every = 2), dumped to disk.
  workdir = str(tmp_path_factory.mktemp("diag_run"))
  writer = dump.DiagnosticsWriter(workdir)
  state_a = jax.tree.map(lambda x: x.copy(), state)
  for step, batch in enumerate(batches):
    global_batch = sharding.global_batch(batch, mesh)
    if step % 2 == 0:
      state_a, _, diagnostics = diag_step(state_a, global_batch)
      writer.write(step, diagnostics)
    else:
      state_a, _ = plain_step(state_a, global_batch)
  writer.close()
  # Run B: the plain step only.
  state_b = state
  for batch in batches:
    state_b, _ = plain_step(state_b, sharding.global_batch(batch, mesh))
  return {"config": config, "model": model, "tx": tx, "batch": batches[0], "params0": params0,
          "opt0": opt0, "dumps": dump.load_run(workdir), "params_a": jax.device_get(state_a.params),
          "params_b": jax.device_get(state_b.params)}


@pytest.fixture(scope="module")
def direct(run):
  """The same quantities for step 0, computed outside the step on one device."""
  model, params = run["model"], run["params0"]
  batch = {k: v for k, v in run["batch"].items() if k != "example_index"}

  def loss_fn(p):
    logits, mutated = model.apply({"params": p}, batch, mutable=["intermediates"])
    return metrics.mean_token_loss(logits, batch["decoder_target_tokens"]), mutated

  @jax.jit
  def grads_and_updates(params, opt_state):
    (_, mutated), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, _ = run["tx"].update(grads, opt_state, params)
    return grads, updates, mutated

  grads, updates, mutated = grads_and_updates(params, run["opt0"])
  return {"grads": jax.device_get(grads), "updates": jax.device_get(updates),
          "intermediates": jax.device_get(mutated["intermediates"])}


def _by_name(tree):
  return {naming.dotted(naming.path_names(p)): np.asarray(v, np.float64)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_gradient_and_norm_numbers_equal_direct_computation(run, direct):
  dumped = run["dumps"][0]
  grads, updates = _by_name(direct["grads"]), _by_name(direct["updates"])
  params = _by_name(run["params0"])
  assert len(grads) > 50
  for name, g in grads.items():
    np.testing.assert_allclose(dumped[f"grad_mean_abs/{name}"], np.mean(np.abs(g)),
                               rtol=2e-4, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(dumped[f"param_norm/{name}"], np.linalg.norm(params[name]),
                               rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(dumped[f"update_norm/{name}"], np.linalg.norm(updates[name]),
                               rtol=2e-3, atol=1e-9, err_msg=name)
  np.testing.assert_allclose(dumped["global_norm/grad"], optax.tree.norm(direct["grads"]),
                             rtol=2e-4)


def test_seed_components_are_the_hooked_weights(run, direct):
  dumped = run["dumps"][0]
  g = direct["grads"]
  enc, dec = g["encoder"], g["decoder"]
  expected = {
      "seed/Q/encoder.blocks.spectrogram.1.attna": enc["blocks_spectrogram_0"]["attna"]["q"]["kernel"],
      "seed/O/decoder._blocks.0.attna": dec["_blocks_0"]["attna"]["o"]["kernel"],
      "seed/K/decoder.blocks.spectrogram.0.attnb": dec["blocks_spectrogram_0"]["attnb"]["k"]["kernel"],
      "seed/MLP/decoder._blocks.0.mlp": dec["_blocks_0"]["mlp"]["fc1"]["kernel"],
      "seed/GATE/encoder.blocks.spectrogram.1.mlp_gate":
          enc["blocks_spectrogram_0"]["mlp_gate"]["kernel"],
      "seed/LN/decoder.blocks.spectrogram.0.ln_b": dec["blocks_spectrogram_0"]["lnb"]["scale"],
      "seed/BLEND/decoder.blocks.spectrogram.0.blend": dec["blocks_spectrogram_0"]["blend"],
      "seed/ENCODER/encoder.blocks.spectrogram.0.conv3":
          enc["frontend_spectrogram"]["conv3"]["kernel"],
  }
  for key, grad in expected.items():
    np.testing.assert_allclose(dumped[key], np.mean(np.abs(grad)), rtol=2e-4, err_msg=key)
  # One sample per hooked tensor, as the seed: 4 attention modules, 3 blocks, 7 norms, 3 convs.
  counts = {c: sum(k.startswith(f"seed/{c}/") for k in dumped) for c in naming.COMPONENTS}
  assert counts == {"Q": 4, "K": 4, "V": 4, "O": 4, "MLP": 3, "GATE": 3, "LN": 7, "ENCODER": 3,
                    "BLEND": 1}
  q_values = [v for k, v in dumped.items() if k.startswith("seed/Q/")]
  np.testing.assert_allclose(dumped["group_grad_mean_abs/q"], np.mean(q_values), rtol=1e-6)


def _valid_positions(name, array, batch):
  """Independent masks: encoder frames ceil(n / 4) (spectrogram_downsample 4), decoder tokens."""
  if name.startswith("decoder"):
    return batch["decoder_target_tokens"] != 0
  frames = -(-batch["num_frames"] // 4)
  return np.arange(array.shape[1])[None, :] < frames[:, None]


def test_activation_statistics_equal_direct_computation(run, direct):
  dumped, batch = run["dumps"][0], run["batch"]
  acts = {}
  for path, value in jax.tree_util.tree_flatten_with_path(direct["intermediates"])[0]:
    names = naming.path_names(path)[:-1]  # drop sow's tuple index
    acts[naming.dotted(names)] = np.asarray(value, np.float64)
  checked = 0
  for name, a in acts.items():
    if name.rsplit(".", 1)[-1] not in ("attention_output", "mlp_activation", "gate_activation",
                                       "residual_output", "final_output"):
      continue
    mask = _valid_positions(name, a, batch)
    selected = np.abs(a[mask])
    np.testing.assert_allclose(dumped[f"activation_mean_abs/{name}"], selected.mean(),
                               rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(dumped[f"activation_sparsity/{name}"], (selected < 0.01).mean(),
                               atol=2.0 / selected.size, err_msg=name)
    checked += 1
  # 4 attention outputs + 3 blocks x (mlp, gate, residual) + final output.
  assert checked == 4 + 9 + 1


def test_per_utterance_theta_and_f0(run):
  dumped, batch, model_cfg = run["dumps"][0], run["batch"], run["config"].model
  voiced = (batch["f0"] > 0) & (np.arange(FRAMES)[None, :] < batch["num_frames"][:, None])
  f0_mean = np.where(voiced.any(1), (batch["f0"] * voiced).sum(1) / np.maximum(voiced.sum(1), 1), 0)
  np.testing.assert_allclose(dumped["f0_mean_voiced"], f0_mean, rtol=1e-5)
  assert dumped["f0_mean_voiced"][3] == 0.0
  # The spec's theta: 10000 + 9200 * ln(1 + f0/700) / ln(1 + 300/700); 10000 when unvoiced.
  pf = np.log1p(f0_mean / 700.0) / np.log1p(300.0 / 700.0)
  assert model_cfg.theta_mode == "seed" and model_cfg.theta == 10000.0
  np.testing.assert_allclose(dumped["rotary_theta/model"], 10000.0 + 9200.0 * pf, rtol=1e-5)
  np.testing.assert_allclose(
      dumped["rotary_theta/model"],
      rotary.utterance_theta(pitch.f0_mean(jnp.asarray(batch["f0"]), batch["num_frames"],
                                           "utt_voiced"), "seed", 10000.0), rtol=1e-6)


def test_training_with_diagnostics_reaches_the_same_parameters(run):
  a, b = _by_name(run["params_a"]), _by_name(run["params_b"])
  assert a.keys() == b.keys()
  moved = 0
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7, err_msg=name)
    moved += not np.allclose(a[name], _by_name(run["params0"])[name])
  assert moved > len(a) // 2  # three real updates happened


def test_dumps_hold_the_dumped_steps_only(run):
  assert sorted(run["dumps"]) == [0, 2]
  d0, d2 = run["dumps"][0], run["dumps"][2]
  assert d0.keys() == d2.keys()
  assert not np.allclose(d0["global_norm/param"], d2["global_norm/param"])


@pytest.mark.parametrize("downsample", [1, 2, 4])
def test_encoder_activation_mask_matches_the_models_valid_frames(downsample):
  """Activation statistics pool exactly the model's valid frames of a downsampled stream."""
  from echo_jax.training import diagnostics_collect as collect
  num_frames = np.array([64, 37, 5, 1], np.int32)
  length = -(-FRAMES // downsample)
  batch = {"mel": np.zeros((4, FRAMES, 2), np.float32), "num_frames": num_frames,
           "valid": np.array([True, True, True, False])}
  act = np.zeros((4, length, 3), np.float32)
  mask = np.asarray(collect._position_mask("encoder.blocks.spectrogram.1", act, batch))
  model_valid = np.asarray(pitch.frame_validity(pitch.downsampled_length(num_frames, downsample),
                                                length))
  np.testing.assert_array_equal(mask, model_valid & batch["valid"][:, None])


def test_sown_values_without_a_model():
  """Per-utterance values keep their shape; a repeated sow pools; rows with valid=False drop."""
  from echo_jax.training import diagnostics_collect as collect
  a = jnp.asarray([[[0.005, 1.0]], [[3.0, 3.0]]], jnp.float32)  # [B=2, T=1, 2]
  intermediates = {
      "rotary_theta": (jnp.asarray([11000.0, 12000.0]),),
      "decoder": {"_blocks_0": {"attna": {"pitch_bias_scale": (jnp.float32(0.5),)},
                                "mlp_activation": (a, a * 2)}},
  }
  batch = {"decoder_target_tokens": np.array([[5], [6]], np.int32),
           "valid": np.array([True, False])}
  out = collect.activation_diagnostics(intermediates, batch)
  np.testing.assert_array_equal(out["rotary_theta"]["model"], [11000.0, 12000.0])
  assert float(out["pitch_bias_scale"]["decoder._blocks.0.attna"]) == 0.5
  key = "decoder._blocks.0.mlp_activation"
  # Row 0 only, both calls: |a| = 0.005, 1.0, 0.01, 2.0 -> mean 0.75375, one value below 0.01.
  np.testing.assert_allclose(out["activation_mean_abs"][key], 0.75375, rtol=1e-6)
  np.testing.assert_allclose(out["activation_sparsity"][key], 0.25)
