"""A non-finite loss stops training with a dump naming the step and the offending batch's
examples, and the checkpoint directory keeps only states from before the bad step."""

import json
import os

import numpy as np
import pytest

from echo_jax import checkpointing
from echo_jax.training import trainer
from echo_jax.data import pipeline

BAD_STEP = 4  # 0-based index of the poisoned batch


def test_nan_batch_stops_with_dump_and_last_good_checkpoint(tiny_data_config, tmp_path,
                                                           monkeypatch):
  config = tiny_data_config
  config.data.bucket_frames = (1024,)
  config.data.bucket_batch_sizes = (8,)
  config.train.num_steps = 10
  config.train.warmup_steps = 1
  config.train.log_every = 4
  config.train.checkpoint_every = 3
  config.eval.every = 0
  poisoned = {}
  real_make = pipeline.make_train_iterator

  class Poisoning:
    def __init__(self, inner):
      self.inner = inner
      self.count = 0

    def __next__(self):
      batch = next(self.inner)
      if self.count == BAD_STEP:
        batch = dict(batch, mel=batch["mel"].copy())  # tf.data hands out read-only arrays
        batch["mel"][0, 0, 0] = np.nan
        poisoned["example_index"] = [int(i) for i in batch["example_index"]]
      self.count += 1
      return batch

    def get_state(self):
      return self.inner.get_state()

  monkeypatch.setattr(pipeline, "make_train_iterator",
                      lambda *args, **kwargs: Poisoning(real_make(*args, **kwargs)))
  workdir = str(tmp_path / "run")
  with pytest.raises(trainer.NonFiniteError, match=f"step {BAD_STEP}"):
    trainer.train_and_evaluate(config, workdir)

  with open(os.path.join(workdir, f"nonfinite_step_{BAD_STEP}.json"), encoding="utf-8") as f:
    dump = json.load(f)
  assert dump["step"] == BAD_STEP
  assert not np.isfinite(dump["loss"])
  assert dump["example_index"] == poisoned["example_index"]
  assert dump["nonfinite_grad_params"]  # names the parameters whose gradients blew up
  # The save due at step 6 saw the bad step first and did not happen; step 3 is the last good one.
  assert dump["last_good_checkpoint_step"] == 3
  ckpt = checkpointing.Checkpointer(checkpointing.checkpoint_dir(workdir), 3, 1)
  assert ckpt.all_steps() == [3]
  ckpt.close()
