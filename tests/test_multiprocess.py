"""2 local processes x 2 CPU devices joined by jax.distributed (gloo) train exactly like one
process with 4 devices: same global batches, same losses. Both runs go through launch/local.sh."""

import json
import os
import subprocess
import sys

import numpy as np

STEPS = 3


def _losses(workdir):
  losses = {}
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      if "train/loss" in record:
        losses[record["step"]] = record["train/loss"]
  return [losses[s] for s in sorted(losses)]


def _launch(repo_root, processes, devices, workdir, config_file, cache_dir):
  command = ["bash", str(repo_root / "launch" / "local.sh"), str(processes), str(devices),
             "--config", str(config_file), "--workdir", str(workdir),
             f"--config.train.compilation_cache_dir={cache_dir}"]
  env = dict(os.environ, PYTHON=sys.executable)
  env.pop("XLA_FLAGS", None)  # local.sh sets the device count per process
  result = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True,
                          timeout=600)
  logs = "".join(open(os.path.join(workdir, f), encoding="utf-8").read()[-2000:]
                 for f in sorted(os.listdir(workdir)) if f.startswith("process_"))
  assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{logs}"
  return _losses(workdir)


def test_two_processes_equal_one_process_with_four_devices(repo_root, tiny_data_config,
                                                          tmp_path):
  config = tiny_data_config
  config.data.bucket_frames = (1024,)  # one bucket: one train-step compile per process
  config.data.bucket_batch_sizes = (4,)  # global batches, 2 rows per process
  config.train.num_steps = STEPS
  config.train.warmup_steps = 1
  config.train.log_every = 1
  config.eval.every = 0
  config_file = tmp_path / "config.py"
  config_file.write_text("import ml_collections\n\n\ndef get_config():\n"
                         f"  return ml_collections.ConfigDict({config.to_dict()!r})\n")
  single = _launch(repo_root, 1, 4, tmp_path / "single", config_file, tmp_path / "cache1")
  multi = _launch(repo_root, 2, 2, tmp_path / "multi", config_file, tmp_path / "cache2")
  assert len(single) == len(multi) == STEPS
  # Same global batches and the same 4-way reduction; only the all-reduce transport differs.
  np.testing.assert_allclose(multi, single, rtol=1e-6)
  assert single[-1] < single[0]
  # Process 0 wrote the checkpoint of the final step with every process's pipeline position.
  with open(tmp_path / "multi" / "checkpoints" / str(STEPS) / "pipeline" / "metadata",
            encoding="utf-8") as f:
    pipeline = json.load(f)
  assert pipeline["process_count"] == 2
  assert [s["position"] for s in pipeline["states"]] == [STEPS, STEPS]

