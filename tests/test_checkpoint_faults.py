"""Damaged checkpoints: a resume moves each damaged newest step aside (never deleting it) and
continues from the newest one that restores, with the losses of an uninterrupted run; evaluation
and transcription fall back from a damaged best step with a warning, and a damaged explicit
--checkpoint is a one-line error."""

import json
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

from echo_jax import errors
from echo_jax import checkpointing
from echo_jax.inference import loading
from echo_jax.training import trainer
from echo_jax.models import building
from run_logs import train_losses

STEPS = 6
EVERY = 2


@pytest.fixture(scope="module")
def reference(tmp_path_factory, _tiny_prepared_session):
  """An uninterrupted tiny run with checkpoints at steps 2, 4 and 6, and its losses."""
  import ml_collections
  config = ml_collections.ConfigDict(_tiny_prepared_session[0].to_dict())
  config.data.bucket_frames = (1024,)  # one bucket: one compile
  config.data.bucket_batch_sizes = (8,)
  config.train.num_steps = STEPS
  config.train.warmup_steps = 2
  config.train.log_every = 1
  config.train.checkpoint_every = EVERY
  config.train.keep_checkpoints = 3
  config.eval.every = 0
  workdir = tmp_path_factory.mktemp("faults") / "reference"
  trainer.train_and_evaluate(config, str(workdir))
  return config, workdir, train_losses(workdir)


def _stopped_after(reference_workdir, target, step):
  """A copy of the reference run as it was right after saving `step` (later steps and their
  metric lines removed)."""
  shutil.copytree(reference_workdir, target)
  ckpt = pathlib.Path(checkpointing.checkpoint_dir(str(target)))
  for name in os.listdir(ckpt):
    if name.isdigit() and int(name) > step:
      shutil.rmtree(ckpt / name)
  path = target / "metrics.jsonl"
  kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
  path.write_text("\n".join(kept) + "\n")
  return ckpt


def _corrupt_arrays(step_dir):
  data = step_dir / "params" / "ocdbt.process_0" / "d"
  for name in os.listdir(data):
    (data / name).write_bytes(b"\0garbage" * 16)


def _truncate_metadata(step_dir):
  path = step_dir / "params" / "_METADATA"
  path.write_bytes(path.read_bytes()[:40])


def _remove_commit_marker(step_dir):
  (step_dir / checkpointing.COMMIT_MARKER).unlink()


def _break_pipeline_state(step_dir):
  for name in os.listdir(step_dir / "pipeline"):
    if name != checkpointing.COMMIT_MARKER:
      (step_dir / "pipeline" / name).write_text("{not json")


DAMAGE = {"corrupt_arrays": _corrupt_arrays, "truncated_metadata": _truncate_metadata,
          "no_commit_marker": _remove_commit_marker, "bad_pipeline_state": _break_pipeline_state}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_moves_a_damaged_newest_step_aside_and_continues_exactly(reference, tmp_path,
                                                                        damage, capsys):
  config, reference_workdir, expected = reference
  workdir = tmp_path / "run"
  ckpt = _stopped_after(reference_workdir, workdir, 4)
  DAMAGE[damage](ckpt / "4")
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert summary["step"] == STEPS
  said = capsys.readouterr().out
  assert "checkpoint step 4 does not restore" in said and "corrupt_4" in said
  assert "resumed from step 2" in said
  # Moved, not deleted, with the reason beside it.
  assert (ckpt / "corrupt_4" / "params").is_dir()
  assert (ckpt / "corrupt_4" / "REASON.txt").read_text().strip()
  got = train_losses(workdir)
  for step in range(3, STEPS + 1):  # re-trained from step 2: the uninterrupted run's losses
    assert got[step] == expected[step], (step, got[step], expected[step])
  assert sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) == [2, 4, 6]


def test_no_restorable_checkpoint_stops_with_one_message(reference, tmp_path):
  config, reference_workdir, _ = reference
  workdir = tmp_path / "run"
  ckpt = _stopped_after(reference_workdir, workdir, 4)
  _corrupt_arrays(ckpt / "4")
  _remove_commit_marker(ckpt / "2")
  with pytest.raises(checkpointing.NoUsableCheckpointError, match="no checkpoint .* restores"):
    trainer.train_and_evaluate(config, str(workdir))
  assert sorted(os.listdir(ckpt)) == ["corrupt_2", "corrupt_4"]


def test_a_checkpoint_of_another_model_is_a_user_error_and_is_not_moved(reference, tmp_path):
  config, reference_workdir, _ = reference
  workdir = tmp_path / "run"
  ckpt = _stopped_after(reference_workdir, workdir, 4)
  other = type(config)(config.to_dict())
  other.model.d_model = 32
  with pytest.raises(checkpointing.CheckpointMismatchError, match="holds a different model"):
    trainer.train_and_evaluate(other, str(workdir))
  assert sorted(n for n in os.listdir(ckpt)) == ["2", "4"]


def test_inference_falls_back_from_a_damaged_best_step(reference, tmp_path):
  _, reference_workdir, _ = reference
  workdir = tmp_path / "run"
  ckpt = _stopped_after(reference_workdir, workdir, STEPS)
  _corrupt_arrays(ckpt / str(STEPS))
  warnings = []
  config = loading.load_config(str(workdir))
  model = building.build_model(config)
  like = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                loading.abstract_params(model, config))
  steps = loading.candidate_steps(str(workdir))
  assert steps == [6, 4, 2]  # no WERs: newest first
  step, params = loading.restore_first_usable(str(workdir), like, steps, explicit=False,
                                                warn=warnings.append)
  assert step == 4
  assert warnings and "step 6 does not restore" in warnings[0] and "using step 4" in warnings[0]
  intact = checkpointing.restore_params(str(reference_workdir), like, step=4)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, intact)
  with pytest.raises(errors.UserError, match="checkpoint step 6 .* does not restore"):
    loading.restore_first_usable(str(workdir), like, [6], explicit=True)
  assert sorted(n for n in os.listdir(ckpt)) == ["2", "4", "6"]  # read-only: nothing moved
