"""VTLP on the log-mel (echo_jax.training.frequency_warp): factor 1 is the identity, a spectral
peak moves to the bin of its frequency times the factor, the map keeps 0 and Nyquist, padding is
untouched, factors are drawn as configured, and the train step trains on the warped batch."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax.config.check import validate_config
from echo_jax.models import EchoModel, building
from echo_jax.parallel import sharding
from echo_jax.training import frequency_warp, losses, metrics, optim
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from ragged_batches import ragged_batch

CENTRES = frequency_warp.mel_centres_hz(16000, 128, 0.0, 8000.0)
NYQUIST = 8000.0


def _peaked(peak_bins, frames=6, bins=128):
  """[B, frames, bins] log-mel: a floor of 0 with one narrow bump per row (3 bins, max at the
  given bin)."""
  mel = np.zeros((len(peak_bins), frames, bins), np.float32)
  for row, peak in enumerate(peak_bins):
    mel[row, :, peak] = 1.0
    mel[row, :, peak - 1] = mel[row, :, peak + 1] = 0.5
  return mel


def test_the_map_keeps_the_band_edges_and_is_monotone():
  freqs = jnp.linspace(0.0, NYQUIST, 401)
  for alpha in (0.85, 0.9, 1.0, 1.1, 1.15):
    warped = np.asarray(frequency_warp.warp_hz(freqs, jnp.float32(alpha), NYQUIST))
    assert warped[0] == pytest.approx(0.0) and warped[-1] == pytest.approx(NYQUIST, rel=1e-6)
    assert np.all(np.diff(warped) > 0)
    low = np.asarray(freqs) < 3000.0  # below every cut-off: plain scaling
    np.testing.assert_allclose(warped[low], alpha * np.asarray(freqs)[low], rtol=1e-6)


def test_factor_one_is_the_identity_and_padding_is_untouched():
  rng = np.random.default_rng(0)
  mel = rng.normal(size=(3, 10, 128)).astype(np.float32)
  frames = np.array([10, 4, 7], np.int32)
  same = frequency_warp.warp(jnp.asarray(mel), frames, jnp.ones(3), jnp.asarray(CENTRES), NYQUIST)
  np.testing.assert_array_equal(np.asarray(same), mel)
  moved = np.asarray(frequency_warp.warp(jnp.asarray(mel), frames, jnp.array([1.1, 0.9, 1.05]),
                                         jnp.asarray(CENTRES), NYQUIST))
  for row, n in enumerate(frames):
    np.testing.assert_array_equal(moved[row, n:], mel[row, n:])  # padding as it was
    assert not np.allclose(moved[row, :n], mel[row, :n])


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_a_peak_moves_to_the_bin_of_its_frequency_times_the_factor(alpha):
  """A bump at the bin centred on ~1 kHz and one at ~2.5 kHz land at the bins whose centres are
  nearest alpha times those frequencies (below the cut-off the map is f -> alpha f)."""
  sources = [int(np.argmin(np.abs(CENTRES - f))) for f in (1000.0, 2500.0)]
  mel = _peaked(sources)
  warped = np.asarray(frequency_warp.warp(jnp.asarray(mel), np.array([6, 6]),
                                          jnp.full(2, alpha), jnp.asarray(CENTRES), NYQUIST))
  for row, source in enumerate(sources):
    expected = int(np.argmin(np.abs(CENTRES - alpha * CENTRES[source])))
    assert expected != source  # the move is large enough to see
    assert int(np.argmax(warped[row, 0])) == expected


def test_factors_are_drawn_within_bounds_and_with_the_probability():
  factors = np.asarray(frequency_warp.draw_factors(jax.random.PRNGKey(3), 4000, 0.1, 0.5))
  warped = factors != 1.0
  assert 0.45 < warped.mean() < 0.55
  assert factors.min() >= 0.9 and factors.max() <= 1.1
  assert np.all(np.asarray(frequency_warp.draw_factors(jax.random.PRNGKey(3), 50, 0.1, 0.0)) == 1)
  again = np.asarray(frequency_warp.draw_factors(jax.random.PRNGKey(3), 4000, 0.1, 0.5))
  np.testing.assert_array_equal(factors, again)  # keyed: the same RNG, the same factors


def test_train_step_trains_on_the_warped_batch():
  """With train.frequency_warp on, the step's loss is the joint loss of the batch warped with the
  step RNG's factors (SpecAugment off here, so the warp is the only change)."""
  config = importlib.import_module("configs.tiny").get_config()
  config.model.update(dict(vocab_size=40, ctc_head=True, conv_init="fan_in"))  # not deaf at init
  config.train.update(dict(ctc_weight=0.3, label_smoothing=0.0, warmup_steps=0))
  config.train.frequency_warp.update(dict(probability=1.0, max_factor=0.15))
  validate_config(config)
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  mesh = sharding.make_mesh(jax.devices()[:1])
  state, shardings = train_setup.create_train_state(model, tx, config, mesh)
  with pytest.raises(ValueError, match="data_config"):
    steps.make_train_step(model, tx, optim.learning_rate_schedule(config.train), mesh, shardings,
                          train_config=config.train)
  step = steps.make_train_step(model, tx, optim.learning_rate_schedule(config.train), mesh,
                               shardings, train_config=config.train, data_config=config.data)
  batch = ragged_batch(config, 4, 256, 40, 0)
  params, rng = jax.device_get(state.params), jax.device_get(state.rng)
  _, step_metrics = step(state, sharding.global_batch(batch, mesh))

  _, mask_rng = jax.random.split(jax.random.fold_in(rng, 0))
  d = config.data
  mel, factors = frequency_warp.apply(
      jax.random.fold_in(mask_rng, 2), batch["mel"], batch["num_frames"],
      frequency_warp.mel_centres_hz(d.sample_rate, d.n_mels, d.fmin, d.fmax), d.sample_rate / 2,
      0.15, 1.0)
  assert np.all(np.abs(np.asarray(factors) - 1.0) > 1e-3)

  def joint_loss(b):
    logits, ctc = model.apply({"params": params}, b, train=True, method=EchoModel.forward)
    targets = jnp.asarray(b["decoder_target_tokens"])
    sums = metrics.token_sums(logits, targets)
    ctc_sums = losses.ctc_sums(ctc.logits, ctc.valid, targets)
    return (0.7 * float(sums["loss_sum"]) / float(sums["num_tokens"])
            + 0.3 * float(ctc_sums["ctc_loss_sum"]) / float(ctc_sums["num_labels"]))
  warped_loss, plain_loss = joint_loss(dict(batch, mel=mel)), joint_loss(batch)
  assert abs(warped_loss - plain_loss) > 20 * abs(float(step_metrics["loss"]) - warped_loss)
  np.testing.assert_allclose(float(step_metrics["loss"]), warped_loss, rtol=1e-5)


@pytest.mark.parametrize("field,value,fix", [
    ("probability", 1.5, r"\[0"),
    ("max_factor", 0.5, "0.5"),
])
def test_bad_warp_settings_are_named(field, value, fix):
  config = importlib.import_module("configs.tiny").get_config()
  config.train.frequency_warp[field] = value
  with pytest.raises(ValueError, match=f"config.train.frequency_warp.{field}=.*{fix}"):
    validate_config(config)
