"""The benchmark behind every figure of docs/performance.md: compile counting, the FLOP and MFU
arithmetic, the tables, the ratio table of two results (--compare) and one tiny end-to-end run."""

import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax import benchmark
from echo_jax.benchmark import operators, peak, report
from echo_jax.benchmark import train as bench_train
from echo_jax.benchmark.measure import CompileCounter, summary
from echo_jax.benchmark.op_profile import profile_breakdown, source_group
from echo_jax.benchmark.train import throughput
from echo_jax.config import command_line
from echo_jax.errors import EXIT_USER_ERROR, UserError, run_cli


def _fresh_function():
  """A jitted function no cache (in memory or on disk) has seen: its constant is new."""
  salt = float(time.time_ns() % 1_000_003)
  return jax.jit(lambda x: jnp.sin(x) * salt + x.sum())


def test_compile_counter_counts_one_compile_per_shape():
  # Inputs made outside the counters: eager ops such as jnp.ones compile programs of their own.
  three, three_again, four, five, six, two = (jnp.full((n,), 1.0) for n in (3, 3, 4, 5, 6, 2))
  f = _fresh_function()
  with CompileCounter() as counter:
    jax.block_until_ready(f(three))
    jax.block_until_ready(f(three_again))  # same shape: the cached program
  assert counter.count == 1 and counter.seconds > 0
  with CompileCounter() as counter:
    jax.block_until_ready(f(three))
    jax.block_until_ready(f(four))  # a new shape compiles again
  assert counter.count == 1
  g = _fresh_function()
  with CompileCounter() as counter:
    for x in (five, six, five, six):
      jax.block_until_ready(g(x))
  assert counter.count == 2
  jax.block_until_ready(_fresh_function()(two))  # not counted once exited
  assert counter.count == 2


def test_flop_and_mfu_arithmetic():
  assert peak.matmul_flops(2, 3, 4) == 48  # 2 x 3 x 4 multiply-adds
  assert peak.matmul_flops(2048, 2048, 2048) == 2 * 2048 ** 3
  # 1 TFLOP in 2 s is 500 GFLOP/s, half of a 1000 GFLOP/s peak.
  assert peak.mfu(1e12, 2.0, 1000.0) == pytest.approx(0.5)
  # Each step against its own probe: 0.5, 0.25 and 1.0 -> median 0.5.
  assert peak.mfu_vs_probe(1e12, [2.0, 4.0, 1.0], [1000.0, 1000.0, 1000.0]) == pytest.approx(0.5)
  assert peak.mfu_vs_probe(1e12, [1.0, 1.0], [2000.0, 4000.0]) == pytest.approx(0.375)
  assert summary([3.0, 1.0, 2.0]) == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "n": 3}


def test_throughput_of_one_step(repo_root):
  config = command_line.parse(["--config", str(repo_root / "configs" / "tiny.py")],
                              lambda values: None).config
  hop, rate = int(config.data.hop_length), int(config.data.sample_rate)
  out = throughput(config, frames=1000, tokens=50, batch_size=4, step_s=0.5,
                   analytic_flops=2e10, xla_flops=3e10, peak_gflops=100.0)
  assert out["frames_per_s"] == pytest.approx(8000.0)  # 4 x 1000 frames in 0.5 s
  assert out["tokens_per_s"] == pytest.approx(400.0)
  assert out["examples_per_s"] == pytest.approx(8.0)
  assert out["audio_seconds_per_s"] == pytest.approx(8000.0 * hop / rate)
  assert out["achieved_gflops"] == pytest.approx(40.0)  # 20 GFLOP in 0.5 s
  assert out["mfu"] == pytest.approx(0.4)
  assert out["mfu_xla_flops"] == pytest.approx(0.6)


def _train_result(config="configs/default.py", shape="small", step_s=0.5, frames_per_s=8000.0,
                  mfu=0.5, rss=1500.0):
  return {
      "config": config, "shape": shape, "peak_gflops": 200.0,
      "machine": {"date_utc": "2026-01-01 00:00:00"},
      "train": {"batch": 4, "frames": 1000, "tokens": 64, "params": 6_750_000,
                "step": {"median_s": step_s}, "frames_per_s": frames_per_s,
                "tokens_per_s": frames_per_s * 64 / 1000, "analytic_flops": 8.66e10,
                "xla_flops": 8.8e10, "achieved_gflops": 8.66e10 / step_s / 1e9,
                "probe_gflops": [190.0, 192.0, 195.0], "mfu_vs_probe": mfu, "mfu": mfu * 0.9,
                "compile_s": 6.8, "peak_rss_mib": rss},
  }


