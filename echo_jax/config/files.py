"""Config files and command-line overrides shared by the CLIs (benchmark, compile_for, diagnostics).

`load_config_file(path)` runs a config file's get_config() (the files `echo_jax.train --config`
takes); `apply_overrides(config, ["section.field=value", ...])` sets fields from `--set` flags.
"""

import ast
import importlib.util
import os
from typing import Iterable

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


def apply_overrides(config: ml_collections.ConfigDict,
                    assignments: Iterable[str]) -> ml_collections.ConfigDict:
  """Sets `section.field=value` assignments (Python literals, else strings) in place; returns it.

  A field the config does not have is an error naming it (a typo never passes silently).
  """
  for assignment in assignments or ():
    key, sep, text = assignment.partition("=")
    if not sep:
      raise ValueError(f"--set {assignment!r}: write it as section.field=value, "
                       "e.g. --set train.param_sharding=fsdp")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # a bare string such as fsdp
    node = config
    *parents, leaf = key.split(".")
    try:
      for name in parents:
        node = node[name]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
      raise ValueError(f"--set {assignment!r}: the config has no field {key!r} of that type "
                       f"({e}); see echo_jax/config/defaults.py") from None
  return config
