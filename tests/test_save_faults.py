"""Faults during a save lose nothing: a process killed (-9) at any point of its async saves never
leaves a checkpoint that restores wrong, and a write that fails (the file-size limit standing in for
a full disk) stops with one CheckpointWriteError while every earlier checkpoint still restores."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from echo_jax import checkpointing

CHILD = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    from echo_jax import checkpointing

    mode, directory = sys.argv[1], sys.argv[2]
    ckpt = checkpointing.Checkpointer(directory, keep_last=100, keep_best=0)

    def save(step):
      # 2 MiB of noise: incompressible, so saves take a while and really write 2 MiB.
      params = {"w": np.random.default_rng(step).standard_normal((512, 1024), np.float32)}
      ckpt.save(step, params, {"step": np.int32(step)}, {"position": step})

    if mode == "loop":
      for step in range(1, 10000):
        save(step)
        print(step, flush=True)
    else:  # disk_full: the second save cannot write its 2 MiB file
      save(1)
      ckpt.wait()
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
      resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
      try:
        save(2)
        ckpt.wait()
      except checkpointing.CheckpointWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
      sys.exit(0)
""")


def _child(tmp_path, mode, directory):
  script = tmp_path / "child.py"
  script.write_text(CHILD)
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
  return subprocess.Popen([sys.executable, str(script), mode, str(directory)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=repo)


def _like():
  return {"w": np.zeros((512, 1024), np.float32)}, {"step": np.int32(0)}


def _assert_every_step_restores_right(directory):
  ckpt = checkpointing.Checkpointer(str(directory), keep_last=100, keep_best=0)
  steps = ckpt.all_steps()
  for step in steps:
    params, train, pipeline = ckpt.restore(step, *_like())
    expected = np.random.default_rng(step).standard_normal((512, 1024), np.float32)
    np.testing.assert_array_equal(np.asarray(params["w"]), expected)
    assert int(train["step"]) == step and pipeline == {"position": step}
  ckpt.close()
  return steps


@pytest.mark.parametrize("saves_before_kill,extra_delay_s", [(1, 0.0), (3, 0.05), (6, 0.3)])
def test_kill_9_during_async_saves_never_leaves_a_wrong_checkpoint(tmp_path, saves_before_kill,
                                                                   extra_delay_s):
  directory = tmp_path / "checkpoints"
  child = _child(tmp_path, "loop", directory)
  issued = 0
  while issued < saves_before_kill:  # each line: a save was issued (it may still be writing)
    line = child.stdout.readline()
    assert line, child.stderr.read()
    issued = int(line)
  time.sleep(extra_delay_s)
  child.kill()
  child.wait()
  issued = max([issued] + [int(line) for line in child.stdout.read().split()])  # while asleep
  steps = _assert_every_step_restores_right(directory)
  # A save starts only after the one before it finished: all but the last issued are committed.
  assert list(range(1, issued)) == [s for s in steps if s < issued]
  assert set(steps) <= set(range(1, issued + 1))
  ckpt = checkpointing.Checkpointer(str(directory), keep_last=100, keep_best=0)
  newest = ckpt.restore_newest(*_like())
  if steps:
    step, _, _, pipeline = newest
    assert step == max(steps) and pipeline == {"position": step}
  else:
    assert newest is None  # killed before the first save committed: a fresh start
  # The resumed run's next save goes through; half-written saves are cleaned up by then, and
  # nothing else is.
  following = issued + 1
  ckpt.save(following, {"w": np.random.default_rng(following).standard_normal((512, 1024),
                                                                            np.float32)},
            {"step": np.int32(following)}, {"position": following})
  ckpt.close()
  assert not [n for n in os.listdir(directory) if "tmp" in n]
  assert _assert_every_step_restores_right(directory) == sorted(steps) + [following]


def test_a_failed_write_stops_with_one_line_and_keeps_earlier_checkpoints(tmp_path):
  directory = tmp_path / "checkpoints"
  child = _child(tmp_path, "disk_full", directory)
  _, stderr = child.communicate(timeout=300)
  assert child.returncode == 2, stderr
  errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, stderr
  assert "saving checkpoint step 2" in errors[0] and "[1] are intact" in errors[0]
  assert "rerun the same command" in errors[0]
  assert _assert_every_step_restores_right(directory) == [1]
