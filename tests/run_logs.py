"""A run's metrics.jsonl as the tests read it, and waiting for a step of a running trainer (shared
by the resume, fault and launch tests)."""

import json
import os
import time


def metrics_records(workdir):
  """Every record of WORKDIR/metrics.jsonl in file order ([] before the first one is written)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def train_losses(workdir):
  """step -> loss of the last record written for that step (a resumed run rewrites a few)."""
  return {r["step"]: r["train/loss"] for r in metrics_records(workdir) if "train/loss" in r}


def wait_for_step(workdir, proc, step, timeout, tail):
  """The newest logged step once it is >= `step`; fails with `tail()` (the run's log) when the
  process `proc` exits first or `timeout` seconds pass."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    logged = train_losses(workdir)
    if logged and max(logged) >= step:
      return max(logged)
    if proc.poll() is not None:
      break
    time.sleep(0.02)
  raise AssertionError(f"step {step} never logged (rc={proc.poll()}):\n{tail()}")
