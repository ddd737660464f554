"""compile_for: the trainer's steps compiled from abstract shapes, for a real TPU slice (libtpu from
launch/setup.sh) and for the 8 CPU test devices; memory numbers against the bytes the inputs hold."""

import contextlib
import importlib
import os
import platform

import jax
import numpy as np
import pytest

from echo_jax import compile_for
from echo_jax.training import optim
from echo_jax.parallel import param_sharding
from echo_jax.parallel import sharding
from echo_jax.perf import tpu_chips
from echo_jax.models import building
from echo_jax.training import setup as train_setup

VOCAB = 40


def _tiny():
  config = importlib.import_module("configs.tiny").get_config()
  config.model.vocab_size = VOCAB
  return config


def _input_bytes_per_device(config, mode, num_devices, batch_size, frames):
  """Bytes of (train state + global batch) that one device holds: what the step takes in."""
  config = compile_for.resolved_config(config)
  config.train.param_sharding = mode
  mesh = sharding.make_mesh(jax.devices()[:num_devices])
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  abstract = train_setup.abstract_train_state(model, tx, config)
  shardings = train_setup.state_shardings(abstract, mesh, tx, config.train)
  state = param_sharding.bytes_per_device(abstract, shardings)
  one = building.example_batch(config, 1, frames)
  batch = sum(v.nbytes for v in one.values()) * batch_size // num_devices
  return state, batch


def test_abstract_state_is_the_trainers_state():
  config = _tiny()
  model = building.build_model(config)
  tx = optim.make_optimizer(config.train)
  mesh = sharding.make_mesh(jax.devices()[:1])
  state, _ = train_setup.create_train_state(model, tx, config, mesh)
  abstract = train_setup.abstract_train_state(model, tx, config)
  real = jax.tree_util.tree_structure(state)
  assert jax.tree_util.tree_structure(abstract) == real
  for a, r in zip(jax.tree.leaves(abstract), jax.tree.leaves(state)):
    assert (a.shape, a.dtype) == (r.shape, r.dtype)


def test_batch_shape_vocab_and_topology_names():
  config = importlib.import_module("configs.base").get_config()
  assert compile_for.train_batch_shape(config, 4) == (8, 2048)  # the longest bucket on 4 chips
  assert compile_for.resolved_config(config).model.vocab_size == config.data.vocab_size == 4000
  assert config.model.vocab_size == -1  # the caller's config is left alone
  assert compile_for.resolved_config(_tiny()).model.vocab_size == VOCAB
  assert tpu_chips.topology_name("v5litepod-16") == "v5e:4x4"
  assert tpu_chips.topology_name("v4-16") == "v4:2x2x2"  # v4 names count TensorCores
  chip, shape = tpu_chips.parse_topology("v4:2x2x2")
  assert chip.hbm_bytes == 32 * tpu_chips.GIB and tpu_chips.num_chips(shape) == 8
  with pytest.raises(ValueError, match="v5e:4x4"):
    tpu_chips.topology_name("v5e-4x4")
  with pytest.raises(ValueError, match="unknown TPU generation"):
    tpu_chips.parse_topology("v9:2x2")


def test_largest_fitting_matches_a_linear_scan_in_few_calls():
  for limit in (1, 7, 64, 100):
    for best in range(0, limit + 3):
      for start in (1, 2, best - 1, best, best + 1, limit):
        calls = []

        def fits(n):
          calls.append(n)
          return n <= best

        expected = min(best, limit)
        assert compile_for.largest_fitting(fits, limit, start) == expected, (limit, best, start)
        assert all(1 <= n <= limit for n in calls)
        distance = abs(expected - min(max(start, 1), limit)) + 1
        assert len(calls) <= 2 * int(np.log2(distance)) + 3


@pytest.fixture(scope="module")
def cpu_reports():
  """The tiny config's train step compiled for the 8 CPU devices, replicated and FSDP."""
  config = _tiny()
  config.train.fsdp_min_size = 1024
  reports = {}
  for mode in ("replicated", "fsdp"):
    reports[mode] = compile_for.compile_steps(config, "cpu:8", mode, steps=("train",),
                                              devices=jax.devices(), hbm_bytes=1 << 30)[0]
  return config, reports


def test_cpu_compile_arguments_are_the_state_and_batch_shard(cpu_reports):
  config, reports = cpu_reports
  batch_size, frames = compile_for.train_batch_shape(config, 8)
  for mode, report in reports.items():
    assert not report.error, report.error
    assert (report.global_batch, report.frames, report.num_chips) == (batch_size, frames, 8)
    state, batch = _input_bytes_per_device(config, mode, 8, batch_size, frames)
    assert report.params_bytes + report.opt_state_bytes < state  # plus step, rng, counters
    # jit drops inputs a step never reads (the train step ignores `valid`, 1 byte per row).
    assert state + batch - batch_size // 8 <= report.argument_bytes <= state + batch, mode
    assert report.alias_bytes == state  # the donated state is updated in place
    assert report.flops > 0 and report.fits


