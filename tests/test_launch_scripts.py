"""The cluster launch scripts, run for real against stand-in `srun`, `scontrol` and `gcloud`.

Stubs written into a temporary folder come first on PATH. Each records its arguments (one JSON
line per call in calls.jsonl) and then does what the real command would do, on this machine:

- `srun` starts its command as 2 tasks (SLURM_PROCID 0 and 1, 2 CPU devices each; the processes
  join over gloo) and forwards SIGTERM to them; `scontrol show hostnames` prints `localhost`.
  A SLURM job of launch/slurm.sbatch trains, is preempted (SIGTERM to the batch shell, as
  `--signal=B:TERM` does), saves, exits 0, and resumes to the losses of an uninterrupted job,
  which are those of one process with 4 CPU devices (launch/local.sh 1 4).
- `gcloud compute tpus tpu-vm scp/ssh --worker=all` copy into / run in 2 worker home folders.
  Each worker gets what the pod would give it: its own HOME, no TPU_WORKER_HOSTNAMES, and the
  variables JAX's cluster auto-detection reads (SLURM-style process count and id, plus
  JAX_COORDINATOR_ADDRESS), so launch/run_worker.sh's `distributed.initialize=True` without a
  coordinator joins the 2 workers exactly as on a pod; the scripts are unchanged. On a worker,
  `bash launch/setup.sh` (Debian packages, pip) is replaced by a stand-in that links this
  machine's Python environment; the bundle is really copied, extracted and trained from.
"""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

from echo_jax import checkpointing
from run_logs import metrics_records, train_losses, wait_for_step
import xla_flags

STEPS = 8
CHECKPOINT_EVERY = 4  # one save while training goes on (async, both processes), one at the end
TIMEOUT = 600

# ------------------------------------------------------------------------------------------------
# Stand-ins. Each is a Python script run with this interpreter; LAUNCH_STUB_CALLS names the log.

_RECORD = """
import json, os, sys
def record(name, args, **extra):
  entry = {"cmd": name, "args": list(args), "cwd": os.getcwd(), **extra}
  with open(os.environ["LAUNCH_STUB_CALLS"], "a", encoding="utf-8") as f:
    f.write(json.dumps(entry) + "\\n")
"""

_SCONTROL = _RECORD + """
record("scontrol", sys.argv[1:])
if sys.argv[1:3] == ["show", "hostnames"]:
  print("localhost")
"""

_SRUN = _RECORD + """
import signal, subprocess, time
record("srun", sys.argv[1:])
argv = sys.argv[1:]
options = []
while argv and argv[0].startswith("-"):
  options.append(argv.pop(0))
ntasks = 2
job = os.environ.get("SLURM_JOB_ID", "1")
out_dir = os.path.dirname(os.environ["LAUNCH_STUB_CALLS"])
procs = []
for i in range(ntasks):
  env = dict(os.environ, SLURM_PROCID=str(i), SLURM_NTASKS=str(ntasks), SLURM_JOB_ID=job,
             SLURM_JOB_NODELIST=os.environ.get("SLURM_JOB_NODELIST", "localhost"),
             JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ["LAUNCH_STUB_XLA_FLAGS"])
  log = open(os.path.join(out_dir, f"srun-{job}-task{i}.log"), "a", encoding="utf-8")
  procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))

def forward(signum, frame):
  running = [i for i, p in enumerate(procs) if p.poll() is None]
  record("srun-signal", [signal.Signals(signum).name], tasks=running)
  for i in running:
    procs[i].send_signal(signum)

signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
def record_command(task, pid):
  # The command a task runs once `bash -c 'exec ...'` has become it (its expanded arguments).
  try:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
      argv = [a.decode() for a in f.read().split(b"\\0") if a]
  except OSError:
    return False
  if not argv or os.path.basename(argv[0]) == "bash":
    return False
  record("srun-task", argv, task=task, SLURM_PROCID=str(task))
  return True

status = 0
unrecorded = set(range(ntasks))
while True:
  for task in sorted(unrecorded):
    if procs[task].poll() is None and record_command(task, procs[task].pid):
      unrecorded.discard(task)
  codes = [p.poll() for p in procs]
  for rc in codes:
    if rc not in (None, 0) and status == 0:
      status = rc if rc > 0 else 128 - rc
      if "--kill-on-bad-exit=1" in options:
        for p in procs:
          if p.poll() is None:
            p.kill()
  if all(rc is not None for rc in codes):
    break
  time.sleep(0.05)
sys.exit(status)
"""

