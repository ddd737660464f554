"""The conv2d spectrogram front-end and the encoder's conformer conv module: parameter counts
against the formula, padding invariance, batch independence and config errors."""

import jax
import numpy as np
import pytest

from echo_jax.models import EchoModel, count_params, expected_param_count
from echo_jax.models.config import validate_model_config
from echo_jax.models.testing import pad_batch, random_batch, select, tiny_model_config


@pytest.mark.parametrize("options", [
    dict(spectrogram_frontend="conv2d", spectrogram_downsample=4),
    dict(spectrogram_frontend="conv2d", spectrogram_downsample=1, frontend_channels=4),
    dict(encoder_conv_kernel=5, spectrogram_downsample=2),
    dict(spectrogram_frontend="conv2d", encoder_conv_kernel=3, spectrogram_downsample=2,
         features=("spectrogram", "pitch")),
])
def test_padding_and_batch_invariance_and_parameter_count(options):
  cfg = tiny_model_config(conv_init="fan_in", **options)
  model = EchoModel(cfg)
  num_frames = [21, 9, 14]
  batch = random_batch(cfg, num_frames, [7, 4, 6], 24, 7, seed=5)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch)
  assert count_params(variables["params"]) == expected_param_count(cfg)
  apply = jax.jit(model.apply)
  logits = np.asarray(apply(variables, batch))
  # More padding, and garbage in the padded frames, leave every valid logit unchanged.
  padded = pad_batch(batch, 40, 9, cfg.hop_length)
  padded["mel"][0, 21:] = 7.0
  padded["mel"][1, 9:] = -3.0
  out = np.asarray(apply(variables, padded))
  for row, n in enumerate([7, 4, 6]):
    np.testing.assert_allclose(out[row, :n], logits[row, :n], atol=3e-5)
  # An example's logits do not depend on the other examples of its batch.
  alone = np.asarray(apply(variables, select(batch, [1])))
  np.testing.assert_allclose(alone[0, :4], logits[1, :4], atol=3e-5)


def test_conv_module_changes_the_output_and_is_trainable():
  cfg = tiny_model_config(conv_init="fan_in", encoder_conv_kernel=5)
  batch = random_batch(cfg, [16, 12], [6, 5], 16, 6, seed=1)
  variables = jax.jit(EchoModel(cfg).init)(jax.random.PRNGKey(0), batch)
  conv = variables["params"]["encoder"]["blocks_spectrogram_0"]["conv_module"]
  assert conv["depthwise"]["kernel"].shape == (5, 1, cfg.d_model)
  assert conv["pointwise_in"]["kernel"].shape == (cfg.d_model, 2 * cfg.d_model)

  def loss(params):
    return jax.numpy.sum(EchoModel(cfg).apply({"params": params}, batch)[:, :5] ** 2)
  grads = jax.grad(loss)(variables["params"])
  grad_conv = grads["encoder"]["blocks_spectrogram_0"]["conv_module"]
  assert float(np.abs(grad_conv["depthwise"]["kernel"]).max()) > 0


@pytest.mark.parametrize("field,value,fix", [
    ("spectrogram_frontend", "conv3d", "conv1d"),
    ("encoder_conv_kernel", 4, "odd"),
    ("encoder_conv_kernel", -1, ">= 0"),
    ("frontend_channels", 0, ">= 1"),
    ("attention_block_above_mib", -1.0, ">= 0"),
])
def test_bad_options_name_the_field_and_the_fix(field, value, fix):
  with pytest.raises(ValueError, match=f"config.model.{field}=.*{fix}"):
    validate_model_config(tiny_model_config(**{field: value}))
