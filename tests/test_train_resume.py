"""Resume: a run stopped by SIGTERM (saves, exits 0) and then by kill -9 (loses at most the steps
since its last checkpoint), restarted each time with the same command, logs bitwise the same
losses as an uninterrupted run (CPU, same device count); the resolved config lands in the workdir."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from echo_jax import checkpointing
from echo_jax.training import trainer
from run_logs import metrics_records, train_losses

STEPS = 12


@pytest.fixture
def run_config(tiny_data_config):
  config = tiny_data_config
  config.data.bucket_frames = (1024,)  # one bucket: one compile per process
  config.data.bucket_batch_sizes = (8,)
  config.train.num_steps = STEPS
  config.train.warmup_steps = 2
  config.train.log_every = 1
  config.train.checkpoint_every = 3
  config.eval.every = 0
  return config


class _Run:
  """`python -m echo_jax.train` in a subprocess with the config written to a file."""

  def __init__(self, repo_root, config_file, workdir, log_path):
    # No cache override: the trainers share the session's compilation cache (tests/conftest.py),
    # so they load the train step the in-process reference compiled.
    command = [sys.executable, "-m", "echo_jax.train", "--config", str(config_file),
               "--workdir", str(workdir)]
    self.log_path = log_path
    self.workdir = workdir
    self._log = open(log_path, "w", encoding="utf-8")
    self.proc = subprocess.Popen(command, cwd=repo_root, stdout=self._log,
                                 stderr=subprocess.STDOUT, env=dict(os.environ))

  def wait_for_step(self, step, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      logged = train_losses(self.workdir)
      if logged and max(logged) >= step:
        return max(logged)
      if self.proc.poll() is not None:
        break
      time.sleep(0.02)
    raise AssertionError(f"step {step} never logged (rc={self.proc.poll()}):\n{self.tail()}")

  def finish(self, timeout=300):
    rc = self.proc.wait(timeout=timeout)
    self._log.close()
    return rc

  def tail(self):
    with open(self.log_path, encoding="utf-8") as f:
      return f.read()[-4000:]


def test_sigterm_then_kill9_resume_equals_uninterrupted(repo_root, run_config, tmp_path):
  reference = trainer.train_and_evaluate(run_config, str(tmp_path / "reference"))
  assert reference["step"] == STEPS
  expected = train_losses(tmp_path / "reference")
  assert sorted(expected) == list(range(1, STEPS + 1))

  config_file = tmp_path / "run_config.py"
  config_file.write_text("import ml_collections\n\n\ndef get_config():\n"
                         f"  return ml_collections.ConfigDict({run_config.to_dict()!r})\n")
  workdir = tmp_path / "run"
  ckpt_dir = checkpointing.checkpoint_dir(str(workdir))

  # 1. SIGTERM: the run saves the step it is at and exits cleanly.
  first = _Run(repo_root, config_file, workdir, tmp_path / "first.log")
  first.wait_for_step(4)
  first.proc.send_signal(signal.SIGTERM)
  assert first.finish() == 0, first.tail()
  stopped_at = max(train_losses(workdir))
  assert stopped_at < STEPS
  assert checkpointing.Checkpointer(ckpt_dir, 3, 1).latest_step() == stopped_at

  # 2. Resume, then kill -9 mid-run.
  lines_before = len(metrics_records(workdir))
  second = _Run(repo_root, config_file, workdir, tmp_path / "second.log")
  second.wait_for_step(stopped_at + 3)
  second.proc.kill()
  second.finish()
  resumed = [r["step"] for r in metrics_records(workdir)[lines_before:] if "train/loss" in r]
  assert resumed[0] == stopped_at + 1, second.tail()  # continued right after the saved step
  killed_at = max(resumed)

  # 3. Resume again and finish.
  lines_before = len(metrics_records(workdir))
  third = _Run(repo_root, config_file, workdir, tmp_path / "third.log")
  assert third.finish() == 0, third.tail()
  restarted = [r["step"] for r in metrics_records(workdir)[lines_before:] if "train/loss" in r]
  # Lost at most the steps since the last checkpoint before the kill (every 3 steps; the newest
  # one may still have been in flight).
  assert stopped_at + 1 <= restarted[0] <= killed_at + 1
  assert killed_at - restarted[0] < 2 * run_config.train.checkpoint_every
  assert restarted[-1] == STEPS

  got = train_losses(workdir)
  assert sorted(got) == sorted(expected)
  for step in expected:  # bitwise: same device count on CPU
    assert got[step] == expected[step], (step, got[step], expected[step])

  with open(workdir / "config.json", encoding="utf-8") as f:
    resolved = json.load(f)
  assert resolved["train"]["num_steps"] == STEPS
  assert resolved["model"]["vocab_size"] > 4  # resolved from the tokenizer
  final = checkpointing.Checkpointer(ckpt_dir, 3, 1)
  assert final.latest_step() == STEPS
  final.close()