# `gcloud compute tpus tpu-vm ...`: create / describe / scp / ssh on LAUNCH_STUB_WORKERS (a
# colon-separated list of worker home folders). LAUNCH_STUB_EXEC=0: ssh only records.
_GCLOUD = _RECORD + """
import shutil, subprocess
args = sys.argv[1:]
record("gcloud", args)
assert args[:3] == ["compute", "tpus", "tpu-vm"], args
verb, rest = args[3], args[4:]
positional, options = [], {}
i = 0
while i < len(rest):
  a = rest[i]
  if a in ("--zone", "--project", "--command", "--worker", "--accelerator-type", "--version",
           "--format"):
    options[a] = rest[i + 1]
    i += 2
    continue
  if a.startswith("--"):
    key, _, value = a.partition("=")
    options[key] = value
  else:
    positional.append(a)
  i += 1
homes = os.environ["LAUNCH_STUB_WORKERS"].split(":")
worker = options.get("--worker", "0")
targets = list(enumerate(homes)) if worker == "all" else [(int(worker), homes[int(worker)])]
if verb == "describe":
  print("READY\\t" + os.environ.get("LAUNCH_STUB_ACCELERATOR", "v4-8"))
elif verb == "scp":
  src, dest = positional
  dest = dest.split(":", 1)[1]
  for _, home in targets:
    shutil.copy(src, os.path.join(home, dest))
elif verb == "ssh" and os.environ.get("LAUNCH_STUB_EXEC", "1") == "1":
  port = os.environ["LAUNCH_STUB_PORT"]
  procs = []
  for index, home in targets:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TPU_", "LAUNCH_STUB_WORKER"))}
    env.update(HOME=home, PATH=os.environ["LAUNCH_STUB_WORKER_PATH"] + ":" + env["PATH"],
               JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ["LAUNCH_STUB_XLA_FLAGS"],
               JAX_COORDINATOR_ADDRESS="localhost:" + port, SLURM_JOB_ID="4242",
               SLURM_STEP_NODELIST="localhost", SLURM_NTASKS=str(len(homes)),
               SLURM_PROCID=str(index), SLURM_LOCALID="0")
    p = subprocess.Popen([os.environ["LAUNCH_STUB_BASH"], "-c", options["--command"]], cwd=home,
                         env=env, start_new_session=True)
    with open(os.path.join(home, ".process_groups"), "a", encoding="utf-8") as f:
      f.write(f"{p.pid}\\n")
    procs.append(p)
  sys.exit(max(p.wait() for p in procs))
"""

# `bash` on a worker's PATH: `bash launch/setup.sh` links this machine's Python environment as
# .venv (python, and a pip that only records); everything else is the real bash.
_WORKER_BASH = _RECORD + """
import shlex
if sys.argv[1:2] == ["launch/setup.sh"]:
  record("worker-setup", sys.argv[1:], home=os.environ["HOME"])
  os.makedirs(".venv/bin", exist_ok=True)
  with open(".venv/bin/python", "w", encoding="utf-8") as f:
    f.write("#!/bin/sh\\nexec %s \\"$@\\"\\n" % shlex.quote(os.environ["LAUNCH_STUB_PYTHON"]))
  with open(".venv/bin/pip", "w", encoding="utf-8") as f:
    f.write("#!%s\\n%s\\nrecord('worker-pip', sys.argv[1:], home=os.environ['HOME'])\\n"
            % (sys.executable, __RECORD__))
  for name in ("python", "pip"):
    os.chmod(".venv/bin/" + name, 0o755)
  sys.exit(0)
os.execv(os.environ["LAUNCH_STUB_BASH"], ["bash"] + sys.argv[1:])
"""

