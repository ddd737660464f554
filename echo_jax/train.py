"""Train Echo: `python -m echo_jax.train --config configs/default.py --workdir runs/default`.

Any config field can be overridden on the command line, e.g. `--config.train.num_steps=500`.
Restarting the same command in the same workdir resumes from the latest checkpoint.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from echo_jax import errors
from echo_jax.training import trainer
from echo_jax.training.run_dir import say

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file with get_config().", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (local path or gs://...).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show the traceback of user errors too.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax/tfds info logs drown the progress bar
  try:
    summary = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except errors.UserError as e:  # bad field, manifest line, checkpoint...: the message says how
    if _DEBUG.value or errors.debug_requested([]):
      raise
    print(f"error: {errors.user_message(e)}", file=sys.stderr)
    sys.exit(errors.EXIT_USER_ERROR)
  except trainer.NonFiniteError as e:
    logging.error("%s", e)
    sys.exit(3)
  if summary.get("preempted"):
    say(f"stopped at step {summary['step']} after a preemption signal; rerun the same "
        "command to resume")
  else:
    evaluation = summary.get("eval") or {}
    numbers = ", ".join(f"{k}={v:.4f}" for k, v in evaluation.items() if isinstance(v, float))
    best = summary.get("best_wer", float("inf"))
    best = f"{best:.4f}" if best != float("inf") else "n/a"
    say(f"done: step {summary['step']}; eval: {numbers or 'off'}; best WER {best}; "
        f"checkpoints in {_WORKDIR.value}/checkpoints")


def run() -> None:
  """The console script (echo-train)."""
  app.run(main)


if __name__ == "__main__":
  run()
