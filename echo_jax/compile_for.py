"""Compile the real train/eval/decode steps for a TPU topology, without a TPU: memory per chip, FLOPs.

  python -m echo_jax.compile_for --config configs/base.py --topology v5e:4x4 [--topology v4:2x2x2]
      [--config.model.dtype=bfloat16] [--param_sharding replicated --param_sharding fsdp]
      [--global_batch N] [--steps train,eval,generate] [--find_max_batch] [--json | --markdown]

With libtpu installed (`bash launch/install_libtpu.sh` puts it in .venv/libtpu) JAX can describe
a TPU slice on any machine and XLA:TPU compiles for it. We build the trainer's own jitted steps
(`training.steps.make_train_step`, `make_eval_step`, `make_generate`) over `sharding.make_mesh` of
the slice's devices from the trainer's set-up (`training.setup.create_training_setup` with
`abstract=True`), feed them abstract shapes only (the train state from `jax.eval_shape`, the batch
of the longest bucket), and read the compiled program's memory and cost analyses. A config that
is too big fails here, in seconds, instead of on a rented pod.
Exit status: 0 when every train step fits, 1 when one does not (or fails to compile), 2 on bad
input or a missing libtpu.
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import flags

from echo_jax.config import command_line
from echo_jax.data import pipeline
from echo_jax.data.tokenizer import expected_vocab_size
from echo_jax.errors import UserError, run_cli, user_message
from echo_jax.perf import tpu_chips

REPO = pathlib.Path(__file__).resolve().parents[1]
LIBTPU_DIR = REPO / ".venv" / "libtpu"
STEPS = ("train", "eval", "generate")


class LibtpuMissing(RuntimeError):
  """libtpu (the TPU compiler) is not installed for this platform."""


def find_libtpu() -> Optional[str]:
  """Path of libtpu.so: $TPU_LIBRARY_PATH, .venv/libtpu (launch/install_libtpu.sh), or site."""
  candidates = [os.environ.get("TPU_LIBRARY_PATH", ""),
                str(LIBTPU_DIR / "libtpu" / "libtpu.so")]
  import importlib.util
  spec = importlib.util.find_spec("libtpu")
  if spec is not None and spec.submodule_search_locations:
    candidates += [os.path.join(p, "libtpu.so") for p in spec.submodule_search_locations]
  return next((c for c in candidates if c and os.path.isfile(c)), None)


def flags_for_libtpu(xla_flags: str) -> str:
  """XLA_FLAGS without the CPU backend's own flags (--xla_cpu_*)."""
  return " ".join(flag for flag in xla_flags.split() if not flag.startswith("--xla_cpu_"))


@contextlib.contextmanager
def libtpu_xla_flags():
  """XLA_FLAGS as flags_for_libtpu gives them, for as long as libtpu may read them.

  libtpu parses XLA_FLAGS on first use (loading a topology, a first compile) and aborts the whole
  process on a flag it does not know, which the CPU-only ones are. This process's CPU backend
  read them when it started, so they stay in force for it.
  """
  saved = os.environ.get("XLA_FLAGS")
  if saved is not None:
    os.environ["XLA_FLAGS"] = flags_for_libtpu(saved)
  try:
    yield
  finally:
    if saved is not None:
      os.environ["XLA_FLAGS"] = saved


def topology_devices(topology: str):
  """(TpuChip, devices) of a TPU slice such as 'v5e:4x4', described by libtpu on this machine."""
  topology = tpu_chips.topology_name(topology)
  chip, shape = tpu_chips.parse_topology(topology)
  library = find_libtpu()
  if library is None:
    raise LibtpuMissing(
        "libtpu is not installed, so XLA cannot compile for TPUs here; run "
        "`bash launch/install_libtpu.sh` (installs libtpu into .venv/libtpu; Linux x86_64 only) "
        "or set TPU_LIBRARY_PATH to a libtpu.so.")
  import jax
  from jax.experimental import topologies
  jax.devices()  # settle this process's own backends first, so they never pick up libtpu
  # libtpu is loaded once per process, from TPU_LIBRARY_PATH; without a TPU it must not query a
  # GCE metadata server (it retries for minutes), and compiling claims no chip, so several
  # processes may load it at once (else the second fails on /tmp/libtpu_lockfile). The variables
  # are only needed while it loads.
  env = {"TPU_LIBRARY_PATH": library, "TPU_SKIP_MDS_QUERY": "1",
         "TPU_WORKER_HOSTNAMES": "localhost", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  saved = {k: os.environ.get(k) for k in env}
  for key, value in env.items():
    os.environ.setdefault(key, value)
  try:
    # v4 and v5p chips are one "megacore" device each, as JAX sees them on a real slice.
    options = {"chip_config_name": "megacore"} if chip.megacore else {}
    with libtpu_xla_flags():
      devices = topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                             **options).devices
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
  expected = tpu_chips.num_chips(shape)
  if len(devices) != expected or devices[0].device_kind != chip.device_kind:
    raise ValueError(f"--topology {topology!r}: libtpu described {len(devices)} "
                     f"{devices[0].device_kind!r} devices, expected {expected} {chip.device_kind!r}.")
  return chip, list(devices)