def _decode_row(batch, beam, cached_s, uncached_s):
  return {"batch": batch, "beam": beam, "frames": 1000, "max_length": 64,
          "cached": {"seconds": cached_s, "decoder_seconds": cached_s / 2},
          "uncached": {"seconds": uncached_s, "decoder_seconds": uncached_s - cached_s / 2}}


def test_train_table_row_is_formatted_from_the_numbers():
  table = report.render_tables([_train_result()]).splitlines()
  assert table[0].startswith("| config / shape | batch x frames / tokens | params | step s |")
  assert table[1] == "|" + "---|" * 15
  assert table[2] == ("| default / small | 4x1000 / 64 | 6.75M | 0.500 | 8000 | 512 | 86.6 | 1.016 "
                      "| 173.2 | 200.0 | 192.0 | 50.0% | 45.0% | 6.8 | 1500 |")
  assert len(table) == 3  # no other section, no other table
  assert report.markdown_table(["a"], []) == []


def test_targets_follow_the_sections_that_ran():
  result = _train_result(mfu=0.75)
  result["recompiles"] = {"compilations": 3, "buckets": 3, "compilations_after_warmup": 0}
  targets = report.targets(result)
  assert targets["train_mfu_ge_0.7"] == {"value": 0.75, "met": True}
  assert targets["recompiles"] == {"value": 0, "met": True}
  assert set(targets) == {"train_mfu_ge_0.7", "recompiles"}


@pytest.fixture
def two_results(tmp_path):
  old = _train_result(step_s=0.5, frames_per_s=8000.0, mfu=0.5, rss=1500.0)
  old["decode"] = [_decode_row(1, 1, 0.2, 1.0), _decode_row(1, 4, 0.4, 2.0)]
  new = _train_result(step_s=0.4, frames_per_s=10000.0, mfu=0.625, rss=1200.0)
  new["decode"] = [_decode_row(1, 1, 0.1, 1.0), _decode_row(8, 1, 0.5, 4.0)]
  new["peak_gflops"] = 220.0
  paths = tmp_path / "old.json", tmp_path / "new.json"
  for path, result in zip(paths, (old, new)):
    path.write_text(json.dumps(result))
  return old, new, paths


def test_compare_matches_rows_by_benchmark_and_shape(two_results):
  old, new, _ = two_results
  rows = {(r["benchmark"], r["shape"], r["metric"]): r for r in report.compare(old, new)}
  train = "4x1000 / 64"
  assert rows[("train", train, "step s")]["new_over_old"] == pytest.approx(0.8)  # 0.4 / 0.5
  assert rows[("train", train, "frames/s")]["new_over_old"] == pytest.approx(1.25)
  assert rows[("train", train, "MFU vs probe")]["new_over_old"] == pytest.approx(1.25)
  assert rows[("train", train, "peak RSS MiB")]["new_over_old"] == pytest.approx(0.8)
  assert rows[("peak", "matmul", "GFLOP/s")]["new_over_old"] == pytest.approx(1.1)
  greedy = ("greedy decode", "batch 1, 1000 frames, 64 tokens")
  assert rows[greedy + ("cached s",)]["new_over_old"] == pytest.approx(0.5)  # 0.1 / 0.2
  assert rows[greedy + ("uncached s",)]["new_over_old"] == pytest.approx(1.0)
  # Rows only one side has: beam 4 at batch 1 (old), greedy at batch 8 (new).
  beam = rows[("beam 4 decode", "batch 1, 1000 frames, 64 tokens", "cached s")]
  assert (beam["old"], beam["new"], beam["new_over_old"]) == (0.4, None, None)
  batch8 = rows[("greedy decode", "batch 8, 1000 frames, 64 tokens", "cached s")]
  assert (batch8["old"], batch8["new"], batch8["new_over_old"]) == (None, 0.5, None)


