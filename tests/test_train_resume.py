"""Resume: a run killed with kill -9 (loses at most the steps since its last checkpoint), restarted
with the same command, then stopped by SIGTERM (saves the step it is at, exits 0), logs bitwise the
same losses as an uninterrupted run (CPU, same device count); the resolved config lands in the
workdir."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from echo_jax import checkpointing
from echo_jax.training import run_dir, trainer
from run_logs import metrics_records, train_losses, wait_for_step

STEPS = 16


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
    return wait_for_step(self.workdir, self.proc, step, timeout, self.tail)

  def wait_for_checkpoint(self, ckpt_dir, step, timeout=120):
    """Until the step's checkpoint is complete (orbax renames its folder to the step last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if os.path.isdir(os.path.join(ckpt_dir, str(step))):
        return
      time.sleep(0.02)
    raise AssertionError(f"checkpoint {step} never completed:\n{self.tail()}")

  def finish(self, timeout=300):
    rc = self.proc.wait(timeout=timeout)
    self._log.close()
    return rc

  def tail(self):
    with open(self.log_path, encoding="utf-8") as f:
      return f.read()[-4000:]


def test_kill9_then_resume_then_sigterm_equals_uninterrupted(repo_root, run_config, tmp_path):
  reference = trainer.train_and_evaluate(run_config, str(tmp_path / "reference"))
  assert reference["step"] == STEPS
  expected = train_losses(tmp_path / "reference")
  assert sorted(expected) == list(range(1, STEPS + 1))

  config_file = tmp_path / "run_config.py"
  config_file.write_text("import ml_collections\n\n\ndef get_config():\n"
                         f"  return ml_collections.ConfigDict({run_config.to_dict()!r})\n")
  workdir = tmp_path / "run"
  ckpt_dir = checkpointing.checkpoint_dir(str(workdir))

  # 1. kill -9 mid-run, once the first checkpoint (step 3; saves are asynchronous) is complete.
  first = _Run(repo_root, config_file, workdir, tmp_path / "first.log")
  first.wait_for_step(5)
  first.wait_for_checkpoint(ckpt_dir, 3)
  first.proc.kill()
  first.finish()
  killed_at = max(train_losses(workdir))
  assert killed_at < STEPS, first.tail()

  # 2. The same command resumes from the newest complete checkpoint: it loses at most the steps
  # since the last checkpoint before the kill (the newest one may still have been in flight).
  lines_before = len(metrics_records(workdir))
  second = _Run(repo_root, config_file, workdir, tmp_path / "second.log")
  second.wait_for_step(killed_at + 2)
  resumed = [r["step"] for r in metrics_records(workdir)[lines_before:] if "train/loss" in r]
  assert 4 <= resumed[0] <= killed_at + 1, second.tail()
  assert (resumed[0] - 1) % run_config.train.checkpoint_every == 0  # right after a checkpoint
  assert killed_at - resumed[0] < 2 * run_config.train.checkpoint_every

  # 3. SIGTERM: the run saves the step it is at and exits cleanly (SLURM's preemption signal;
  # tests/test_launch_scripts.py requeues such a job to the end).
  second.proc.send_signal(signal.SIGTERM)
  assert second.finish() == 0, second.tail()
  stopped_at = max(r["step"] for r in metrics_records(workdir)[lines_before:] if "train/loss" in r)
  assert stopped_at < STEPS, second.tail()  # stopped by the signal, not by the end of training
  assert checkpointing.Checkpointer(ckpt_dir, 3, 1).latest_step() == stopped_at
  assert f"saved step {stopped_at}, exiting" in second.tail()

  got = train_losses(workdir)
  assert sorted(got) == list(range(1, max(got) + 1))
  for step in got:  # bitwise: same device count on CPU
    assert got[step] == expected[step], (step, got[step], expected[step])

  with open(workdir / "config.json", encoding="utf-8") as f:
    resolved = json.load(f)
  assert resolved["train"]["num_steps"] == STEPS
  assert resolved["model"]["vocab_size"] > 4  # resolved from the tokenizer
  final = checkpointing.Checkpointer(ckpt_dir, 3, 1)
  assert final.latest_step() == stopped_at
  final.close()


def test_a_run_resumed_with_another_config_says_what_changed(tmp_path, capsys):
  """The command's config wins on resume (e.g. more steps stretch the schedule); the fields that
  differ from the run's recorded config are printed and returned, and the record is updated."""
  import ml_collections
  config = ml_collections.ConfigDict({"train": {"num_steps": 3600, "learning_rate": 2e-3},
                                      "data": {"bucket_frames": (384, 768)}})
  workdir = str(tmp_path / "run")
  assert run_dir.write_resolved_config(config, workdir) == []  # a new run
  assert run_dir.write_resolved_config(config, workdir) == []  # resumed as it was
  assert "note:" not in capsys.readouterr().out
  config.train.num_steps = 5400
  config.data.bucket_frames = (384, 768, 1152)
  changes = run_dir.write_resolved_config(config, workdir)
  assert changes == ["data.bucket_frames: [384, 768] -> [384, 768, 1152]",
                     "train.num_steps: 3600 -> 5400"]
  out = capsys.readouterr().out
  assert "was started with another config" in out and "train.num_steps: 3600 -> 5400" in out
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["train"]["num_steps"] == 5400
  assert run_dir.write_resolved_config(config, workdir) == []
  assert run_dir.config_changes({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c: '(unset)' -> 2"]

