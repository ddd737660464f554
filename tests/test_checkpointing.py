"""Checkpointer: round trip of params/train state/pipeline position, keep-last-K + keep-best-by-WER,
restore_params for init_from, SIGTERM flag."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from echo_jax import checkpointing
from echo_jax.parallel import sharding


def _trees(value):
  params = {"dense": {"kernel": jnp.full([4, 3], value, jnp.float32),
                      "bias": jnp.arange(3, dtype=jnp.float32) + value}}
  train = {"step": jnp.asarray(int(value), jnp.int32), "rng": jax.random.PRNGKey(int(value)),
           "opt_state": {"mu": jnp.full([4, 3], -value, jnp.float32)}}
  return params, train


def _placed(tree, mesh):
  return jax.device_put(tree, sharding.replicated(mesh))


def test_round_trip_and_retention(tmp_path):
  mesh = sharding.make_mesh()
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), keep_last=2, keep_best=1)
  wers = {2: 0.1, 4: 0.3}
  for step in range(1, 6):
    params, train = _placed(_trees(float(step)), mesh)
    metrics = {"wer": wers[step]} if step in wers else None
    ckpt.save(step, params, train, {"position": step * 10}, metrics=metrics)
  ckpt.wait()
  # Last two (4, 5) plus the best WER (2); 1 and 3 are gone.
  assert ckpt.all_steps() == [2, 4, 5]
  assert ckpt.best_step() == 2 and ckpt.latest_step() == 5
  like_params, like_train = _placed(_trees(0.0), mesh)
  params, train, pipeline = ckpt.restore(4, like_params, like_train)
  expected_params, expected_train = _trees(4.0)
  for got, want in zip(jax.tree.leaves((params, train)),
                       jax.tree.leaves((expected_params, expected_train))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert params["dense"]["kernel"].sharding.is_equivalent_to(sharding.replicated(mesh), 2)
  assert pipeline == {"position": 40}
  ckpt.close()

  # init_from: another run's best params, given its workdir, checkpoints dir or a step dir.
  for path in (tmp_path, tmp_path / "checkpoints"):
    restored = checkpointing.restore_params(str(path), like_params)
    np.testing.assert_array_equal(np.asarray(restored["dense"]["kernel"]), 2.0)
  restored = checkpointing.restore_params(str(tmp_path / "checkpoints" / "5"), like_params)
  np.testing.assert_array_equal(np.asarray(restored["dense"]["bias"]), np.arange(3) + 5.0)
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    checkpointing.restore_params(str(tmp_path / "empty"), like_params)


def test_replicated_arrays_on_cpu_are_written_whole_from_one_replica(tmp_path):
  """On CPU devices a replicated array is saved as one chunk of its full shape (orbax's
  replica-parallel default would cut it into one slice per device, a jitted slice each)."""
  import orbax.checkpoint as ocp

  mesh = sharding.make_mesh()
  assert mesh.devices.size == 8
  params = {"kernel": jnp.arange(64 * 24, dtype=jnp.float32).reshape(64, 24)}
  train = {"mu": jnp.linspace(-1.0, 1.0, 8 * 40, dtype=jnp.float32).reshape(8, 40)}
  params, train = _placed(params, mesh), _placed(train, mesh)
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"), keep_last=1, keep_best=0)
  ckpt.save(1, params, train, {"position": 1})
  ckpt.wait()
  ckpt.close()
  for item, tree in (("params", params), ("train", train)):
    path = str(tmp_path / "checkpoints" / "1" / item)
    with ocp.StandardCheckpointer() as reader:
      metadata = reader.metadata(path).item_metadata
      restored = reader.restore(path)
    for saved, got, want in zip(jax.tree.leaves(metadata), jax.tree.leaves(restored),
                                jax.tree.leaves(tree)):
      assert saved.storage.chunk_shape == want.shape
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_sigterm_sets_the_stop_flag_and_handler_is_restored():
  before = signal.getsignal(signal.SIGTERM)
  watcher = checkpointing.PreemptionWatcher()
  assert not watcher.should_stop(1)
  os.kill(os.getpid(), signal.SIGTERM)
  assert watcher.should_stop(2)
  watcher.close()
  assert signal.getsignal(signal.SIGTERM) is before


def test_relative_workdir_and_no_wer_metrics(tmp_path, monkeypatch):
  # The README command passes a relative workdir; orbax itself only accepts absolute paths.
  monkeypatch.chdir(tmp_path)
  mesh = sharding.make_mesh()
  ckpt = checkpointing.Checkpointer(checkpointing.checkpoint_dir("runs/rel"), 2, 1)
  for step in (1, 2):
    params, train = _placed(_trees(float(step)), mesh)
    ckpt.save(step, params, train, {"position": step})
  ckpt.wait()
  assert ckpt.best_step() == 2  # no WER anywhere: the latest
  ckpt.close()
  like_params, _ = _placed(_trees(0.0), mesh)
  restored = checkpointing.restore_params("runs/rel", like_params)
  np.testing.assert_array_equal(np.asarray(restored["dense"]["kernel"]), 2.0)
  assert (tmp_path / "runs" / "rel" / "checkpoints" / "2" / "params").is_dir()


def test_best_checkpoint_by_the_configured_metric(tmp_path):
  """Each checkpoint records every eval error rate; best_step picks by the chosen one, falls back
  to the WER where no checkpoint recorded it (runs saved before the choice existed), and
  evaluate's step list (loading.candidate_steps) follows the same choice."""
  from echo_jax.inference import loading
  mesh = sharding.make_mesh()
  directory = checkpointing.checkpoint_dir(str(tmp_path / "run"))
  ckpt = checkpointing.Checkpointer(directory, keep_last=5, keep_best=1)
  recorded = {1: {"wer": 1.10, "ctc_cer": 0.40}, 2: {"wer": 1.05, "ctc_cer": 0.38},
              3: {"wer": 1.12, "ctc_cer": 0.34}, 4: {"wer": 1.20}}
  for step, metrics in recorded.items():
    params, train = _placed(_trees(float(step)), mesh)
    ckpt.save(step, params, train, {"position": step}, metrics=metrics)
  ckpt.wait()
  assert ckpt.best_step() == 2
  ckpt.close()
  by_ctc = checkpointing.Checkpointer(directory, keep_last=5, keep_best=0, best_metric="ctc_cer")
  assert by_ctc.best_step() == 3
  # The trainer's running best WER on resume is the lowest recorded, whatever ranks the steps.
  assert by_ctc.recorded("wer") == {1: 1.10, 2: 1.05, 3: 1.12, 4: 1.20}
  assert by_ctc.recorded("ctc_cer") == {1: 0.40, 2: 0.38, 3: 0.34}
  assert checkpointing.Checkpointer(directory, 5, 0, best_metric="cer").best_step() == 2  # none
  assert loading.candidate_steps(str(tmp_path / "run"), best_metric="ctc_cer")[0] == 3
  assert loading.candidate_steps(str(tmp_path / "run"))[0] == 2
  with pytest.raises(ValueError, match="best_metric 'loss'"):
    checkpointing.Checkpointer(directory, 5, 0, best_metric="loss")
