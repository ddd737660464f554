"""Errors the user can fix, and how command-line entry points report them.

A `UserError` carries a message that says what is wrong, where (the field, file, line or step) and
how to fix it. Every CLI runs its main through `run_cli`: a user error prints one line
`error: <message>` and exits 2; anything else is an internal error and keeps its traceback.
`--debug` (or ECHO_JAX_DEBUG=1) shows the traceback of user errors too.
"""

import os
import sys
from typing import Callable, Optional, Sequence

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"


class UserError(ValueError):
  """Bad input (config, file, manifest, checkpoint choice) the user can fix; the message says how."""


def debug_requested(argv: Sequence[str]) -> bool:
  return DEBUG_FLAG in argv or os.environ.get("ECHO_JAX_DEBUG", "") not in ("", "0")


def user_message(error: BaseException) -> str:
  """One line: the first line of the message (orbax and TF errors run to dozens of lines)."""
  lines = [line for line in str(error).splitlines() if line.strip()]
  return lines[0].strip() if lines else type(error).__name__


def run_cli(main: Callable[[Sequence[str]], Optional[int]],
            argv: Optional[Sequence[str]] = None) -> int:
  """main(argv without --debug) -> exit status; user errors become one `error:` line and 2."""
  argv = list(sys.argv[1:] if argv is None else argv)
  debug = debug_requested(argv)
  try:
    return int(main([a for a in argv if a != DEBUG_FLAG]) or 0)
  except UserError as e:
    if debug:
      raise
    print(f"error: {user_message(e)}", file=sys.stderr)
    return EXIT_USER_ERROR


class MissingInputError(UserError, FileNotFoundError):
  """A file, folder, run or checkpoint the command needs is not there; the message says which and
  how to make it."""
