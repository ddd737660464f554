"""Mesh, shardings and global batch assembly on the 8 fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from echo_jax.parallel import sharding


def test_mesh_spans_all_devices_on_data_axis():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data",)
  assert mesh.devices.size == jax.device_count() == 8


def test_global_batch_rows_land_on_their_devices():
  mesh = sharding.make_mesh()
  batch = {"mel": np.arange(8 * 3 * 2, dtype=np.float32).reshape(8, 3, 2),
           "num_frames": np.arange(8, dtype=np.int32)}
  arrays = sharding.global_batch(batch, mesh)
  for key, value in batch.items():
    assert arrays[key].shape == value.shape
    assert arrays[key].sharding.is_equivalent_to(sharding.batch_sharding(mesh), value.ndim)
    np.testing.assert_array_equal(np.asarray(arrays[key]), value)
    for shard in arrays[key].addressable_shards:
      row = mesh.devices.tolist().index(shard.device)
      np.testing.assert_array_equal(np.asarray(shard.data), value[row:row + 1])


def test_host_only_keys_stay_on_host():
  batch = {"mel": np.zeros([2, 3], np.float32), "example_index": np.arange(2, dtype=np.int64)}
  device, host = sharding.split_host_batch(batch)
  assert set(device) == {"mel"} and set(host) == {"example_index"}


def test_param_sharding_rules_registry():
  mesh = sharding.make_mesh()
  params = {"a": jax.ShapeDtypeStruct((8, 4), jnp.float32), "b": jax.ShapeDtypeStruct((), jnp.float32)}
  replicated = sharding.param_shardings(mesh, params)
  assert all(s.spec == P() for s in jax.tree.leaves(replicated))
  with pytest.raises(ValueError, match="train.param_sharding='nope' is not available"):
    sharding.param_shardings(mesh, params, "nope")

  def first_axis(mesh_, tree):
    return jax.tree.map(
        lambda x: NamedSharding(mesh_, P("data") if x.ndim else P()), tree)

  sharding.register_param_sharding("test_first_axis", first_axis)
  try:
    rule = sharding.param_shardings(mesh, params, "test_first_axis")
    assert rule["a"].spec == P("data") and rule["b"].spec == P()
  finally:
    sharding._PARAM_SHARDING_RULES.pop("test_first_axis")  # keep the registry as shipped