# ----------------------------------------------------------------------------------------------
# The trainer's steps on abstract inputs.


def resolved_config(config):
  """An unlocked copy with model.vocab_size set as the tokenizer would set it, and the
  whole-tensor attention of accelerators (the CPU host that compiles would pick the CPU's blocks)."""
  import ml_collections
  config = ml_collections.ConfigDict(config.to_dict())
  if int(config.model.vocab_size) == -1:
    config.model.vocab_size = expected_vocab_size(config.data)
  config.model.attention_block_above_mib = 0.0
  return config


def train_batch_shape(config, num_devices: int):
  """(global batch, frames) of the longest bucket on `num_devices` chips: the largest activations
  of any train step (per-device sizes scale with the chips, as in the pipeline)."""
  edges = [int(e) for e in config.data.bucket_frames]
  longest = max(range(len(edges)), key=lambda i: edges[i])
  return pipeline.global_batch_sizes(config.data, num_devices).buckets[longest], edges[longest]


def abstract_batch(config, batch_size: int, frames: int, mesh) -> Dict[str, Any]:
  """ShapeDtypeStructs of a global batch in the documented format, sharded over `data`."""
  # these import jax, which must not load before main() sets JAX_PLATFORMS (claim no device)
  import jax
  from echo_jax.models.building import example_batch
  from echo_jax.parallel import sharding as sharding_lib
  one = example_batch(config, 1, frames)
  spec = sharding_lib.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], v.dtype, sharding=spec)
          for k, v in one.items()}