def test_compare_command_prints_the_ratio_table(two_results, capsys):
  _, _, (old_path, new_path) = two_results
  assert run_cli(benchmark.main, ["--compare", str(old_path), str(new_path)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("new: default / small (2026-01-01")
  assert "| benchmark | shape | metric | old | new | new / old |" in lines
  assert "| train | 4x1000 / 64 | step s | 0.5 | 0.4 | 0.800 |" in lines
  greedy = "| greedy decode | batch 1, 1000 frames, 64 tokens |"
  assert f"{greedy} cached s | 0.2 | 0.1 | 0.500 |" in lines
  assert "| beam 4 decode | batch 1, 1000 frames, 64 tokens | cached s | 0.4 | - | - |" in lines
  train_only = old_path.parent / "train_only.json"
  train_only.write_text(json.dumps(_train_result()))
  assert run_cli(benchmark.main, ["--table", str(train_only)]) == 0
  assert "| default / small | 4x1000 / 64 | 6.75M | 0.500 |" in capsys.readouterr().out


def test_command_line_errors_name_the_flag(tmp_path, repo_root, capsys):
  tiny = str(repo_root / "configs" / "tiny.py")
  for argv, needle in [
      (["--compare", str(tmp_path / "missing.json"), str(tmp_path / "x.json")], "missing.json"),
      (["--config", tiny, "--config.train.sed=3"], "--config.train.sed"),
      (["--config.train.seed=3"], "needs --config FILE"),
      (["--config", tiny, "--decode-batches", "1"], "decode-batches"),
      (["--config", tiny, "--what", "train,nonsense"], "nonsense"),
  ]:
    assert run_cli(benchmark.main, argv) == EXIT_USER_ERROR, argv
    assert needle in capsys.readouterr().err, argv
  with pytest.raises(UserError):
    benchmark.main(["--config", tiny, "--config.train.seed=x"])  # not an integer


def test_tiny_train_run_is_consistent(repo_root, tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert run_cli(benchmark.main, [
      "--config", str(repo_root / "configs" / "tiny.py"), "--what", "train", "--steps", "2",
      "--warmup", "1", "--config.data.bucket_frames=(128,)",
      "--config.data.bucket_batch_sizes=(8,)",
      "--config.data.max_target_length=12", "--peak_size", "256", "--out", str(out)]) == 0
  printed = json.loads(capsys.readouterr().out)
  result = json.loads(out.read_text())
  assert printed["targets"] == result["targets"]
  t = result["train"]
  assert (t["batch"], t["frames"], t["tokens"]) == (8, 128, 12)  # the overrides took effect
  assert len(t["step_times_s"]) == len(t["probe_gflops"]) == 2
  step_s = t["step"]["median_s"]
  assert step_s == pytest.approx(np.median(t["step_times_s"]))
  assert t["frames_per_s"] == pytest.approx(8 * 128 / step_s)
  assert t["tokens_per_s"] == pytest.approx(8 * 12 / step_s)
  assert t["achieved_gflops"] == pytest.approx(t["analytic_flops"] / step_s / 1e9)
  assert t["mfu"] == pytest.approx(t["achieved_gflops"] / result["peak_gflops"])
  assert t["mfu_vs_probe"] == pytest.approx(np.median(
      [t["analytic_flops"] / s / 1e9 / p for s, p in zip(t["step_times_s"], t["probe_gflops"])]))
  assert t["xla_over_analytic"] == pytest.approx(t["xla_flops"] / t["analytic_flops"])
  assert result["peak_gflops"] >= max(result["peak_start"]["gflops"],
                                      result["peak_end"]["gflops"], *t["probe_gflops"])
  assert result["targets"]["train_mfu_ge_0.7"]["value"] == t["mfu_vs_probe"]
  assert set(result["section_seconds"]) == {"peak_start", "train", "peak_end"}
  assert result["peak_start"]["size"] == result["peak_end"]["size"] == 256
  # The result reads back as a table row and compares with itself as 1.000 everywhere.
  assert "| tiny | 8x128 / 12 |" in report.render_tables([result])
  ratios = [r["new_over_old"] for r in report.compare(result, result)]
  assert ratios and all(r == pytest.approx(1.0) for r in ratios)


def test_matmul_dtype_orientations_are_a_dense_layers_three_products():
  """The dtypes section's three einsums are x w, g w^T and x^T g (checked against jax's own
  gradients of x @ w), its speed-up is the ratio of its two rates, and its table and --compare
  rows come from those numbers."""
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
  w = jax.random.normal(jax.random.PRNGKey(1), (4, 5))
  g = jax.random.normal(jax.random.PRNGKey(2), (6, 5))
  out, vjp = jax.vjp(lambda x, w: x @ w, x, w)
  dx, dw = vjp(g)
  spec = operators.MATMUL_ORIENTATIONS
  assert tuple(spec) == report.GEMM_PRODUCTS
  np.testing.assert_allclose(jnp.einsum(spec["forward"], x, w), out, rtol=1e-6)
  np.testing.assert_allclose(jnp.einsum(spec["input_gradient"], g, w), dx, rtol=1e-6)
  np.testing.assert_allclose(jnp.einsum(spec["weight_gradient"], x, g), dw, rtol=1e-6)

  result = operators.bench_matmul_dtypes(64, 32, 48, repeats=1)
  assert result["shape"] == {"rows": 64, "inner": 32, "cols": 48}
  for orientation in spec:
    rates = result[orientation]
    assert set(rates) == set(operators.MATMUL_DTYPES) | {"bfloat16_float32_accumulation_speedup"}
    assert rates["bfloat16_float32_accumulation_speedup"] == pytest.approx(
        rates["bfloat16_accumulating_float32"] / rates["float32"])
  train = {"float32_step_s": 1.0, "bfloat16_step_s": 0.8, "bfloat16_speedup": 1.25,
           "pairs_s": [[1.0, 0.8]], "batch": 2, "frames": 100, "tokens": 9}
  dtypes = {"config": "configs/x.py", "dtypes": {"train": train, "gemm": result}}
  table = report.render_tables([dtypes]).splitlines()
  assert table[0].startswith("| config / shape | batch x frames / tokens | float32 step s |")
  assert table[2] == "| x | 2x100 / 9 | 1.000 | 0.800 | 1.250 | 1 |"
  assert table[4].startswith("| config / shape | GEMM | product | float32 GFLOP/s |")
  assert [row.split(" | ")[1:3] for row in table[6:9]] == [
      ["64x32 @ 32x48", "forward"], ["64x32 @ 32x48", "input gradient"],
      ["64x32 @ 32x48", "weight gradient"]]
  rows = report.headline_numbers(dtypes)
  assert rows[("matmul forward", "float32", "GFLOP/s")] == result["forward"]["float32"]
  assert rows[("train float32 vs bfloat16", "2x100 / 9", "bfloat16 step s")] == 0.8
  assert len(rows) == 11
  assert report.targets(dtypes) == {}  # rates, not targets


def test_alternate_steps_times_pairs_in_alternating_order():
  calls = []
  pairs = bench_train.alternate_steps(lambda: calls.append("a"), lambda: calls.append("b"),
                                      steps=4, warmup=1)
  assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
  assert len(pairs) == 4 and all(len(p) == 2 and min(p) >= 0 for p in pairs)


def test_attention_core_benchmark_times_formulations_with_equal_gradients():
  result = operators.bench_attention_core(batch=2, frames=24, heads=2, d_model=16, repeats=1)
  variants = ("select_mask_autodiff", "bias_mask_autodiff", "softmax_attention",
              "head_blocked_attention")
  assert all(result[f"{name}_s"] > 0 for name in variants)
  assert result["max_abs_gradient_difference"] < 1e-4  # every variant is the same function
  assert result["head_blocked_speedup"] == pytest.approx(
      result["softmax_attention_s"] / result["head_blocked_attention_s"])
  assert result["head_blocked_forward_speedup"] == pytest.approx(
      result["forward_softmax_attention_s"] / result["forward_head_blocked_attention_s"])


def test_profile_breakdown_partitions_the_traced_op_time(tmp_path):
  """Groups, modules and the contraction split each add up to the traced op time, and the
  autodiff wrappers of the model's op names read as forward / backward."""
  x = jnp.ones((64, 64), jnp.float32)
  compiled = jax.jit(lambda a: jnp.sum(jnp.tanh(a @ a) * 2.0)).lower(x).compile()
  jax.block_until_ready(compiled(x))
  with jax.profiler.trace(str(tmp_path)):
    for _ in range(3):
      jax.block_until_ready(compiled(x))
  trace = glob.glob(os.path.join(str(tmp_path), "plugins", "profile", "*", "*.trace.json.gz"))
  result = profile_breakdown(trace[0], compiled.as_text(), top=1000)
  assert result["op_seconds"] > 0
  for key in ("top", "modules"):
    assert sum(row["seconds"] for row in result[key]) == pytest.approx(result["op_seconds"])
  assert 0 < result["contraction_seconds"] <= result["op_seconds"]
  assert source_group("jit(step_fn)/transpose(jvp(EchoModel.forward))/EchoModel.encode/"
                      "encoder/blocks_3/mlp/fc1/dot_general") == (
                          "backward/EchoModel.encode/encoder/blocks/mlp/fc1/dot_general")
  assert source_group("jit(step_fn)/jvp(EchoModel)/a_1/b") == "forward/a/b"
