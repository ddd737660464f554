"""Analytic FLOP counts against what XLA compiles, and the benchmark's compile counting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax import benchmark
from echo_jax import flops
from echo_jax import optim
from echo_jax import sharding as sharding_lib
from echo_jax import trainer
from echo_jax.config_defaults import default_config
from echo_jax.models import EchoModel
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
  model = trainer.build_model(config)
  tx = optim.make_optimizer(config.train)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  batch = {k: v for k, v in _batch(config.model).items() if k != "example_index"}
  params = _abstract_params(model, batch)
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  state = trainer.TrainState(step=scalar, params=params, opt_state=jax.eval_shape(tx.init, params),
                             rng=jax.eval_shape(jax.random.PRNGKey, 0), first_bad_step=scalar)
  shardings = trainer.state_shardings(state, mesh, tx, "replicated")
  step = trainer.make_train_step(model, tx, optim.learning_rate_schedule(config.train), mesh,
                                 shardings)
  return config.model, step.lower(state, batch)


def test_train_count_equals_the_unoptimised_step_exactly(train_step_lowered):
  # Stride-1 streams: forward + both backward contractions of everything but the first convs'
  # input gradients, nothing more (AdamW and the loss add no contraction).
  cfg, lowered = train_step_lowered
  counted = flops.dot_conv_flops_from_hlo(lowered.as_text(dialect="hlo"))
  assert counted == flops.train_step_flops(cfg, B, T, L)


def test_compiled_step_matches_the_count_within_tolerance(train_step_lowered):
  # XLA's optimised step: its dots/convs stay within 5 % of the analytic count (it expands the
  # depthwise-conv weight gradient into a dense convolution and turns width-1 gate gradients into
  # reductions); its total FLOPs add the elementwise work (norms, softmax, rotary, AdamW), which at
  # d 32 is under half the contractions and only grows the total.
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
  # The cached step still projects the encoder output to cross-attention keys/values.
  cross_kv = cfg.decoder_layers * 2 * 2 * rows * frames * cfg.d_model ** 2
  assert cached["cross_kv_per_step"] == cross_kv
  assert uncached["per_step"] > cached["per_step"] > cached["cross_kv_per_step"]
  assert cached["total"] == cached["encoder"] + length * cached["per_step"]


def test_hlo_parser_reads_inline_and_named_operand_shapes():
  text = "\n".join([
      "  %a = f32[4,8]{1,0} parameter(0)",
      "  %b = f32[8,16]{1,0} parameter(1)",
      "  ROOT %dot.1 = f32[4,16]{1,0} dot(%a, %b), lhs_contracting_dims={1}, "
      "rhs_contracting_dims={0}",
      "  %c = f32[2,10,3]{2,1,0} parameter(2)",
      "  %conv = f32[2,10,5]{2,1,0} convolution(f32[2,10,3]{2,1,0} %c, f32[3,3,5]{2,1,0} %k), "
      "window={size=3 pad=1_1}, dim_labels=b0f_0io->b0f",
  ])
  assert flops.dot_conv_flops_from_hlo(text) == 2 * 4 * 16 * 8 + 2 * (2 * 10 * 5) * (3 * 3)


def test_compile_counter_counts_one_compilation_per_new_shape():
  fn = jax.jit(lambda x: jnp.tanh(x) * 2.0 + 1.0)
  shapes = [(3, 5), (7, 5), (11, 5)]
  plan = benchmark.bucket_schedule(len(shapes), 20, seed=3)
  assert sorted(set(plan)) == [0, 1, 2] and len(plan) == 20
  with benchmark.CompileCounter() as first:
    for b in plan:
      jax.block_until_ready(fn(np.ones(shapes[b], np.float32)))
  assert first.count == len(shapes)
  with benchmark.CompileCounter() as again:
    for b in plan:
      jax.block_until_ready(fn(np.full(shapes[b], 0.5, np.float32)))
  assert again.count == 0
  jax.block_until_ready(fn(np.ones((13, 5), np.float32)))  # not counted: no counter active
  assert first.count == len(shapes)


def test_benchmark_shapes_are_the_issue_shapes():
  config, frames, tokens, batch = benchmark.apply_shape(default_config(), "small")
  m = config.model
  assert (m.d_model, m.num_heads, m.encoder_layers, m.decoder_layers, m.vocab_size) == (
      256, 4, 2, 2, 4000)
  assert (frames, tokens, batch, m.spectrogram_downsample) == (1000, 64, 4, 1)
  config, frames, tokens, batch = benchmark.apply_shape(default_config(), "seed")
  m = config.model
  assert (m.d_model, m.num_heads, m.encoder_layers, m.decoder_layers, m.vocab_size) == (
      512, 4, 4, 4, 4000)
  assert (frames, tokens, batch) == (1500, 128, 2)
  with pytest.raises(ValueError, match="--shape"):
    benchmark.apply_shape(default_config(), "huge")


HLO_MODULE = """HloModule step

