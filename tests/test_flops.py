"""Analytic FLOP counts against what XLA compiles, and the benchmark's compile counting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax import benchmark
from echo_jax.perf import flops
from echo_jax.training import optim
from echo_jax.parallel import sharding as sharding_lib
from echo_jax.models import building
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from echo_jax.config.defaults import default_config
from echo_jax.models import EchoModel, decode_step, init_decode_cache
from echo_jax.models.testing import random_batch, tiny_model_config

B, T, L = 2, 40, 12


def _batch(cfg, batch=B, frames=T, tokens=L):
  return random_batch(cfg, [frames] * batch, [tokens] * batch, frames, tokens)


def _abstract_params(model, batch):
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)["params"]


def test_forward_count_equals_the_dots_and_convolutions_xla_sees():
  # Every feature stream, strided front-ends: the forward pass has no zero-dilated convolutions,
  # so the count is exact.
  cfg = tiny_model_config(features=("spectrogram", "pitch", "waveform"), spectrogram_downsample=2)
  model = EchoModel(cfg)
  batch = _batch(cfg)
  lowered = jax.jit(lambda p, b: model.apply({"params": p}, b)).lower(
      _abstract_params(model, batch), batch)
  counted = flops.dot_conv_flops_from_hlo(lowered.as_text(dialect="hlo"))
  assert counted == flops.forward_flops(cfg, B, T, L)["total"]


@pytest.fixture(scope="module")
def train_step_lowered():
  """The trainer's own step (loss, grads, AdamW) lowered on a 1-device mesh, abstract state."""
  config = default_config()
  config.model = tiny_model_config(features=("spectrogram", "pitch"), spectrogram_downsample=1,
                                   pitch_downsample=1)
  config.data.max_target_length = L
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  batch = {k: v for k, v in _batch(config.model).items() if k != "example_index"}
  params = _abstract_params(model, batch)
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  state = train_setup.TrainState(step=scalar, params=params,
                                 opt_state=jax.eval_shape(tx.init, params),
                                 rng=jax.eval_shape(jax.random.PRNGKey, 0), first_bad_step=scalar)
  shardings = train_setup.state_shardings(state, mesh, tx, "replicated")
  step = steps.make_train_step(model, tx, optim.learning_rate_schedule(config.train), mesh,
                               shardings)
  return config.model, step.lower(state, batch)


def test_train_count_equals_the_unoptimised_step_exactly(train_step_lowered):
  # Stride-1 streams: forward + both backward contractions of everything but the first convs'
  # input gradients, nothing more (AdamW and the loss add no contraction).
  cfg, lowered = train_step_lowered
  counted = flops.dot_conv_flops_from_hlo(lowered.as_text(dialect="hlo"))
  assert counted == flops.train_step_flops(cfg, B, T, L)


def test_compiled_step_matches_the_count_within_tolerance(train_step_lowered):
  # XLA's optimised step: its dots/convs stay within 5 % of the analytic count (it turns width-1
  # gate gradients into reductions and may expand a grouped conv's weight gradient); its total
  # FLOPs add the elementwise work (norms, softmax, rotary, AdamW), which at d 32 is under half
  # the contractions and only grows the total.
  cfg, lowered = train_step_lowered
  compiled = lowered.compile()
  analytic = flops.train_step_flops(cfg, B, T, L)
  hlo = flops.dot_conv_flops_from_hlo(compiled.as_text())
  assert abs(hlo - analytic) / analytic < 0.05
  total = flops.xla_flops(compiled)
  assert analytic < total < 1.5 * analytic


def test_decode_counts_are_consistent_with_the_forward_count():
  cfg = tiny_model_config()
  frames, length, rows = 64, 16, 3
  forward = flops.forward_flops(cfg, rows, frames, length)
  uncached = flops.decode_flops(cfg, rows, frames, length, steps=length, use_cache=False)
  # Uncached decoding re-runs the whole decoder (and the tied output) on the token buffer.
  assert uncached["per_step"] == forward["decoder_blocks"] + forward["output_projection"]
  assert uncached["encoder"] == (forward["total"] - forward["decoder_blocks"] -
                                 forward["output_projection"])
  cached = flops.decode_flops(cfg, rows, frames, length, steps=length, use_cache=True)
  assert cached["encoder"] == uncached["encoder"]
  # Cross-attention keys/values are projected once, when the cache is created, not per step.
  cross_kv = cfg.decoder_layers * 2 * 2 * rows * frames * cfg.d_model ** 2
  assert cached["cross_kv"] == cross_kv
  assert cached["cache_init"] == cross_kv
  assert uncached["per_step"] > cross_kv + cached["per_step"]
  assert cached["total"] == cached["encoder"] + cached["cache_init"] + length * cached["per_step"]


def test_cached_decode_counts_equal_the_dots_xla_sees():
  cfg = tiny_model_config()
  frames, length, rows = 24, 10, 2
  model = EchoModel(cfg)
  batch = random_batch(cfg, [frames, 17], [4, 3], frames, length, seed=0)
  variables = model.init(jax.random.PRNGKey(0), batch)
  encoded = model.apply(variables, batch, method=EchoModel.encode)
  counts = flops.decode_flops(cfg, rows, frames, length, steps=1, use_cache=True)
  init = jax.jit(lambda v, e: init_decode_cache(model, v, e, rows, length)).lower(
      variables, encoded)
  assert flops.dot_conv_flops_from_hlo(init.as_text(dialect="hlo")) == counts["cache_init"]
  cache = init_decode_cache(model, variables, encoded, rows, length)
  step = jax.jit(lambda v, c, e, t: decode_step(model, v, c, e, t)).lower(
      variables, cache, encoded, jnp.ones((rows, 1), jnp.int32))
  assert flops.dot_conv_flops_from_hlo(step.as_text(dialect="hlo")) == counts["per_step"]
