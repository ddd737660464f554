"""Per-device batch sizes: the global batch follows the device count, resolved in one place
(pipeline.global_batch_sizes) for the pipeline, the validator and compile_for; configs/base.py's
batch sizes compile into a train step for a 16-chip v5e 4x4."""

import importlib

import pytest

from echo_jax import compile_for
from echo_jax.config import check as config_check
from echo_jax.config.check import ConfigError
from echo_jax.data import pipeline
from test_compile_for import _require_libtpu, tpu_compile_at_O0


def _config(name):
  return importlib.import_module(f"configs.{name}").get_config()


def test_global_sizes_are_as_written():
  data = _config("default").data
  assert data.batch_size_unit == "global"
  for devices in (1, 4, 16):
    sizes = pipeline.global_batch_sizes(data, devices)
    assert sizes.buckets == (16, 8, 8) and sizes.eval == 16


def test_per_device_sizes_scale_with_the_devices():
  data = _config("base").data
  assert data.batch_size_unit == "per_device"
  for devices in (1, 4, 8, 16):
    sizes = pipeline.global_batch_sizes(data, devices)
    assert sizes.buckets == tuple(devices * b for b in data.bucket_batch_sizes)
    assert sizes.eval == devices * data.eval_batch_size
  # On a v5e 2x2 (4 chips) the global batches are the schema's defaults.
  assert pipeline.global_batch_sizes(data, 4) == ((32, 16, 8, 8), 16)
  # Without a count: every device of every process (8 fake CPU devices in the tests).
  assert pipeline.global_batch_sizes(data).buckets == (64, 32, 16, 16)


@pytest.mark.parametrize("devices", [4, 8, 16, 32])
def test_per_device_sizes_split_over_any_slice(devices):
  config_check.validate_batch_sizes(_config("base"), devices)


def test_indivisible_global_sizes_name_the_fix():
  config = _config("default")
  with pytest.raises(ConfigError) as err:
    config_check.validate_batch_sizes(config, 16)
  message = str(err.value)
  assert "bucket 768" in message and "16 devices" in message and "multiples of 16" in message
  assert "data.batch_size_unit='per_device'" in message
  config.data.batch_size_unit = "per_device"
  config_check.validate_batch_sizes(config, 16)


def test_unknown_unit_is_rejected():
  config = _config("tiny")
  config.data.batch_size_unit = "per_host"
  with pytest.raises(ConfigError, match="config.data.batch_size_unit='per_host' is invalid"):
    config_check.validate_config(config)
  with pytest.raises(ValueError, match="batch_size_unit"):
    pipeline.global_batch_sizes(config.data, 4)


def test_compile_for_shapes_follow_the_chips():
  config = _config("base")
  assert compile_for.train_batch_shape(config, 4) == (8, 2048)
  assert compile_for.train_batch_shape(config, 16) == (32, 2048)
  assert compile_for.train_batch_shape(_config("default"), 16) == (8, 1152)  # global: as written


def test_base_config_train_step_compiles_for_a_v5e_4x4():
  _require_libtpu()  # as for the other TPU compiles: fails where libtpu should be installed
  config = _config("base")
  # One layer each instead of four: the batch layout under test does not depend on depth, and the
  # compile time (minutes for the full model on a 2-core CPU) does.
  config.model.encoder_layers = config.model.decoder_layers = 1
  with tpu_compile_at_O0():
    report = compile_for.compile_steps(config, "v5e:4x4", steps=("train",))[0]
  assert not report.error, report.error  # the global batch 8 of the old sizes was refused here
  assert (report.num_chips, report.global_batch, report.frames) == (16, 32, 2048)
  assert report.fits and report.total_bytes < report.hbm_bytes


def test_pipeline_batches_are_per_device_size_times_devices(tiny_prepared, tiny_data_config):
  config = tiny_data_config
  config.data.bucket_batch_sizes = (2, 2, 2)
  config.data.eval_batch_size = 4
  expected = pipeline.make_train_iterator(config, tiny_prepared, 0, 1)
  config.data.batch_size_unit = "per_device"
  config.data.bucket_batch_sizes = (1, 1, 1)
  config.data.eval_batch_size = 2
  per_device = pipeline.make_train_iterator(config, tiny_prepared, 0, 1, num_devices=2)
  assert per_device.global_sizes == expected.global_sizes == [2, 2, 2]
  assert per_device.fingerprint == expected.fingerprint  # the same plan, batch for batch
  for _ in range(3):
    a, b = next(per_device), next(expected)
    assert a["example_index"].tolist() == b["example_index"].tolist()
  per_device.close()
  expected.close()
  rows = [batch["mel"].shape[0] for batch in pipeline.make_eval_batches(
      config, "train", prepared=tiny_prepared, max_examples=6, num_devices=2)]
  assert rows and set(rows) == {4}