# `bash` on the launching machine's PATH (precheck tests only): records `bash
# launch/tpu_precheck.sh ...` and exits with LAUNCH_STUB_PRECHECK_STATUS.
_PRECHECK_BASH = _RECORD + """
if sys.argv[1:2] == ["launch/tpu_precheck.sh"]:
  record("bash", sys.argv[1:])
  sys.exit(int(os.environ.get("LAUNCH_STUB_PRECHECK_STATUS", "0")))
os.execv(os.environ["LAUNCH_STUB_BASH"], ["bash"] + sys.argv[1:])
"""


def _write_script(path, body):
  body = body.replace("__RECORD__", repr(_RECORD))
  path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
  path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Stubs:
  """A folder of stand-ins, the calls they recorded, and the environment to run scripts in."""

  def __init__(self, root):
    self.root = root
    self.bin = root / "bin"
    self.worker_bin = root / "worker_bin"
    self.precheck_bin = root / "precheck_bin"
    for folder in (self.bin, self.worker_bin, self.precheck_bin):
      folder.mkdir(parents=True, exist_ok=True)
    _write_script(self.bin / "srun", _SRUN)
    _write_script(self.bin / "scontrol", _SCONTROL)
    _write_script(self.bin / "gcloud", _GCLOUD)
    _write_script(self.worker_bin / "bash", _WORKER_BASH)
    _write_script(self.precheck_bin / "bash", _PRECHECK_BASH)
    self.calls_file = root / "calls.jsonl"
    self.workers = [root / f"worker{i}" for i in range(2)]
    for home in self.workers:
      home.mkdir(exist_ok=True)

  def env(self, **extra):
    # Nothing of a real cluster this may run in leaks into the simulated one.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TPU_", "JAX_COORDINATOR", "XLA_FLAGS"))}
    env.update(
        PATH=f"{self.bin}:{env['PATH']}", LAUNCH_STUB_CALLS=str(self.calls_file),
        LAUNCH_STUB_WORKERS=":".join(str(h) for h in self.workers),
        LAUNCH_STUB_WORKER_PATH=str(self.worker_bin), LAUNCH_STUB_BASH=shutil.which("bash"),
        LAUNCH_STUB_PYTHON=sys.executable, LAUNCH_STUB_XLA_FLAGS=xla_flags.cpu_devices(2),
        TMPDIR=str(self.root))
    env.update({k: str(v) for k, v in extra.items()})
    return env

  def calls(self, *names):
    if not self.calls_file.exists():
      return []
    with open(self.calls_file, encoding="utf-8") as f:
      entries = [json.loads(line) for line in f if line.strip()]
    return [e for e in entries if not names or e["cmd"] in names]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _tail(*paths):
  text = ""
  for path in paths:
    if os.path.exists(path):
      with open(path, encoding="utf-8", errors="replace") as f:
        text += f"--- {path}\n{f.read()[-3000:]}\n"
  return text


def _latest_checkpoint(workdir):
  ckpt = checkpointing.Checkpointer(checkpointing.checkpoint_dir(str(workdir)), 3, 1)
  try:
    return ckpt.latest_step()
  finally:
    ckpt.close()


def _kill_group(pid):
  try:
    os.killpg(pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


# ------------------------------------------------------------------------------------------------
# The config every run trains: the tiny corpus, 2 rows per process, a few steps.

@pytest.fixture(scope="module")
def launch_setup(_tiny_prepared_session, tmp_path_factory):
  config = ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())
  config.data.bucket_frames = (1024,)  # one bucket: one train-step compile per process
  config.data.bucket_batch_sizes = (4,)  # global batches: 2 rows per process
  config.train.num_steps = STEPS
  config.train.warmup_steps = 1
  config.train.log_every = 1
  config.train.checkpoint_every = CHECKPOINT_EVERY
  config.eval.every = 0
  root = tmp_path_factory.mktemp("launch")
  config_file = root / "config.py"
  config_file.write_text("import ml_collections\n\n\ndef get_config():\n"
                         f"  return ml_collections.ConfigDict({config.to_dict()!r})\n")
  return {"config_file": config_file, "cache": root / "compilation_cache"}