def test_cpu_compile_shows_the_fsdp_memory_saving(cpu_reports):
  _, reports = cpu_reports
  rep, fsdp = reports["replicated"], reports["fsdp"]
  saved = (rep.params_bytes + rep.opt_state_bytes) - (fsdp.params_bytes + fsdp.opt_state_bytes)
  assert saved > 0.5 * (rep.params_bytes + rep.opt_state_bytes)
  assert rep.argument_bytes - fsdp.argument_bytes == saved
  assert fsdp.total_bytes < rep.total_bytes


def test_bad_batch_is_reported_not_compiled():
  config = _tiny()  # bucket batch 8 does not split over 3 devices
  report = compile_for.compile_steps(config, "cpu:3", steps=("train",), devices=jax.devices()[:3],
                                     hbm_bytes=1 << 30)[0]
  assert report.error.startswith("bad batch") and "bucket_batch_sizes" in report.error
  assert not report.fits and report.argument_bytes == 0


def test_libtpu_is_loaded_without_the_cpu_backends_flags():
  flags = ("--xla_force_host_platform_device_count=8 --xla_cpu_use_fusion_emitters=false "
           "--xla_backend_optimization_level=0 --xla_cpu_enable_fast_math=false")
  assert compile_for.flags_for_libtpu(flags) == (
      "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
  assert compile_for.flags_for_libtpu("") == ""


def test_missing_libtpu_error_says_how_to_install(monkeypatch):
  monkeypatch.setattr(compile_for, "find_libtpu", lambda: None)
  with pytest.raises(compile_for.LibtpuMissing, match="launch/install_libtpu.sh"):
    compile_for.topology_devices("v5e:2x2")


@contextlib.contextmanager
def tpu_compile_at_O0():
  """XLA optimisation level 0 for a TPU compile in a test: 3x faster on this CPU (93 s vs 256 s
  for the one-layer base step on a v5e 4x4); what the tests check (shapes, donation, argument
  bytes, fitting in HBM) does not depend on the optimised schedule."""
  before = jax.config.jax_optimization_level
  jax.config.update("jax_optimization_level", "O0")
  try:
    yield
  finally:
    jax.config.update("jax_optimization_level", before)


def _require_libtpu():
  if compile_for.find_libtpu() is not None:
    return
  if platform.system() == "Linux" and platform.machine() == "x86_64":
    pytest.fail("libtpu is missing from .venv/libtpu: run `bash launch/setup.sh` (it calls "
                "launch/install_libtpu.sh)")
  pytest.skip(f"libtpu has no wheel for {platform.system()} {platform.machine()} (Linux x86_64 "
              "only), so XLA cannot compile for TPUs here")


@pytest.fixture(scope="module")
def tpu_train_report():
  _require_libtpu()
  # The tests' XLA_FLAGS hold a CPU-only flag (tests/xla_flags.py) that libtpu would abort on.
  assert "--xla_cpu_" in os.environ["XLA_FLAGS"]
  config = importlib.import_module("configs.default").get_config()
  with tpu_compile_at_O0():
    return config, compile_for.compile_steps(config, "v5e:2x2", steps=("train",))[0]


def test_default_config_compiles_and_fits_on_a_v5e_2x2(tpu_train_report):
  config, report = tpu_train_report
  assert not report.error, report.error
  assert (report.num_chips, report.hbm_bytes) == (4, 16 * tpu_chips.GIB)
  batch_size, frames = compile_for.train_batch_shape(config, 4)
  assert (report.global_batch, report.frames) == (batch_size, frames) == (8, 1152)
  state, batch = _input_bytes_per_device(config, "replicated", 4, batch_size, frames)
  # TPU layouts pad small dimensions to (8, 128) tiles: at least the real bytes, a bit more.
  assert state + batch <= report.argument_bytes <= 1.5 * (state + batch)
  assert report.alias_bytes >= state  # donated state
  assert report.fits and report.total_bytes < report.hbm_bytes
  assert report.flops > 0


def test_cli_rejects_bad_input_with_exit_2(repo_root, monkeypatch, capsys):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  tiny = str(repo_root / "configs" / "tiny.py")
  assert compile_for.main(["--config", tiny, "--topology", "v5e-4x4"]) == 2
  assert "v5e:4x4" in capsys.readouterr().err
  assert compile_for.main(["--config", tiny, "--topology", "v5e:2x2",
                           "--config.train.param_shardin=fsdp"]) == 2  # a typo is not a new field
  assert "train.param_shardin" in capsys.readouterr().err
  assert compile_for.main(["--config", str(repo_root / "configs" / "nope.py"),
                           "--topology", "v5e:2x2"]) == 2


def test_a_program_larger_than_hbm_is_reported_as_not_fitting(tpu_train_report):
  from jax.sharding import NamedSharding, PartitionSpec as P
  chip, devices = compile_for.topology_devices("v5e:2x2")
  mesh = sharding.make_mesh(devices)
  rows = jax.ShapeDtypeStruct((100_000, 1000), np.float32, sharding=NamedSharding(mesh, P()))
  outer = jax.jit(lambda x: x @ x.T, out_shardings=NamedSharding(mesh, P()))  # 40 GB per chip
  report = compile_for.StepReport("v5e:2x2", "outer", "replicated", 4, 1, 1, chip.hbm_bytes)
  compile_for._compile_into(report, outer, rows)  # pylint: disable=protected-access
  assert report.error.startswith("out of HBM") and not report.fits
