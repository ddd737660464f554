"""Checkpoint averaging (load_run(average=K), evaluate/transcribe --average): the parameters are the
element-wise mean of the K newest checkpoints, and bad requests name the fix."""

import shutil

import jax
import numpy as np
import pytest

from echo_jax import checkpointing
from echo_jax.data.tokenizer import Tokenizer
from echo_jax.errors import UserError
from echo_jax.inference import loading
from random_runs import save_random_run, tiny_config


@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory):
  """A run with checkpoints at steps 10, 20, 30 whose parameters are the random init times 1, 2
  and 4 (so every mean is known exactly)."""
  workdir = str(tmp_path_factory.mktemp("avg_run"))
  tokenizer = Tokenizer.train(["the cat sat"], f"{workdir}/tok/chars", kind="char")
  shutil.copy(tokenizer.path, f"{workdir}/tokenizer.json")
  config = tiny_config()
  config.model.vocab_size = tokenizer.vocab_size
  _, params = save_random_run(config, workdir, 10)
  saver = checkpointing.Checkpointer(checkpointing.checkpoint_dir(workdir), keep_last=3,
                                     keep_best=0, async_save=False)
  for step, scale in ((20, 2.0), (30, 4.0)):
    scaled = jax.tree_util.tree_map(lambda x, s=scale: np.asarray(x) * s, params)
    saver.save(step, scaled, {"step": np.int32(step)}, {"position": 0})
  saver.close()
  return workdir, params


def _close(tree, expected):
  for got, want in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)


def test_average_is_the_mean_of_the_newest_checkpoints(three_checkpoints):
  workdir, params = three_checkpoints
  newest = loading.load_run(workdir, step=30)
  assert newest.averaged_steps == ()
  _close(newest.variables["params"], jax.tree_util.tree_map(lambda x: np.asarray(x) * 4, params))
  two = loading.load_run(workdir, average=2)
  assert (two.step, two.averaged_steps) == (30, (30, 20))
  _close(two.variables["params"], jax.tree_util.tree_map(lambda x: np.asarray(x) * 3, params))
  up_to_20 = loading.load_run(workdir, step=20, average=2)
  assert up_to_20.averaged_steps == (20, 10)
  _close(up_to_20.variables["params"],
         jax.tree_util.tree_map(lambda x: np.asarray(x) * 1.5, params))
  every = loading.load_run(workdir, average=3)
  _close(every.variables["params"],
         jax.tree_util.tree_map(lambda x: np.asarray(x) * (7 / 3), params))
  leaves = jax.tree_util.tree_leaves(every.variables["params"])
  assert all(np.asarray(leaf).dtype == np.float32 for leaf in leaves)


def test_bad_average_requests_name_the_fix(three_checkpoints):
  workdir, _ = three_checkpoints
  with pytest.raises(UserError, match="keeps 3 checkpoint.*keep_checkpoints"):
    loading.load_run(workdir, average=4)
  with pytest.raises(UserError, match="keeps 1 checkpoint"):
    loading.load_run(workdir, step=10, average=2)
  with pytest.raises(UserError, match="--average=0 is invalid"):
    loading.load_run(workdir, average=0)
  with pytest.raises(UserError, match="step 15 not in"):
    loading.load_run(workdir, step=15, average=2)


def test_transcribe_average_decodes_with_the_averaged_parameters(three_checkpoints, tmp_path,
                                                                  capsys):
  """`transcribe --average 2` prints what the averaged parameters decode."""
  import json

  import soundfile as sf

  from echo_jax import transcribe
  workdir, _ = three_checkpoints
  t = np.arange(16000) / 16000.0
  wave = (0.3 * np.sin(2 * np.pi * 140.0 * t * (1 + 0.3 * t))).astype(np.float32)
  path = str(tmp_path / "tone.wav")
  sf.write(path, wave, 16000, subtype="FLOAT")
  run = loading.load_run(workdir, average=2)
  expected = transcribe.transcribe_files([path], run.config, run.model, run.variables,
                                         run.tokenizer, batch_size=1)[0].text
  assert transcribe.main(["--workdir", workdir, "--average", "2", "--json", "--batch_size", "1",
                          path]) == 0
  row = json.loads(capsys.readouterr().out)
  assert row["text"] == expected
