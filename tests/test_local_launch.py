"""launch/local.sh's process management, with a stand-in Python that records what it is asked to
do: a signal sent to the launcher reaches every process, and when one process fails the launcher
stops the others (they would block in collectives) and exits with that process's status.

The real multi-process training behind the script is tested in test_launch_scripts.py (one
process with 4 devices through this script against the 2-process SLURM job)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stands in for `python -m echo_jax.train ...`: records its process id and arguments, then does
# what FAKE_BEHAVIOUR says for its process id: "wait" (until a signal, recorded, then exit 0) or
# "fail" (exit 3 at once).
FAKE_PYTHON = textwrap.dedent("""\
    #!/usr/bin/env bash
    id=""
    for arg in "$@"; do
      case "$arg" in --config.distributed.process_id=*) id=${arg#*=} ;; esac
    done
    echo "$*" > "$RECORD/args_$id"
    echo "$XLA_FLAGS" > "$RECORD/xla_$id"
    behaviour=$(echo "$FAKE_BEHAVIOUR" | cut -d, -f$((id + 1)))
    if [ "$behaviour" = fail ]; then exit 3; fi
    trap 'echo TERM > "$RECORD/signal_$id"; exit 0' TERM
    trap 'echo INT > "$RECORD/signal_$id"; exit 0' INT
    echo started > "$RECORD/started_$id"
    while true; do sleep 0.1; done
    """)


def _launch(tmp_path, behaviour, processes=3):
  record = tmp_path / "record"
  record.mkdir()
  fake = tmp_path / "python"
  fake.write_text(FAKE_PYTHON)
  fake.chmod(0o755)
  env = {**os.environ, "PYTHON": str(fake), "PORT": "12345", "RECORD": str(record),
         "FAKE_BEHAVIOUR": behaviour, "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
  # A shell cannot trap a signal that was ignored when it started, and a test run started in the
  # background (as CI may) ignores SIGINT: give the launcher the default disposition, as a
  # terminal would.
  proc = subprocess.Popen(
      ["bash", "launch/local.sh", str(processes), "2", "--config", "configs/tiny.py",
       "--workdir", str(tmp_path / "run")], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  return proc, record


def _wait_for(paths, timeout=30.0):
  deadline = time.monotonic() + timeout
  while not all(p.exists() for p in paths):
    if time.monotonic() > deadline:
      raise AssertionError(f"not all of {[p.name for p in paths]} appeared")
    time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_reaches_every_process_as_sigterm(tmp_path, sig):
  proc, record = _launch(tmp_path, "wait,wait,wait")
  _wait_for([record / f"started_{i}" for i in range(3)])
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == 0, err  # every process saved and exited 0
  # SIGTERM is the trainer's save-and-exit signal; Ctrl-C (SIGINT) is passed on as SIGTERM too,
  # since background children of a script ignore SIGINT.
  assert [(record / f"signal_{i}").read_text().strip() for i in range(3)] == ["TERM"] * 3
  # Each process got its rank, the shared coordinator and its own device count.
  for i in range(3):
    args = (record / f"args_{i}").read_text()
    assert f"--config.distributed.process_id={i}" in args
    assert "--config.distributed.num_processes=3" in args
    assert "--config.distributed.coordinator_address=127.0.0.1:12345" in args
    # The caller's XLA flags are kept; the device count comes last, so it wins.
    assert (record / f"xla_{i}").read_text().strip() == (
        "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=2")


def test_one_failing_process_stops_the_others_and_fails_the_launch(tmp_path):
  start = time.monotonic()
  proc, record = _launch(tmp_path, "wait,fail,wait")
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 3, err
  assert "a training process exited with status 3; stopping the others" in err
  # The waiting processes were killed (SIGKILL: no handler ran), not left running.
  assert not list(record.glob("signal_*"))
  assert time.monotonic() - start < 30
  out = subprocess.run(["pgrep", "-f", str(tmp_path / "python")], capture_output=True, text=True)
  assert out.stdout.strip() == ""


def test_the_launcher_requires_a_workdir(tmp_path):
  out = subprocess.run(["bash", "launch/local.sh", "2", "1", "--config", "configs/tiny.py"],
                       cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHON": sys.executable, "PORT": "1"})
  assert out.returncode == 2 and "--workdir is required" in out.stderr