@dataclasses.dataclass
class StepReport:
  """One compiled step on one topology; byte counts are per chip."""
  topology: str
  step: str
  param_sharding: str
  num_chips: int
  global_batch: int
  frames: int
  hbm_bytes: int
  argument_bytes: int = 0
  output_bytes: int = 0
  alias_bytes: int = 0
  temp_bytes: int = 0
  code_bytes: int = 0
  params_bytes: int = 0     # parameters held per chip
  opt_state_bytes: int = 0  # optimizer state held per chip (train only)
  flops: float = 0.0        # per chip per step, from the compiled cost analysis
  compile_seconds: float = 0.0
  error: str = ""           # compile failure (e.g. out of HBM) or bad batch

  @property
  def total_bytes(self) -> int:
    """Peak HBM of the program: live arguments and outputs (donated ones once), temps, code."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
            + self.code_bytes)

  @property
  def fits(self) -> bool:
    return not self.error and self.total_bytes <= self.hbm_bytes * tpu_chips.usable_fraction

  def as_dict(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out.update(total_bytes=self.total_bytes, fits=self.fits)
    return out


def _cost_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


_OOM = re.compile(r"RESOURCE_EXHAUSTED|[Rr]an out of memory|exceeds? .*memory", re.S)


def _compile_into(report: StepReport, jitted, *args) -> StepReport:
  started = time.perf_counter()
  try:
    with libtpu_xla_flags():
      compiled = jitted.lower(*args).compile()
  except Exception as e:  # XLA reports out-of-HBM as a compile error; keep the others too
    message = str(e).strip().splitlines()
    text = " ".join(message[:3])[:400]
    report.error = ("out of HBM: " if _OOM.search(str(e)) else "compile failed: ") + text
    report.compile_seconds = time.perf_counter() - started
    return report
  report.compile_seconds = time.perf_counter() - started
  memory = compiled.memory_analysis()
  report.argument_bytes = int(memory.argument_size_in_bytes)
  report.output_bytes = int(memory.output_size_in_bytes)
  report.alias_bytes = int(memory.alias_size_in_bytes)
  report.temp_bytes = int(memory.temp_size_in_bytes)
  report.code_bytes = int(memory.generated_code_size_in_bytes)
  report.flops = _cost_flops(compiled)
  return report


def compile_steps(config, topology: str, param_sharding: Optional[str] = None,
                  global_batch: Optional[int] = None, steps: Sequence[str] = STEPS,
                  devices=None, hbm_bytes: Optional[int] = None) -> List[StepReport]:
  """Compiles the trainer's steps for `topology` (or for `devices`, e.g. CPU devices in tests).

  The train step gets the longest bucket's global batch (or `global_batch`), eval and generate
  get data.eval_batch_size rows of the longest bucket. Nothing is initialised or executed.
  """
  # these import jax, which must not load before main() sets JAX_PLATFORMS (claim no device)
  from echo_jax.config import check as config_check
  from echo_jax.parallel import param_sharding as fsdp_lib
  from echo_jax.parallel import sharding as sharding_lib
  from echo_jax.training import setup as setup_lib
  from echo_jax.training import steps as steps_lib
  unknown = [s for s in steps if s not in STEPS]
  if unknown:
    raise ValueError(f"steps {unknown} unknown; choose from {list(STEPS)}")
  config = resolved_config(config)
  if param_sharding is not None:
    config.train.param_sharding = param_sharding
  config_check.validate_config(config)
  if devices is None:
    chip, devices = topology_devices(topology)
    hbm_bytes = chip.hbm_bytes
  mode = str(config.train.param_sharding)
  num = len(devices)
  batch_size, frames = train_batch_shape(config, num)
  eval_size = pipeline.global_batch_sizes(config.data, num).eval

  def report(step, size):
    return StepReport(topology=topology, step=step, param_sharding=mode, num_chips=num,
                      global_batch=size, frames=frames, hbm_bytes=int(hbm_bytes or 0))

  bad_batch = ""
  if global_batch is not None:
    batch_size = int(global_batch)
    if batch_size < 1 or batch_size % num:
      bad_batch = (f"global batch {batch_size} is not a positive multiple of the {num} chips")
  else:
    try:
      config_check.validate_batch_sizes(config, num)
    except config_check.ConfigError as e:
      bad_batch = str(e)
  if eval_size % num:
    eval_bad = f"data.eval_batch_size={eval_size} is not a multiple of the {num} chips"
  else:
    eval_bad = ""

  mesh = sharding_lib.make_mesh(devices)
  run = setup_lib.create_training_setup(config, mesh, abstract=True)
  model, shardings = run.model, run.shardings
  params_bytes = fsdp_lib.bytes_per_device(run.state.params, shardings.params)
  opt_bytes = fsdp_lib.bytes_per_device(run.state.opt_state, shardings.opt_state)
  params = run.state.params

  reports = []
  for step in steps:
    size = batch_size if step == "train" else eval_size
    r = report(step, size)
    r.params_bytes = params_bytes
    r.opt_state_bytes = opt_bytes if step == "train" else 0
    problem = bad_batch if step == "train" else eval_bad
    if problem:
      r.error = "bad batch: " + problem
      reports.append(r)
      continue
    batch = abstract_batch(config, size, frames, mesh)
    if step == "train":
      jitted = steps_lib.make_train_step(model, run.tx, run.schedule, mesh, shardings,
                                         train_config=config.train, data_config=config.data)
      reports.append(_compile_into(r, jitted, run.state, batch))
    elif step == "eval":
      jitted = steps_lib.make_eval_step(model, mesh, shardings.params)
      reports.append(_compile_into(r, jitted, params, batch))
    else:
      jitted = steps_lib.make_generate(model, mesh, shardings.params,
                                       int(config.decode.max_length))
      reports.append(_compile_into(r, jitted, params, batch))
  return reports


def find_max_batch(config, topology: str, param_sharding: Optional[str] = None,
                   limit_per_chip: int = 4096, devices=None,
                   hbm_bytes: Optional[int] = None) -> (int, Optional[StepReport]):
  """Largest global batch (a multiple of the chip count) whose train step fits in HBM.

  Compiles 1 and 2 rows per chip, extrapolates the memory (about affine in the batch) to a first
  guess, then searches outward from it and bisects, compiling each candidate: the answer is
  always a compiled, fitting batch. Returns (0, report of one row per chip) when nothing fits.
  """
  if devices is None:
    chip, devices = topology_devices(topology)
    hbm_bytes = chip.hbm_bytes
  num = len(devices)
  cache: Dict[int, StepReport] = {}

  def compiled(rows_per_chip: int) -> StepReport:
    if rows_per_chip not in cache:
      cache[rows_per_chip] = compile_steps(
          config, topology, param_sharding, global_batch=rows_per_chip * num, steps=("train",),
          devices=devices, hbm_bytes=hbm_bytes)[0]
    return cache[rows_per_chip]

  guess = 1
  one, two = compiled(1), compiled(2)
  per_row = two.total_bytes - one.total_bytes
  if one.fits and two.fits and per_row > 0:
    budget = int(hbm_bytes) * tpu_chips.usable_fraction
    guess = int((budget - one.total_bytes) // per_row) + 1
  rows = largest_fitting(lambda n: compiled(n).fits, limit_per_chip, start=guess)
  return rows * num, cache[max(rows, 1)]


def largest_fitting(fits, limit: int, start: int = 1) -> int:
  """Largest n in [1, limit] with fits(n), for a monotone `fits` (True up to some n); 0 if none.

  Steps away from `start` (a guess) by 1, 2, 4, ... until the answer is bracketed, then
  bisects: about 2*log2(|answer - start|) + 2 calls.
  """
  start = min(max(int(start), 1), limit)
  if fits(start):
    low, high, step = start, None, 1
    while high is None:
      candidate = low + step
      if candidate > limit:
        high = limit + 1
      elif fits(candidate):
        low, step = candidate, step * 2
      else:
        high = candidate
  else:
    low, high, step = None, start, 1
    while low is None:
      candidate = max(high - step, 1)
      if fits(candidate):
        low = candidate
      elif candidate == 1:
        return 0
      else:
        high, step = candidate, step * 2
  while high - low > 1:  # fits(low); high > limit or not fits(high)
    mid = (low + high) // 2
    if fits(mid):
      low = mid
    else:
      high = mid
  return low


# ----------------------------------------------------------------------------------------------
# Command line.


def _mib(n: float) -> str:
  return f"{n / (1 << 20):.1f}"


def format_table(reports: Sequence[StepReport]) -> str:
  """One line per compiled step: memory per chip in MiB, HBM share, GFLOPs per chip."""
  head = (f"{'topology':<10} {'step':<9} {'sharding':<10} {'batch':>5} {'frames':>6} "
          f"{'params':>8} {'opt':>8} {'args':>8} {'out':>8} {'temp':>8} {'total':>8} "
          f"{'HBM':>8} {'used':>6} {'GFLOP/chip':>10}  fits")
  lines = [head, "-" * len(head)]
  for r in reports:
    prefix = (f"{r.topology:<10} {r.step:<9} {r.param_sharding:<10} {r.global_batch:>5} "
              f"{r.frames:>6} {_mib(r.params_bytes):>8} {_mib(r.opt_state_bytes):>8} ")
    if r.error:
      lines.append(prefix + f"NO: {r.error}")
      continue
    used = r.total_bytes / r.hbm_bytes if r.hbm_bytes else float("nan")
    lines.append(prefix + f"{_mib(r.argument_bytes):>8} {_mib(r.output_bytes):>8} "
                 f"{_mib(r.temp_bytes):>8} {_mib(r.total_bytes):>8} {_mib(r.hbm_bytes):>8} "
                 f"{used:>6.1%} {r.flops / 1e9:>10.2f}  {'yes' if r.fits else 'NO'}")
  lines.append("memory in MiB per chip; total = args + out - donated + temp + code; fits = "
               f"total <= {tpu_chips_usable():.0%} of HBM; GFLOP/chip from XLA's cost analysis "
               "(generate: one decoding-loop iteration)")
  return "\n".join(lines)


def tpu_chips_usable() -> float:
  return tpu_chips.usable_fraction


def format_markdown(reports: Sequence[StepReport], config_name: str) -> str:
  """README table rows: config, topology, step, sharding, batch, memory per chip, fits, FLOPs."""
  lines = ["| config | topology (chips) | step | sharding | global batch x frames | "
           "params+opt / chip | total / chip (HBM) | fits | GFLOP / chip | GFLOP / step |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in reports:
    head = (f"| {config_name} | {r.topology} ({r.num_chips}) | {r.step} | {r.param_sharding} | "
            f"{r.global_batch} x {r.frames} | "
            f"{(r.params_bytes + r.opt_state_bytes) / (1 << 20):.1f} MiB | ")
    if r.error:
      lines.append(head + f"- | no: {r.error[:200]} | - | - |")
      continue
    lines.append(head + f"{r.total_bytes / (1 << 20):.1f} MiB ({r.hbm_bytes >> 30} GiB) | "
                 f"{'yes' if r.fits else 'NO'} | {r.flops / 1e9:.2f} | "
                 f"{r.flops * r.num_chips / 1e9:.1f} |")
  return "\n".join(lines)


def define_flags(values) -> None:
  """The command's flags (besides --config and its --config.a.b=v overrides), on `values`."""
  flags.DEFINE_multi_string("topology", None, "TPU slice, e.g. v5e:2x2, v5e:4x4, v4:2x2x2, or an "
                            "accelerator type such as v5litepod-16 (repeatable)",
                            flag_values=values)
  flags.DEFINE_multi_string("param_sharding", None, "replicated | fsdp (repeatable to compare; "
                            "default: the config's)", flag_values=values)
  flags.DEFINE_integer("global_batch", None, "train global batch instead of the longest bucket's",
                       flag_values=values)
  flags.DEFINE_string("steps", ",".join(STEPS), "comma list of train,eval,generate",
                      flag_values=values)
  flags.DEFINE_bool("find_max_batch", False, "also search the largest global train batch that "
                    "fits", flag_values=values)
  flags.DEFINE_bool("json", False, "print JSON records instead of a table", flag_values=values)
  flags.DEFINE_bool("markdown", False, "print a Markdown table", flag_values=values)


