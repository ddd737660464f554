"""Config files outside the flag parser: `load_config_file(path)` runs a config file's get_config()
(the files every CLI's `--config` takes; the `--config.a.b=v` overrides are parsed by
ml_collections' config_flags, echo_jax/config/command_line.py)."""

import importlib.util
import os

import ml_collections


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of a config file such as configs/default.py."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config {path!r} does not exist; pass e.g. configs/default.py")
  spec = importlib.util.spec_from_file_location("echo_jax_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"--config {path!r} has no get_config()")
  return module.get_config()