%fused_computation (param_0: f32[4,8], param_1: f32[8,16]) -> f32[4,16] {
  %param_0 = f32[4,8]{1,0} parameter(0)
  %param_1 = f32[8,16]{1,0} parameter(1)
  ROOT %dot.1 = f32[4,16]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (a: f32[4,8], b: f32[8,16]) -> f32[4,16] {
  %a = f32[4,8]{1,0} parameter(0)
  %b = f32[8,16]{1,0} parameter(1)
  %dot_fusion = f32[4,16]{1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation, metadata={op_name="jit(step_fn)/jvp(EchoModel)/encoder/blocks_spectrogram_1/attna/q/dot_general"}
  ROOT %tanh.2 = f32[4,16]{1,0} tanh(%dot_fusion), metadata={op_name="jit(step_fn)/jvp(EchoModel)/encoder/blocks_spectrogram_0/mlp/tanh"}
}
"""


def test_profile_breakdown_joins_trace_ops_with_their_hlo_flops(tmp_path):
  import gzip
  import json

  instructions = flops.hlo_instructions(HLO_MODULE)
  assert instructions["dot_fusion"]["flops"] == 2 * 4 * 16 * 8
  assert instructions["tanh.2"]["flops"] == 0
  # Two steps: the fusion runs 3 us then 1 us; tanh 1 us each; one 2 us gap with nothing running.
  events = [
      {"name": "dot_fusion", "ts": 0, "dur": 3}, {"name": "tanh.2", "ts": 3, "dur": 1},
      {"name": "dot_fusion", "ts": 6, "dur": 1}, {"name": "tanh.2", "ts": 7, "dur": 1},
      {"name": "ThunkExecutor::Execute", "ts": 0, "dur": 8},
  ]
  trace = tmp_path / "host.trace.json.gz"
  with gzip.open(trace, "wt") as f:
    json.dump({"traceEvents": events}, f)
  report = benchmark.profile_breakdown(str(trace), HLO_MODULE)
  assert report["op_seconds"] == pytest.approx(6e-6)
  assert report["contraction_share"] == pytest.approx(4 / 6)
  assert report["idle_share"] == pytest.approx(2 / 8)
  assert report["contraction_gflops"] == pytest.approx(2 * 2 * 4 * 16 * 8 / 4e-6 / 1e9)
  top = report["top"][0]
  assert top["source"] == "forward/encoder/blocks_spectrogram/attna/q/dot_general"
  assert top["seconds"] == pytest.approx(4e-6)


def test_config_overrides_name_the_bad_field():
  config = benchmark.override(default_config(),
                              ["model.dtype=bfloat16", "data.bucket_frames=(64, 128)"])
  assert config.model.dtype == "bfloat16" and tuple(config.data.bucket_frames) == (64, 128)
  with pytest.raises(ValueError, match="model.d_modle"):
    benchmark.override(default_config(), ["model.d_modle=3"])
  with pytest.raises(ValueError, match="section.field=value"):
    benchmark.override(default_config(), ["model.d_model"])
