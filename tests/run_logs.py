"""A run's metrics.jsonl as the tests read it (shared by the resume, fault and launch tests)."""

import json
import os


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
