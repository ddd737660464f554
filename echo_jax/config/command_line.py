"""One command-line form for a config: `--config FILE --config.section.field=value`.

The commands run under absl (`train`, `prepare`) get it from ml_collections' `config_flags` on the
global flags; the others (`benchmark`, `compile_for`) call `parse` here, which defines the same
`--config` flag and the command's own flags on a fresh `FlagValues` per call, so a command can run
several times in one process (tests) and next to any other command's flags. Every problem (a
missing file, a field the config does not have, a bad value, an unknown flag) is a `UserError`
naming the flag.
"""

import dataclasses
import re
import sys
from typing import Callable, List, Optional, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from echo_jax.config import files as config_files
from echo_jax.errors import UserError

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")
_CONFIG = re.compile(r"^--?config(?:=(.*))?$")


@dataclasses.dataclass
class CommandLine:
  """A parsed command line: the config (None without --config), its file, flags, positionals."""
  config: Optional[ml_collections.ConfigDict]
  config_path: str
  flags: flags.FlagValues
  args: List[str]

  def __getattr__(self, name):  # the command's own flags read as attributes: line.steps
    if name != "flags" and name in self.flags:
      return self.flags[name].value
    raise AttributeError(name)


def _config_path(argv: Sequence[str]) -> str:
  for i, arg in enumerate(argv):
    match = _CONFIG.match(arg)
    if match:
      value = match.group(1)
      return value if value is not None else (argv[i + 1] if i + 1 < len(argv) else "")
  return ""


def _has_field(config, dotted: str) -> bool:
  node = config
  for name in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      return False
    node = node[name]
  return True


def parse(argv: Sequence[str], define: Callable[[flags.FlagValues], None],
          prog: str = "", help_text: str = "") -> CommandLine:
  """Parses `argv` (without the program name): `--config FILE`, `--config.a.b=v` overrides and
  the flags `define(flag_values)` declares; the rest are positional arguments.

  `--help` prints `help_text` and the flags, then exits 0.
  """
  argv = list(argv)
  prog = prog or sys.argv[0]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
      "config", None, "Config file with get_config(), e.g. configs/default.py; override any field "
      "with --config.section.field=value.", flag_values=values, lock_config=True,
      sys_argv=[prog] + argv)
  define(values)
  if "--help" in argv or "-h" in argv:
    print(help_text.rstrip() + "\n\nflags:\n" + values.get_help())
    sys.exit(0)

  # Checked here, before config_flags loads anything, so each problem names its flag.
  path = _config_path(argv)
  overrides = [m.group(1) for m in map(_OVERRIDE.match, argv) if m]
  if overrides and not path:
    raise UserError(f"--config.{overrides[0]} needs --config FILE before it, e.g. "
                    "--config configs/default.py")
  if path:
    try:
      base = config_files.load_config_file(path)
    except (FileNotFoundError, ValueError) as e:
      raise UserError(str(e)) from None
    for field in overrides:
      if not _has_field(base, field):
        raise UserError(f"--config.{field}: the config has no field {field!r}; see "
                        "echo_jax/config/defaults.py")
  try:
    rest = values([prog] + argv)[1:]
    config = holder.value
  except (flags.Error, OSError, KeyError, AttributeError, TypeError, ValueError) as e:
    raise UserError(str(e).strip().splitlines()[0] if str(e).strip() else repr(e)) from None
  return CommandLine(config=config, config_path=path, flags=values, args=rest)
