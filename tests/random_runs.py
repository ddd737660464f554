"""Workdirs laid out as the trainer leaves them, holding a random model (shared by tests)."""

import pathlib

import jax
import numpy as np

from echo_jax import checkpointing
from echo_jax.config import files as config_files
from echo_jax.models import building
from echo_jax.training import run_dir

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config():
  """configs/tiny.py's get_config()."""
  return config_files.load_config_file(str(REPO / "configs" / "tiny.py"))


def save_random_run(config, workdir: str, step: int):
  """Writes the resolved config and one checkpoint of a random model; returns (model, params).

  The learned decoder positions are sharpened (x30) so that transcripts vary with the input.
  """
  run_dir.write_resolved_config(config, workdir)
  model = building.build_model(config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), building.example_batch(config, 1))["params"]
  params = jax.tree_util.tree_map(lambda x: x, params)
  params["decoder"]["positional_embedding"] = params["decoder"]["positional_embedding"] * 30.0
  saver = checkpointing.Checkpointer(checkpointing.checkpoint_dir(workdir), keep_last=1,
                                     keep_best=0, async_save=False)
  saver.save(step, params, {"step": np.int32(step)}, {"position": 0})
  saver.close()
  return model, params