def main(argv=None) -> int:
  os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile for TPUs; never claim local devices
  try:
    args = command_line.parse(sys.argv[1:] if argv is None else argv, define_flags,
                              "python -m echo_jax.compile_for", __doc__)
    if args.args:
      raise UserError(f"unexpected arguments {args.args}")
    if args.config is None or not args.topology:
      raise UserError("--config FILE and --topology SLICE are required, e.g. --config "
                      "configs/base.py --topology v5e:4x4")
  except UserError as e:  # a missing or bad flag, file or field: the message names it
    print(f"error: {user_message(e)}", file=sys.stderr)
    return 2
  config = args.config
  modes = args.param_sharding or [str(config.train.param_sharding)]
  steps = [s for s in args.steps.split(",") if s]

  reports: List[StepReport] = []
  searches = []
  try:
    for topology in [tpu_chips.topology_name(t) for t in args.topology]:
      for mode in modes:
        reports += compile_steps(config, topology, mode, global_batch=args.global_batch,
                                 steps=steps)
        if args.find_max_batch:
          best, best_report = find_max_batch(config, topology, mode)
          searches.append({"topology": topology, "param_sharding": mode,
                           "max_global_batch": best,
                           "report": best_report.as_dict() if best_report else None})
  except LibtpuMissing as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except ValueError as e:  # bad topology or config: the message names the item and the fix
    print(f"error: {e}", file=sys.stderr)
    return 2

  if args.json:
    print(json.dumps({"config": args.config_path, "steps": [r.as_dict() for r in reports],
                      "max_batch": searches}, indent=1))
  elif args.markdown:
    print(format_markdown(reports, os.path.basename(args.config_path)))
  else:
    print(f"config {args.config_path}")
    print(format_table(reports))
    for s in searches:
      frames = s["report"]["frames"] if s["report"] else "?"
      print(f"max global batch on {s['topology']} ({s['param_sharding']}, {frames} frames): "
            f"{s['max_global_batch']}")
  failed = [r for r in reports if r.step == "train" and not r.fits]
  return 1 if failed else 0


def cli() -> None:
  """The console script: user errors in one line, exit 2."""
  sys.exit(run_cli(main))


if __name__ == "__main__":
  cli()