class SlurmJob:
  """`bash launch/slurm.sbatch CONFIG WORKDIR --config...` as SLURM's batch shell runs it."""

  def __init__(self, repo_root, stubs, launch_setup, workdir, job_id, port, extra_args=None):
    self.workdir = workdir
    self.job_id = job_id
    self.stubs = stubs
    self.command = ["bash", str(repo_root / "launch" / "slurm.sbatch"),
                    str(launch_setup["config_file"]), str(workdir),
                    f"--config.train.compilation_cache_dir={launch_setup['cache']}",
                    *(extra_args or [])]
    env = stubs.env(SLURM_SUBMIT_DIR=repo_root, SLURM_JOB_ID=job_id,
                    SLURM_JOB_NODELIST="gpu[001-002]", COORDINATOR_PORT=port)
    self.log_path = stubs.root / f"sbatch-{job_id}.out"
    self._log = open(self.log_path, "a", encoding="utf-8")
    # Its own session: a failed test can stop the batch shell, srun and the tasks together.
    self.proc = subprocess.Popen(self.command, cwd=stubs.root, env=env, stdout=self._log,
                                 stderr=subprocess.STDOUT, start_new_session=True)

  def tail(self):
    root = self.stubs.root
    return _tail(self.log_path, root / f"srun-{self.job_id}-task0.log",
                 root / f"srun-{self.job_id}-task1.log")

  def wait_for_step(self, step):
    return wait_for_step(self.workdir, self.proc, step, TIMEOUT, self.tail)

  def finish(self):
    try:
      return self.proc.wait(timeout=TIMEOUT)
    finally:
      _kill_group(self.proc.pid)
      self._log.close()


@pytest.fixture(scope="module")
def reference(repo_root, launch_setup, tmp_path_factory):
  """Losses per step of an uninterrupted 2-process SLURM job (and its recorded calls)."""
  stubs = Stubs(tmp_path_factory.mktemp("slurm_reference"))
  port = _free_port()
  job = SlurmJob(repo_root, stubs, launch_setup, stubs.root / "run", 7001, port)
  assert job.finish() == 0, job.tail()
  losses = train_losses(job.workdir)
  assert sorted(losses) == list(range(1, STEPS + 1)), job.tail()
  return {"losses": losses, "stubs": stubs, "port": port, "job": job}


