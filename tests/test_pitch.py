"""Pitch statistics, F0 resampling and the pitch-similarity bias (also inside attention)."""

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.models import pitch as pitch_lib
from echo_jax.models.attention import MultiheadA
from echo_jax.models.config import model_settings
from echo_jax.models.testing import tiny_model_config


def _example():
  f0 = np.array([[120.0, 0.0, 180.0, 150.0, 0.0, 0.0],
                 [200.0, 220.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
  return f0, np.array([5, 3])


def test_voiced_statistics_and_z():
  f0, n = _example()
  mean, std = pitch_lib.voiced_statistics(f0, n)
  np.testing.assert_allclose(mean, [150.0, 210.0], rtol=1e-6)
  np.testing.assert_allclose(std, [np.std([120, 180, 150]), 10.0], rtol=1e-5)
  z = pitch_lib.pitch_z(f0, mean, std)
  voiced = np.asarray(pitch_lib.voiced_frames(f0, n))
  for b in range(2):
    np.testing.assert_allclose(np.mean(np.asarray(z)[b][voiced[b]]), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(np.asarray(z)[b][voiced[b]]), 1.0, rtol=1e-4)


def test_pitch_bias_symmetric_unit_diagonal_in_range_and_zero_on_padding():
  f0, n = _example()
  mean, std = pitch_lib.voiced_statistics(f0, n)
  z = pitch_lib.pitch_z(f0, mean, std)
  valid = pitch_lib.frame_validity(n, f0.shape[1])
  bias = np.asarray(pitch_lib.pitch_bias(z, 0.7, valid))[:, 0]
  for b in range(2):
    k = int(n[b])
    inner = bias[b, :k, :k]
    np.testing.assert_allclose(inner, inner.T, atol=1e-7)
    np.testing.assert_allclose(np.diagonal(inner), 1.0)
    assert np.all(inner > 0) and np.all(inner <= 1)
    assert np.all(bias[b, k:, :] == 0) and np.all(bias[b, :, k:] == 0)
  # exp(-s |z_i - z_j|) exactly.
  zz = np.asarray(z)
  np.testing.assert_allclose(bias[0, 0, 2], np.exp(-0.7 * abs(zz[0, 0] - zz[0, 2])), rtol=1e-6)


def test_bias_larger_for_similar_pitch():
  f0 = np.array([[100.0, 105.0, 200.0]], np.float32)
  n = np.array([3])
  mean, std = pitch_lib.voiced_statistics(f0, n)
  bias = np.asarray(pitch_lib.pitch_bias(pitch_lib.pitch_z(f0, mean, std), 1.0,
                                         pitch_lib.frame_validity(n, 3)))[0, 0]
  assert bias[0, 1] > bias[0, 2]


def test_resample_f0_voiced_window_means():
  f0 = np.array([[100.0, 0.0, 200.0, 300.0, 0.0, 0.0, 50.0]], np.float32)
  out = pitch_lib.resample_f0(f0, np.array([7]), 2, 4)
  np.testing.assert_allclose(out, [[100.0, 250.0, 0.0, 50.0]])
  # Frames beyond num_frames count as unvoiced.
  np.testing.assert_allclose(pitch_lib.resample_f0(f0, np.array([3]), 2, 4),
                             [[100.0, 200.0, 0.0, 0.0]])
  np.testing.assert_array_equal(pitch_lib.downsampled_length(np.array([7, 8, 1]), 4), [2, 2, 1])


def test_attention_pitch_bias_has_no_effect_through_padded_keys():
  settings = model_settings(tiny_model_config(pitch_bias=True, pitch_bias_learned=True))
  attention = MultiheadA(settings)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, settings.d_model))
  valid = jnp.arange(6)[None] < 4
  z = jnp.array([[0.1, -0.5, 1.0, 0.3, 0.0, 0.0]])
  variables = attention.init(jax.random.PRNGKey(1), x, key_valid=valid, pitch_z=z)
  out = attention.apply(variables, x, key_valid=valid, pitch_z=z)
  # Junk in padded keys (inputs and z) leaves valid queries unchanged.
  x2 = x.at[:, 4:].set(7.0)
  z2 = z.at[:, 4:].set(-9.0)
  out2 = attention.apply(variables, x2, key_valid=valid, pitch_z=z2)
  np.testing.assert_allclose(out[:, :4], out2[:, :4], atol=1e-6)
  # The bias does act on valid keys.
  out3 = attention.apply(variables, x, key_valid=valid, pitch_z=z.at[:, 1].set(3.0))
  assert float(jnp.abs(out3[:, :4] - out[:, :4]).max()) > 1e-6
  # The learned scale starts at the configured scale and is sown.
  _, state = attention.apply(variables, x, key_valid=valid, pitch_z=z, mutable=["intermediates"])
  np.testing.assert_allclose(state["intermediates"]["pitch_bias_scale"][0],
                             settings.pitch_bias_scale, rtol=1e-6)
