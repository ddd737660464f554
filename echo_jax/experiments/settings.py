"""The `ablation` section of a study's config: its defaults and their validation.

Kept apart from the runner so that a config file can build the section without importing JAX.
"""

import ml_collections

from echo_jax.errors import UserError
from echo_jax.experiments import variants as variants_lib


def default_settings() -> ml_collections.ConfigDict:
  """The `ablation` section: what is trained, what it is scored on, how intervals are drawn."""
  a = ml_collections.ConfigDict()
  a.variants = tuple(variants_lib.VARIANTS)  # names from echo_jax.experiments.variants
  a.seeds = (0, 1, 2)  # each sets train.seed (init, dropout) and data.seed (batch order)
  a.semitones = (-6.0, -3.0, 3.0, 6.0)  # pitch-shifted copies of the test split
  a.max_test_examples = 300  # first records of the test split; -1: all
  a.baseline = variants_lib.BASELINE  # every variant is compared with this one
  a.bootstrap_resamples = 2000
  a.confidence = 0.95
  # Where --publish writes the report: docs/<name>.md, docs/<name>/report.json and the plots
  # under docs/images/<name>_*.png.
  a.report_name = "ablation"
  # Finished runs in small form (experiments/archive.py), relative to the repository root; a run
  # found there is not trained again. "": no archive.
  a.archive_dir = ""
  return a


def check(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The validated `ablation` section (UserError naming the field and the fix)."""
  if "ablation" not in config:
    raise UserError("the config has no `ablation` section; start from configs/ablation.py or "
                    "add config.ablation = echo_jax.experiments.settings.default_settings()")
  a = config.ablation
  variants_lib.check_names(tuple(a.variants))
  if a.baseline != variants_lib.BASELINE:
    raise UserError(f"config.ablation.baseline={a.baseline!r} is invalid: the variants are "
                    f"defined against {variants_lib.BASELINE!r}; keep it")
  seeds = tuple(a.seeds)
  if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or len(set(seeds)) < len(
      seeds):
    raise UserError(f"config.ablation.seeds={a.seeds!r} is invalid: give distinct non-negative "
                    "integers, e.g. --config.ablation.seeds=\"(0,1,2)\"")
  for value in tuple(a.semitones):
    if not isinstance(value, (int, float)) or not abs(float(value)) <= 24:
      raise UserError(f"config.ablation.semitones={a.semitones!r} is invalid: give shifts in "
                      "semitones within +-24, e.g. \"(-6.,-3.,3.,6.)\" (or \"()\" for none)")
  if len({f"{float(v):+g}" for v in a.semitones}) < len(tuple(a.semitones)):
    raise UserError(f"config.ablation.semitones={a.semitones!r} names a shift twice; list each "
                    "once")
  if not isinstance(a.max_test_examples, int) or (a.max_test_examples != -1
                                                  and a.max_test_examples < 1):
    raise UserError(f"config.ablation.max_test_examples={a.max_test_examples!r} is invalid: use "
                    "-1 (the whole test split) or a positive integer")
  if not isinstance(a.bootstrap_resamples, int) or a.bootstrap_resamples < 100:
    raise UserError(f"config.ablation.bootstrap_resamples={a.bootstrap_resamples!r} is invalid: "
                    "use an integer >= 100")
  if not 0.5 <= float(a.confidence) < 1.0:
    raise UserError(f"config.ablation.confidence={a.confidence!r} is invalid: use a number in "
                    "[0.5, 1), e.g. 0.95")
  if not isinstance(a.report_name, str) or not a.report_name.replace("_", "").isalnum():
    raise UserError(f"config.ablation.report_name={a.report_name!r} is invalid: use letters, "
                    "digits and underscores, e.g. \"ablation_f0_range\"")
  if not isinstance(a.archive_dir, str):
    raise UserError(f"config.ablation.archive_dir={a.archive_dir!r} is invalid: give a folder "
                    "(relative to the repository root) or \"\" for no archive")
  return a
