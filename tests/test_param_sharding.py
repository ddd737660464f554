"""FSDP-style parameter sharding: the split dimension, the size threshold, the bytes each device
holds, and that FSDP and replicated runs on 8 devices train to the same parameters."""

import importlib

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from echo_jax.config import defaults as config_defaults
from echo_jax.training import optim
from echo_jax.parallel import param_sharding
from echo_jax.parallel import sharding
from echo_jax.models import building
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from echo_jax.parallel.param_sharding import fsdp_spec
from ragged_batches import ragged_batch

VOCAB = 40
MIN_SIZE = 1024  # small enough that the tiny model's matrices are split


def test_spec_splits_the_largest_divisible_dimension():
  assert fsdp_spec((192, 768), 8, 0) == P(None, "data")
  assert fsdp_spec((768, 192), 8, 0) == P("data", None)
  assert fsdp_spec((100, 64), 8, 0) == P(None, "data")  # 100 is not a multiple of 8
  assert fsdp_spec((64, 64), 8, 0) == P("data", None)  # tie: the first
  assert fsdp_spec((3, 4, 16), 8, 0) == P(None, None, "data")


def test_spec_replicates_small_indivisible_and_single_device_leaves():
  assert fsdp_spec((192, 768), 8, 192 * 768 + 1) == P()  # below the threshold
  assert fsdp_spec((192, 768), 8, 192 * 768) == P(None, "data")  # at the threshold
  assert fsdp_spec((3, 5), 8, 0) == P()  # no dimension divisible by 8
  assert fsdp_spec((192, 768), 1, 0) == P()  # one device: nothing to split
  assert fsdp_spec((), 8, 0) == P()  # scalars (blend logits)


def test_config_threshold_is_used_and_checked():
  mesh = sharding.make_mesh()
  params = {"big": jax.ShapeDtypeStruct((64, 256), np.float32),
            "small": jax.ShapeDtypeStruct((8, 16), np.float32)}
  train = config_defaults.default_config().train
  train.param_sharding = "fsdp"
  train.fsdp_min_size = 64 * 256
  specs = jax.tree.map(lambda s: s.spec, sharding.param_shardings(mesh, params, train))
  assert specs == {"big": P(None, "data"), "small": P()}
  train.fsdp_min_size = 64 * 256 + 1
  specs = jax.tree.map(lambda s: s.spec, sharding.param_shardings(mesh, params, train))
  assert specs == {"big": P(), "small": P()}
  # The rule name alone means the schema's default threshold; nothing is remembered in between.
  specs = jax.tree.map(lambda s: s.spec, sharding.param_shardings(mesh, params, "fsdp"))
  assert specs == {"big": P(None, "data"), "small": P()}
  train.fsdp_min_size = -1
  with pytest.raises(ValueError, match="fsdp_min_size"):
    sharding.param_shardings(mesh, params, train)


@pytest.fixture(scope="module")
def setup():
  config = importlib.import_module("configs.tiny").get_config()
  config.model.vocab_size = VOCAB
  config.train.warmup_steps = 1
  config.train.fsdp_min_size = MIN_SIZE
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  schedule = optim.learning_rate_schedule(config.train)
  mesh = sharding.make_mesh()
  state, shardings = train_setup.create_train_state(model, tx, config, mesh)
  return config, model, tx, schedule, mesh, jax.device_get(state), shardings


def test_fsdp_shards_params_and_moments_and_device_bytes_add_up(setup):
  config, _, tx, _, mesh, host_state, _ = setup
  fsdp = train_setup.state_shardings(host_state, mesh, tx, _fsdp_train(config))
  flat_params = jax.tree_util.tree_leaves_with_path(host_state.params)
  flat_shardings = jax.tree.leaves(fsdp.params)
  split = 0
  for (path, leaf), s in zip(flat_params, flat_shardings):
    expected = fsdp_spec(leaf.shape, 8, MIN_SIZE)
    assert s.spec == expected, jax.tree_util.keystr(path)
    split += expected != P()
  assert split >= 8  # the tiny model's attention/MLP matrices and embedding
  # Adam's moments follow their parameter; counters stay replicated.
  moment_specs = [s.spec for s in jax.tree.leaves(fsdp.opt_state)]
  assert sum(spec != P() for spec in moment_specs) == 2 * split  # mu and nu
  # What one device really holds, from placed arrays, equals bytes_per_device.
  placed = jax.device_put(host_state.params, fsdp.params)
  device0 = mesh.devices.flat[0]
  held = sum(shard.data.nbytes for leaf in jax.tree.leaves(placed)
             for shard in leaf.addressable_shards if shard.device == device0)
  assert held == param_sharding.bytes_per_device(host_state.params, fsdp.params)
  replicated = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(host_state.params))
  assert held < 0.5 * replicated


def _fsdp_train(config):
  """config.train with the fsdp rule (and the setup's MIN_SIZE threshold)."""
  train = ml_collections.ConfigDict(config.train.to_dict())
  train.param_sharding = "fsdp"
  return train


def _batch(config, batch_size, frames, seed):
  return ragged_batch(config, batch_size, frames, VOCAB, seed)


def test_fsdp_and_replicated_train_to_the_same_parameters(setup):
  config, model, tx, schedule, mesh, host_state, replicated = setup
  fsdp = train_setup.state_shardings(host_state, mesh, tx, _fsdp_train(config))
  batches = [_batch(config, 8, 256, seed=s) for s in range(3)]
  results = {}
  for name, shardings in (("replicated", replicated), ("fsdp", fsdp)):
    step = steps.make_train_step(model, tx, schedule, mesh, shardings)
    state = jax.device_put(host_state, shardings)
    losses = []
    for batch in batches:
      state, metrics = step(state, sharding.global_batch(batch, mesh))
      losses.append(float(metrics["loss"]))
    if name == "fsdp":  # the step kept the layout: parameters come back sharded
      specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
      assert sum(spec != P() for spec in specs) >= 8
    results[name] = (losses, jax.device_get(state.params))
  (losses_r, params_r), (losses_f, params_f) = results["replicated"], results["fsdp"]
  assert losses_r[-1] < losses_r[0]  # it trained
  # Same math; all-gather/reduce-scatter only reorder float32 sums: round-off, not drift. Adam
  # divides by sqrt(v), so a near-zero gradient's round-off can move a parameter by ~1e-6 (seen:
  # 2e-6 on 2 of 4,096 weights); atol 1e-5 is ~1 % of one update here (lr 6e-4 to 1.8e-3 in the
  # warm-up), far below what a wrong shard (a whole update missing or doubled) would show.
  np.testing.assert_allclose(losses_f, losses_r, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params_f), jax.tree.leaves(params_r)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