def _assert_close(got, expected):
  assert sorted(got) == sorted(expected)
  steps = sorted(expected)
  np.testing.assert_allclose([got[s] for s in steps], [expected[s] for s in steps], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# SLURM

def test_slurm_job_runs_one_process_per_task_with_the_first_node_as_coordinator(reference,
                                                                              launch_setup):
  stubs, port = reference["stubs"], reference["port"]
  assert [c["args"] for c in stubs.calls("scontrol")] == [["show", "hostnames", "gpu[001-002]"]]
  (srun,) = stubs.calls("srun")
  args = srun["args"]
  assert args[0] == "--kill-on-bad-exit=1"
  assert args[1:3] == ["bash", "-c"]
  script = args[3]
  assert script.strip().startswith("exec .venv/bin/python -m echo_jax.train")
  for flag in ('--config "$CONFIG"', '--workdir "$WORKDIR"', "--config.distributed.initialize=True",
               '--config.distributed.coordinator_address="$COORDINATOR:$PORT"',
               '--config.distributed.num_processes="$SLURM_NTASKS"',
               '--config.distributed.process_id="$SLURM_PROCID"', '"$@"'):
    assert flag in script
  # The job's own arguments reach every task after `_` ($0).
  assert args[4:] == ["_", f"--config.train.compilation_cache_dir={launch_setup['cache']}"]
  # Each task ran the trainer as process SLURM_PROCID of SLURM_NTASKS, coordinator
  # localhost:<COORDINATOR_PORT> (the first host scontrol listed).
  tasks = sorted(stubs.calls("srun-task"), key=lambda c: c["task"])
  assert [c["task"] for c in tasks] == [0, 1]
  job = reference["job"]
  for task, call in enumerate(tasks):
    assert call["args"] == [
        ".venv/bin/python", "-m", "echo_jax.train", "--config", str(launch_setup["config_file"]),
        "--workdir", str(job.workdir), "--config.distributed.initialize=True",
        f"--config.distributed.coordinator_address=localhost:{port}",
        "--config.distributed.num_processes=2", f"--config.distributed.process_id={task}",
        f"--config.train.compilation_cache_dir={launch_setup['cache']}"]
  checkpoint = job.workdir / "checkpoints" / str(STEPS) / "pipeline" / "metadata"
  with open(checkpoint, encoding="utf-8") as f:
    pipeline = json.load(f)
  assert pipeline["process_count"] == 2
  assert [s["position"] for s in pipeline["states"]] == [STEPS, STEPS]


def test_slurm_sigterm_saves_exits_0_and_the_requeued_job_resumes_to_the_same_losses(
    repo_root, launch_setup, reference, tmp_path):
  stubs = Stubs(tmp_path)
  workdir = tmp_path / "run"
  port = _free_port()

  # 1. SIGTERM to the batch shell (sbatch --signal=B:TERM): srun passes it to both tasks, which
  # agree on one step, save it and exit 0.
  first = SlurmJob(repo_root, stubs, launch_setup, workdir, 7002, port)
  try:
    first.wait_for_step(1)
    os.kill(first.proc.pid, signal.SIGTERM)
    assert first.finish() == 0, first.tail()
  finally:
    _kill_group(first.proc.pid)
  stopped_at = max(train_losses(workdir))
  assert 1 <= stopped_at < STEPS, first.tail()
  assert _latest_checkpoint(workdir) == stopped_at
  # srun passed the signal on to both tasks; both stopped at the same agreed step.
  assert [(c["args"], c["tasks"]) for c in stubs.calls("srun-signal")] == [(["SIGTERM"], [0, 1])]
  for task in (0, 1):
    log = (tmp_path / f"srun-7002-task{task}.log").read_text(encoding="utf-8")
    assert f"Reached preemption sync point, step={stopped_at}" in log, log[-3000:]
  assert f"saved step {stopped_at}, exiting" in first.tail()

  # 2. The requeued job (same command) resumes after the saved step and finishes.
  lines_before = len(metrics_records(workdir))
  second = SlurmJob(repo_root, stubs, launch_setup, workdir, 7002, port)
  assert second.finish() == 0, second.tail()
  resumed = [r["step"] for r in metrics_records(workdir)[lines_before:] if "train/loss" in r]
  assert resumed == list(range(stopped_at + 1, STEPS + 1)), second.tail()
  assert _latest_checkpoint(workdir) == STEPS
  _assert_close(train_losses(workdir), reference["losses"])

  # Both submissions issued the same srun and scontrol commands.
  sruns = stubs.calls("srun")
  assert len(sruns) == 2 and sruns[0]["args"] == sruns[1]["args"]
  assert sruns[0]["args"][0] == "--kill-on-bad-exit=1"
  assert all(c["cwd"] == str(repo_root) for c in sruns)  # SLURM_SUBMIT_DIR
  assert [c["args"] for c in stubs.calls("scontrol")] == [["show", "hostnames", "gpu[001-002]"]] * 2


def test_the_two_process_job_trains_exactly_like_one_process_with_four_devices(
    repo_root, launch_setup, reference, tmp_path):
  # launch/local.sh with one process of 4 CPU devices; the reference job had 2 processes of 2
  # devices joined by jax.distributed (gloo). Same global batches, the same 4-way reduction:
  # only the all-reduce transport differs.
  workdir = tmp_path / "single"
  # No cluster variables leak in; local.sh appends the 4-device count to these flags.
  env = Stubs(tmp_path).env(PYTHON=sys.executable, XLA_FLAGS=xla_flags.FAST_COMPILE)
  result = subprocess.run(
      ["bash", str(repo_root / "launch" / "local.sh"), "1", "4", "--config",
       str(launch_setup["config_file"]), "--workdir", str(workdir),
       f"--config.train.compilation_cache_dir={launch_setup['cache']}"],
      cwd=repo_root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  single = train_losses(workdir)
  _assert_close(single, reference["losses"])
  assert single[STEPS] < single[1]
  with open(workdir / "checkpoints" / str(STEPS) / "pipeline" / "metadata",
            encoding="utf-8") as f:
    assert json.load(f)["process_count"] == 1


def test_slurm_job_fails_when_its_tasks_fail(repo_root, launch_setup, tmp_path):
  """Tasks that exit non-zero (a config field that does not exist) fail the batch job."""
  stubs = Stubs(tmp_path)
  job = SlurmJob(repo_root, stubs, launch_setup, tmp_path / "run", 7003, _free_port(),
                 extra_args=["--config.train.no_such_field=1"])
  rc = job.finish()
  assert rc == 1, job.tail()
  assert "no_such_field" in _tail(tmp_path / "srun-7003-task0.log")
  assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------------------------
# TPU pod

TPU = {"TPU_NAME": "echo-test", "ZONE": "us-central2-b", "PROJECT": "my-project"}
GCLOUD_TARGET = ["--project", "my-project", "--zone", "us-central2-b", "--worker=all"]


def _gcloud_verbs(stubs):
  return [c["args"][3] for c in stubs.calls("gcloud")]


def _worker_groups(stubs):
  """The process groups `tpu-vm ssh` started on the workers (their commands and what they left
  running in the background)."""
  groups = []
  for home in stubs.workers:
    path = home / ".process_groups"
    if path.exists():
      groups += [int(line) for line in path.read_text().split()]
  return groups


def _wait_for_workers(stubs):
  deadline = time.monotonic() + TIMEOUT
  for group in _worker_groups(stubs):
    while True:
      try:
        os.killpg(group, 0)
      except ProcessLookupError:
        break
      if time.monotonic() > deadline:
        raise AssertionError(f"worker processes still running after {TIMEOUT} s:\n" +
                             _tail(*[h / "echo_jax" / "train.log" for h in stubs.workers]))
      time.sleep(0.1)


def test_tpu_pod_copies_installs_and_trains_on_every_worker(repo_root, launch_setup, reference,
                                                         tmp_path):
  stubs = Stubs(tmp_path)
  workdir = tmp_path / "gcs_workdir"  # shared by the workers like a gs:// workdir
  override = f"--config.train.compilation_cache_dir={launch_setup['cache']}"
  env = stubs.env(SKIP_PRECHECK=1, LAUNCH_STUB_PORT=_free_port(), **TPU)
  try:
    result = subprocess.run(
        ["bash", str(repo_root / "launch" / "tpu_pod.sh"), str(launch_setup["config_file"]),
         str(workdir), override], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training started on all workers of echo-test" in result.stdout
    assert result.stdout.count("started on ") == 3  # each worker's echo, then the summary
    _wait_for_workers(stubs)  # the trainers run on in the background, as on a pod
  finally:
    for group in _worker_groups(stubs):  # never leaves a trainer behind
      _kill_group(group)

  # 1. The bundle went to every worker (scp --worker=all) ...
  scp, setup, start = stubs.calls("gcloud")
  assert scp["args"][:4] == ["compute", "tpus", "tpu-vm", "scp"]
  assert scp["args"][4].endswith("/echo_jax.tar.gz")
  assert scp["args"][5:] == ["echo-test:echo_jax.tar.gz"] + GCLOUD_TARGET
  # ... was extracted there, then launch/setup.sh and the TPU jax were installed on every worker.
  assert setup["args"][:5] == ["compute", "tpus", "tpu-vm", "ssh", "echo-test"]
  assert setup["args"][5:10] == GCLOUD_TARGET
  assert setup["args"][10] == "--command"
  command = setup["args"][11]
  assert "tar -xzf ~/echo_jax.tar.gz -C ~/echo_jax" in command
  assert "bash launch/setup.sh" in command
  jax_version = next(line.split("==")[1].split()[0] for line in
                     (repo_root / "requirements.txt").read_text().splitlines()
                     if line.startswith("jax=="))
  homes = sorted(str(h) for h in stubs.workers)
  assert sorted(c["home"] for c in stubs.calls("worker-setup")) == homes
  assert all(c["cwd"] == c["home"] + "/echo_jax" for c in stubs.calls("worker-setup"))
  pips = stubs.calls("worker-pip")
  assert sorted(c["home"] for c in pips) == homes
  for call in pips:
    assert call["args"][:3] == ["install", "-q", f"jax[tpu]=={jax_version}"]
    assert "https://storage.googleapis.com/jax-releases/libtpu_releases.html" in call["args"]
  for home in stubs.workers:
    tree = home / "echo_jax"
    assert (tree / "launch" / "run_worker.sh").exists()
    assert (tree / "echo_jax" / "train.py").exists()
    assert (tree / "requirements.txt").read_text() == (repo_root / "requirements.txt").read_text()
    for left_out in (".git", "data", "runs"):
      assert not (tree / left_out).exists(), left_out
    assert sorted(os.listdir(tree / ".venv" / "bin")) == ["pip", "python"]  # only the stand-in's

  # 2. run_worker.sh started in the background on every worker with the same arguments.
  assert start["args"][:11] == setup["args"][:11]
  command = start["args"][11]
  assert command.startswith("cd ~/echo_jax && nohup launch/run_worker.sh ")
  for arg in (str(launch_setup["config_file"]), str(workdir), override):
    assert arg in command
  assert "> train.log 2>&1 < /dev/null &" in command

  # 3. The 2 workers joined one job and trained it to the losses of the 2-process SLURM job.
  for rank, home in enumerate(stubs.workers):
    log = (home / "echo_jax" / "train.log").read_text(encoding="utf-8")
    assert f"[Gloo] Rank {rank} is connected to 1 peer ranks" in log, log[-3000:]
  logs = _tail(*[h / "echo_jax" / "train.log" for h in stubs.workers])
  assert _latest_checkpoint(workdir) == STEPS, logs
  with open(workdir / "checkpoints" / str(STEPS) / "pipeline" / "metadata",
            encoding="utf-8") as f:
    assert json.load(f)["process_count"] == 2
  _assert_close(train_losses(workdir), reference["losses"])


def test_tpu_pod_runs_the_precheck_before_touching_the_pod(repo_root, launch_setup, tmp_path):
  stubs = Stubs(tmp_path)
  base = stubs.env(LAUNCH_STUB_EXEC=0, ACCELERATOR="v4-16", **TPU)
  command = ["bash", str(repo_root / "launch" / "tpu_pod.sh"), str(launch_setup["config_file"]),
             "gs://bucket/run", "--config.model.dtype=bfloat16", "--seed=3"]

  # The real precheck refuses a topology it does not know: nothing reaches gcloud.
  env = dict(base, ACCELERATOR="v9-nonsense")
  result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
  assert result.returncode == 2, result.stdout + result.stderr
  assert "[precheck] FAILED: could not check" in result.stderr
  assert "v9-nonsense" in result.stderr
  assert stubs.calls() == []

  # A precheck that passes (stand-in for `bash launch/tpu_precheck.sh`): it runs first, with the
  # accelerator and the --config.* overrides, then the copy, setup and start.
  env = dict(base, PATH=f"{stubs.precheck_bin}:{base['PATH']}")
  result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
  assert result.returncode == 0, result.stdout + result.stderr
  calls = stubs.calls()
  assert [c["cmd"] for c in calls] == ["bash", "gcloud", "gcloud", "gcloud"]
  assert calls[0]["args"] == ["launch/tpu_precheck.sh", str(launch_setup["config_file"]), "v4-16",
                              "--steps", "train", "--config.model.dtype=bfloat16"]
  assert calls[0]["cwd"] == str(repo_root)
  assert _gcloud_verbs(stubs) == ["scp", "ssh", "ssh"]
  assert "bash launch/setup.sh" in calls[2]["args"][-1]
  assert "launch/run_worker.sh" in calls[3]["args"][-1]

  # A precheck that fails stops the launch before any copy.
  stubs.calls_file.unlink()
  env["LAUNCH_STUB_PRECHECK_STATUS"] = "1"
  result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
  assert result.returncode == 1
  assert [c["cmd"] for c in stubs.calls()] == ["bash"]


def test_tpu_pod_skip_setup_only_restarts_training(repo_root, tmp_path):
  """SKIP_SETUP=1 on workers already set up: no copy, no install, run_worker.sh again on each
  worker with the arguments intact (quoted for the remote shell)."""
  stubs = Stubs(tmp_path)
  for home in stubs.workers:  # a set-up worker whose run_worker.sh only records its arguments
    (home / "echo_jax" / "launch").mkdir(parents=True)
    _write_script(home / "echo_jax" / "launch" / "run_worker.sh",
                  _RECORD + "record('run_worker', sys.argv[1:], home=os.environ['HOME'])\n")
  env = stubs.env(SKIP_PRECHECK=1, SKIP_SETUP=1, TPU_NAME="echo-test", ZONE="europe-west4-a",
                  LAUNCH_STUB_PORT=_free_port())
  args = ["configs/base.py", "gs://b/run dir", "--config.train.num_steps=5"]
  try:
    result = subprocess.run(["bash", str(repo_root / "launch" / "tpu_pod.sh"), *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    _wait_for_workers(stubs)
  finally:
    for group in _worker_groups(stubs):
      _kill_group(group)
  (start,) = stubs.calls("gcloud")
  assert start["args"][:9] == ["compute", "tpus", "tpu-vm", "ssh", "echo-test", "--zone",
                               "europe-west4-a", "--worker=all", "--command"]
  assert len(start["args"]) == 10
  runs = sorted(stubs.calls("run_worker"), key=lambda c: c["home"])
  assert [(c["home"], c["cwd"], c["args"]) for c in runs] == [
      (str(home), str(home / "echo_jax"), args) for home in stubs.workers]
  for home in stubs.workers:
    assert (home / "echo_jax" / "train.log").exists()
  assert ("gcloud compute tpus tpu-vm ssh echo-test --zone europe-west4-a --worker=0 --command "
          "'tail -f ~/echo_jax/train.log'") in result.stdout


def test_tpu_create_creates_the_vm_and_describes_it(repo_root, tmp_path):
  stubs = Stubs(tmp_path)
  script = str(repo_root / "launch" / "tpu_create.sh")
  env = stubs.env(TPU_NAME="echo-test", ZONE="us-central2-b", ACCELERATOR="v4-16",
                  RUNTIME="tpu-ubuntu2204-base", PROJECT="my-project",
                  LAUNCH_STUB_ACCELERATOR="v4-16")
  result = subprocess.run(["bash", script, "--spot"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert [c["args"] for c in stubs.calls()] == [
      ["compute", "tpus", "tpu-vm", "create", "echo-test", "--project", "my-project", "--zone",
       "us-central2-b", "--accelerator-type", "v4-16", "--version", "tpu-ubuntu2204-base",
       "--spot"],
      ["compute", "tpus", "tpu-vm", "describe", "echo-test", "--project", "my-project",
       "--zone", "us-central2-b", "--format=value(state,acceleratorType)"]]
  assert result.stdout.strip() == "READY\tv4-16"

  # Defaults: v4-8, the Ubuntu 22.04 TPU VM image, gcloud's own project.
  stubs.calls_file.unlink()
  env = stubs.env(TPU_NAME="echo-test", ZONE="us-central2-b")
  result = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert [c["args"] for c in stubs.calls()] == [
      ["compute", "tpus", "tpu-vm", "create", "echo-test", "--zone", "us-central2-b",
       "--accelerator-type", "v4-8", "--version", "tpu-ubuntu2204-base"],
      ["compute", "tpus", "tpu-vm", "describe", "echo-test", "--zone", "us-central2-b",
       "--format=value(state,acceleratorType)"]]


@pytest.mark.parametrize("script,args,env,status,message", [
    ("tpu_create.sh", [], {"ZONE": "z"}, 1, "set TPU_NAME"),
    ("tpu_create.sh", [], {"TPU_NAME": "t"}, 1, "set ZONE"),
    ("tpu_pod.sh", ["configs/tiny.py"], {"TPU_NAME": "t", "ZONE": "z"}, 2, "usage:"),
    ("tpu_pod.sh", ["configs/tiny.py", "runs/x"], {"TPU_NAME": "t", "ZONE": "z"}, 1,
     "set ACCELERATOR"),
    ("run_worker.sh", ["configs/tiny.py"], {}, 2, "usage:"),
    ("slurm.sbatch", ["configs/tiny.py"], {}, 2, "usage:"),
])
def test_scripts_reject_missing_settings_before_calling_anything(repo_root, tmp_path, script,
                                                                args, env, status, message):
  stubs = Stubs(tmp_path)
  result = subprocess.run(["bash", str(repo_root / "launch" / script), *args], cwd=tmp_path,
                          env=stubs.env(SLURM_SUBMIT_DIR=repo_root, **env), capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == status, result.stderr
  assert message in result.stderr
  assert stubs.calls() == []
