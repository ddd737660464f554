"""Per-utterance CMVN of the log-mel (model.mel_normalization="utterance"): zero mean and unit
variance per bin over the real frames, padding left at 0, invariant to the level of the input and
to padding; the option changes no parameter count."""

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.models import EchoModel, count_params, expected_param_count
from echo_jax.models.encoder import normalise_per_utterance
from echo_jax.models.testing import pad_batch, random_batch, tiny_model_config


def test_real_frames_get_zero_mean_unit_variance_and_padding_stays_zero():
  rng = np.random.default_rng(0)
  mel = rng.normal(2.0, 3.0, size=(2, 40, 8)).astype(np.float32)
  num_frames = np.array([40, 25])
  mel[1, 25:] = 0.0
  out = np.asarray(normalise_per_utterance(jnp.asarray(mel), jnp.asarray(num_frames)))
  for row, n in enumerate(num_frames):
    np.testing.assert_allclose(out[row, :n].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[row, :n].std(axis=0), 1.0, atol=1e-3)
    assert not out[row, n:].any()
  # A gain (a constant added to the log-mel) and a per-bin scaling change nothing.
  shifted = mel * 1.5 - 0.7
  shifted[1, 25:] = 0.0
  again = np.asarray(normalise_per_utterance(jnp.asarray(shifted), jnp.asarray(num_frames)))
  np.testing.assert_allclose(again, out, atol=1e-4)


def test_model_with_cmvn_keeps_padding_invariance_and_parameter_count():
  cfg = tiny_model_config(mel_normalization="utterance", spectrogram_downsample=2)
  model = EchoModel(cfg)
  batch = random_batch(cfg, [16, 9, 13], [7, 4, 6], 16, 7, seed=4)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  assert count_params(variables["params"]) == expected_param_count(cfg)
  assert expected_param_count(cfg) == expected_param_count(
      tiny_model_config(spectrogram_downsample=2))
  apply = jax.jit(model.apply)
  logits = np.asarray(apply(variables, batch))
  padded = np.asarray(apply(variables, pad_batch(batch, 24, 9, cfg.hop_length)))
  for row, n in enumerate([7, 4, 6]):
    np.testing.assert_allclose(padded[row, :n], logits[row, :n], atol=3e-5)
  louder = dict(batch, mel=batch["mel"] + 0.5 * (batch["mel"] != 0))
  np.testing.assert_allclose(np.asarray(apply(variables, louder)), logits, atol=3e-5)
