"""Does pitch conditioning help? Trains every variant x seed, scores each run on the test split
and on pitch-shifted copies of it, and reports error rates with intervals and paired verdicts.

  python -m echo_jax.experiments.ablation --config configs/ablation.py --workdir runs/ablation \
      [--config.ablation.seeds="(0,)"] [--publish]

Layout under WORKDIR:
  study.json                    the settings the study started with; a rerun with other settings
                                is refused (adding variants or seeds is allowed)
  runs/<variant>/seed<k>/       an ordinary training run (checkpoints, metrics.jsonl, config.py),
    timing.json                 wall seconds of each training attempt and of the evaluations
    eval/<condition>/           evaluate's predictions.jsonl, predictions.tsv, summary.json
    done.json                   written last, once training and every evaluation finished
  conditions/shift_<s>/         the pitch-shifted test wavs and their manifest.jsonl
  report.json, <name>.md and the plots <name>_wer_vs_shift.png, <name>_curves.png,
  <name>_theta.png (name: ablation.report_name)
`--publish` also writes docs/<name>.md, docs/<name>/report.json and the plots to docs/images/.

With ablation.archive_dir set (configs/ablation.py keeps it in the repository), every finished
run is also copied there in small form (experiments/archive.py: predictions, summaries, curve,
timing). A run found in the archive counts as done: its record is restored into the workdir, so a
study continues on a fresh checkout without retraining what was archived, and the report is
rebuilt from the archive alone.

Rerunning the same command continues the study: a run with done.json is skipped, an interrupted
run resumes from its own newest checkpoint (the trainer's resume: the same batches and losses as
an uninterrupted run), and only the evaluations without a summary.json are done. Runs are trained
in this process, one after another, seed-major (every variant of seed 0 first), so a study
stopped early already holds complete comparisons; SIGTERM saves the current run and stops.

Every run evaluates its final checkpoint (step config.train.num_steps), not the best by validation
WER, so every variant is scored at the same number of updates.
"""

import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import jax
import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from echo_jax.config import check as config_check
from echo_jax import errors
from echo_jax import evaluate
from echo_jax.inference import audio_input
from echo_jax.inference import error_breakdown
from echo_jax.inference import examples as examples_lib
from echo_jax.inference import loading
from echo_jax.training import trainer
from echo_jax.data import features as features_lib
from echo_jax.data import prepare
from echo_jax.experiments import archive as archive_lib
from echo_jax.experiments import conditions as conditions_lib
from echo_jax.experiments import report as report_lib
from echo_jax.experiments import settings as settings_lib
from echo_jax.experiments import variants as variants_lib
from echo_jax.errors import UserError

DONE = "done.json"
TIMING = "timing.json"
STUDY = "study.json"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Fields that may change between invocations of one study without changing what its runs measure
# (more variants or seeds extend it; the interval settings only change the report).
FREE_FIELDS = ("ablation.variants", "ablation.seeds", "ablation.bootstrap_resamples",
               "ablation.confidence", "ablation.archive_dir", "ablation.report_name",
               "train.compilation_cache_dir",
               "data.prepare_workers", "data.prefetch",
               # The word-LM search is a third hypothesis the report does not read.
               "decode.lm_path", "decode.lm_weight", "decode.lm_word_score",
               "decode.lm_beam_size")


def say(message: str) -> None:
  print(f"[ablation] {message}", flush=True)


def _duration(seconds: float) -> str:
  if seconds < 60:
    return f"{seconds:.0f} s"
  minutes = int(round(seconds / 60.0))
  return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


# ----------------------------------------------------------------------------------------------
# Settings.


def flat_fields(tree: Any, prefix: str = "") -> Dict[str, Any]:
  """{"section.field": value} of a config dict (tuples as lists, as JSON keeps them)."""
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(flat_fields(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def study_settings(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """The fields that define what a study's runs measure (FREE_FIELDS left out), as JSON keeps
  them."""
  settings = {k: v for k, v in flat_fields(config.to_dict()).items() if k not in FREE_FIELDS}
  return json.loads(json.dumps(settings, default=str))


def check_study(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes WORKDIR/study.json on the first invocation; later ones must match it (but may add
  variants or seeds): mixing settings within one study would make its comparisons meaningless."""
  path = os.path.join(workdir, STUDY)
  settings = study_settings(config)
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as handle:
      before = json.load(handle)["settings"]
    shown = archive_lib.settings_changes(before, settings)
    if shown:
      raise UserError(f"{workdir} holds a study started with other settings ({shown}); use a new "
                      "--workdir, or the study's own settings (more ablation.variants or "
                      f"ablation.seeds may be added), see {path}")
    return
  os.makedirs(workdir, exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as handle:
    json.dump({"settings": settings}, handle, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


# ----------------------------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass
class RunSpec:
  variant: str
  seed: int
  workdir: str
  config: ml_collections.ConfigDict

  @property
  def name(self) -> str:
    return f"{self.variant}/seed{self.seed}"


def run_config(config: ml_collections.ConfigDict, variant: str, seed: int
               ) -> ml_collections.ConfigDict:
  """The training config of one run: the recipe without `ablation`, the variant, the seed."""
  base = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k != "ablation"})
  out = variants_lib.apply(base, variant)
  out.train.seed = int(seed)
  out.data.seed = int(seed)
  return out


def plan(config: ml_collections.ConfigDict, workdir: str) -> List[RunSpec]:
  """Every variant x seed, seed-major."""
  a = config.ablation
  return [RunSpec(v, int(s), os.path.join(workdir, "runs", v, f"seed{int(s)}"),
                  run_config(config, v, int(s)))
          for s in a.seeds for v in a.variants]


def _timing(workdir: str) -> dict:
  timing = archive_lib.read_json(os.path.join(workdir, TIMING))
  return timing or {"train_attempts": [], "eval": {}}


def train_run(spec: RunSpec) -> dict:
  """Trains (or resumes) one run in this process; records the attempt's wall time."""
  timing = _timing(spec.workdir)
  started = time.perf_counter()
  summary = None
  try:
    summary = trainer.train_and_evaluate(spec.config, spec.workdir)
  finally:  # an interrupted attempt (Ctrl-C, an error) still counts its time
    timing["train_attempts"].append({
        "seconds": time.perf_counter() - started,
        "to_step": None if summary is None else int(summary["step"]),
        "status": ("interrupted" if summary is None else
                   "preempted" if summary.get("preempted") else "completed")})
    archive_lib.write_json(os.path.join(spec.workdir, TIMING), timing)
  return summary


class ExampleCache:
  """Each shifted condition's audio featurised once per process, copied for every run (the
  features depend only on the data settings, which all variants share)."""

  def __init__(self):
    self._files: Dict[tuple, tuple] = {}

  def examples(self, condition: conditions_lib.Condition, config, max_examples: int):
    if condition.manifest is None:
      return examples_lib.split_examples(config, conditions_lib.TEST, max_examples)
    key = (condition.manifest, json.dumps(features_lib.FeatureParams.from_config(
        config.data).as_dict(), sort_keys=True), float(config.decode.chunk_seconds),
           float(config.decode.chunk_overlap_seconds), tuple(config.model.features))
    if key not in self._files:
      rows = examples_lib.read_manifest(condition.manifest, conditions_lib.TEST)
      if max_examples >= 0:
        rows = rows[:max_examples]
      # Untrimmed, like the stored features of the unshifted test condition they are compared to.
      untrimmed = ml_collections.ConfigDict(config.to_dict())
      untrimmed.decode.trim_silence_db = 0.0
      self._files[key] = rows, [audio_input.prepare_file(row["path"], untrimmed) for row in rows]
    rows, files = self._files[key]
    return examples_lib.examples_from_files(rows, files, config)


def eval_dir(spec: RunSpec, condition: str) -> str:
  """Where a run's evaluation on the condition named `condition` is written."""
  return os.path.join(spec.workdir, "eval", condition)


def evaluate_run(spec: RunSpec, conditions: Sequence[conditions_lib.Condition],
                 max_examples: int, cache: ExampleCache) -> None:
  """Scores the run's final checkpoint on every condition without a summary.json yet."""
  pending = [c for c in conditions
             if not os.path.isfile(os.path.join(eval_dir(spec, c.name), "summary.json"))]
  if not pending:
    return
  started = time.perf_counter()
  run = loading.load_run(spec.workdir, step=int(spec.config.train.num_steps))
  config = run.config
  evaluator = evaluate.Evaluator(config, run.model, run.variables, run.tokenizer,
                                 int(config.decode.beam_size), int(config.data.eval_batch_size))
  timing = _timing(spec.workdir)
  timing["eval"]["load_checkpoint"] = time.perf_counter() - started
  for condition in pending:
    started = time.perf_counter()
    examples = cache.examples(condition, config, max_examples)
    if not examples:
      raise UserError(f"condition {condition.name} has no examples to evaluate; check the "
                      f"prepared test split and {condition.manifest or 'the data settings'}")
    summary = evaluator(examples)
    summary.update(workdir=os.path.abspath(spec.workdir), checkpoint_step=run.step,
                   source=condition.manifest or f"split:{conditions_lib.TEST}",
                   condition=condition.name, semitones=condition.semitones)
    evaluate.write_outputs(eval_dir(spec, condition.name), examples, summary)
    seconds = time.perf_counter() - started
    scores = []
    for key, label in (("decoded", "attention"), ("ctc_greedy", "CTC")):
      if key in summary:  # CTC only for models with a CTC head
        wer, cer = (summary[key].get(m, float("nan")) for m in ("wer", "cer"))
        scores.append(f"{label} WER {report_lib.percent(wer)}, CER {report_lib.percent(cer)}")
    say(f"  {spec.name} on {condition.name}: {'; '.join(scores)} ({len(examples)} utterances, "
        f"{seconds:.0f} s)")
    timing["eval"][condition.name] = seconds
    archive_lib.write_json(os.path.join(spec.workdir, TIMING), timing)


def finish_run(spec: RunSpec, conditions: Sequence[conditions_lib.Condition], steps: int
               ) -> dict:
  """done.json: the run's steps, time and evaluated conditions (written last)."""
  timing = _timing(spec.workdir)
  done = {"variant": spec.variant, "seed": spec.seed, "steps": int(steps),
          "train_seconds": sum(a["seconds"] for a in timing["train_attempts"]),
          "train_attempts": len(timing["train_attempts"]),
          "eval_seconds": sum(timing["eval"].values()),
          "conditions": [c.name for c in conditions],
          "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
  archive_lib.write_json(os.path.join(spec.workdir, DONE), done)
  return done


# ----------------------------------------------------------------------------------------------
# The study.


def archive_of(config: ml_collections.ConfigDict, repo_root: str = REPO_ROOT
               ) -> Optional[archive_lib.Archive]:
  """The study's archive (a relative ablation.archive_dir is under the repository root); None
  when the setting is empty."""
  folder = str(config.ablation.get("archive_dir", "") or "")
  if not folder:
    return None
  return archive_lib.Archive(folder if os.path.isabs(folder) else os.path.join(repo_root, folder))


def eval_dirs(spec: RunSpec, names: Sequence[str]) -> Dict[str, str]:
  return {name: eval_dir(spec, name) for name in names}


def archived_conditions(archive: archive_lib.Archive) -> Optional[List[conditions_lib.Condition]]:
  """The conditions the archived runs were scored on (no manifests: their predictions are
  archived); None before the first archived run."""
  recorded = archive.conditions()
  if recorded is None:
    return None
  return [conditions_lib.Condition(c["name"], float(c["semitones"])) for c in recorded]


def archive_run(archive: archive_lib.Archive, config, spec: RunSpec,
                conditions: Sequence[conditions_lib.Condition],
                skipped_reason: Optional[str]) -> None:
  """Copies a finished run into the archive (study.json with the corpus fingerprint first). The
  synthetic corpus is fingerprinted by its manifest; other datasets by their name only."""
  fingerprint = ""
  if str(spec.config.data.dataset) == "echo_speech":
    manifest = os.path.join(prepare.corpus_dir(spec.config), conditions_lib.MANIFEST)
    fingerprint = archive_lib.corpus_fingerprint(manifest)
    if not fingerprint:
      say(f"  {spec.name} not archived: {manifest} is missing, so the corpus it was trained on "
          "cannot be identified; it stays in the workdir")
      return
  archive.record_study(study_settings(config), fingerprint,
                       [{"name": c.name, "semitones": c.semitones} for c in conditions],
                       skipped_reason)
  archive.store(spec.workdir, spec.variant, spec.seed,
                eval_dirs(spec, [c.name for c in conditions]))
  say(f"  archived {spec.name} in {archive.run_dir(spec.variant, spec.seed)}")


def sync_archive(archive: archive_lib.Archive, config, specs: Sequence[RunSpec]) -> None:
  """Restores archived runs the workdir lacks; archives finished runs the archive lacks."""
  archived = archived_conditions(archive) or []
  names = [c.name for c in archived]
  for spec in specs:
    local = os.path.isfile(os.path.join(spec.workdir, DONE))
    if archive.has(spec.variant, spec.seed) and not local:
      archive.restore(spec.variant, spec.seed, spec.workdir, eval_dirs(spec, names))
      say(f"{spec.name}: restored from the archive {archive.folder}")
    elif local and not archive.has(spec.variant, spec.seed):
      done = archive_lib.read_json(os.path.join(spec.workdir, DONE))
      conditions = archived or [conditions_lib.Condition(n, conditions_lib.semitones_of(n))
                                for n in done["conditions"]]
      archive_run(archive, config, spec, conditions, archive.skipped_reason())


def run_study(config: ml_collections.ConfigDict, workdir: str, publish: bool = False,
              repo_root: str = REPO_ROOT, report_only: bool = False) -> Optional[dict]:
  """Trains, evaluates and reports; returns the report, or None when stopped by SIGTERM.
  `publish` also writes the markdown and plot under `repo_root`/docs. `report_only` trains
  nothing: it reports the runs finished so far (the report says how many of the planned ones)."""
  settings = settings_lib.check(config)
  config_check.validate_config(run_config(config, variants_lib.BASELINE, 0))  # before any run
  archive = archive_of(config, repo_root)
  if archive is not None:
    archive.check_settings(study_settings(config))
  check_study(config, workdir)
  specs = plan(config, workdir)
  if archive is not None:
    sync_archive(archive, config, specs)
  if report_only:
    return _report_finished_runs(config, workdir, specs, archive, publish, repo_root)
  max_examples = int(settings.max_test_examples)
  conditions: Optional[List[conditions_lib.Condition]] = None
  skipped_reason = None
  cache = ExampleCache()
  if any(not os.path.isfile(os.path.join(s.workdir, DONE)) for s in specs):
    # Before the first run's clock starts: a run's time is its training, not the corpus build.
    started = time.perf_counter()
    say("preparing the data every run shares (corpus, features; a no-op once prepared)")
    prepare.ensure_prepared(specs[0].config)
    say(f"data ready after {_duration(time.perf_counter() - started)} (counted in no run)")
  durations = []
  for spec in specs:
    done = archive_lib.read_json(os.path.join(spec.workdir, DONE))
    if done is not None:
      durations.append(done["train_seconds"] + done["eval_seconds"])
  for k, spec in enumerate(specs, 1):
    done = archive_lib.read_json(os.path.join(spec.workdir, DONE))
    if done is not None:
      say(f"run {k} of {len(specs)}: {spec.name} is done (skipped; {done['steps']} steps, "
          f"{_duration(done['train_seconds'] + done['eval_seconds'])})")
      continue
    remaining = sum(1 for s in specs[k - 1:]
                    if not os.path.isfile(os.path.join(s.workdir, DONE)))
    eta = (f"ETA {_duration(remaining * sum(durations) / len(durations))} for {remaining} runs "
           f"at {_duration(sum(durations) / len(durations))} per run" if durations else
           "ETA after the first completed run")
    say(f"run {k} of {len(specs)}: training {spec.name} ({spec.config.train.num_steps} steps) "
        f"in {spec.workdir}; {eta}")
    summary = train_run(spec)
    if summary.get("preempted"):
      say(f"stopped at step {summary['step']} of {spec.name} after a preemption signal; rerun "
          "the same command to resume")
      return None
    if conditions is None:
      conditions, skipped_reason = conditions_lib.build(spec.config, workdir,
                                                        tuple(settings.semitones), max_examples,
                                                        say)
    names = ", ".join(c.name for c in conditions)
    say(f"run {k} of {len(specs)}: evaluating {spec.name} on {names}")
    evaluate_run(spec, conditions, max_examples, cache)
    done = finish_run(spec, conditions, int(summary["step"]))
    if archive is not None:
      archive_run(archive, config, spec, conditions, skipped_reason)
    durations.append(done["train_seconds"] + done["eval_seconds"])
    jax.clear_caches()  # the next run builds another model: free this one's executables
  if conditions is None:  # every run was done already
    return _report_finished_runs(config, workdir, specs, archive, publish, repo_root)
  return write_report(config, workdir, specs, conditions, skipped_reason, publish, repo_root)


def _report_finished_runs(config, workdir: str, specs: Sequence[RunSpec],
                          archive: Optional[archive_lib.Archive], publish: bool,
                          repo_root: str) -> dict:
  """The report of the runs finished so far, without training or evaluating anything."""
  finished = [s for s in specs if os.path.isfile(os.path.join(s.workdir, DONE))]
  if not finished:
    raise UserError(f"no run of the study in {workdir} has finished yet, so there is nothing to "
                    "report: run the study without --report_only first")
  say(f"reporting the {len(finished)} finished of {len(specs)} planned runs")
  # When the archive knows what the runs were scored on, the report needs neither the corpus
  # nor the models.
  conditions = archived_conditions(archive) if archive is not None else None
  skipped_reason = archive.skipped_reason() if archive is not None else None
  if conditions is None:  # the same conditions the finished runs were scored on, found again
    conditions, skipped_reason = conditions_lib.build(
        specs[0].config, workdir, tuple(config.ablation.semitones),
        int(config.ablation.max_test_examples), say)
  return write_report(config, workdir, specs, conditions, skipped_reason, publish, repo_root)


def _test_f0_values(runs: Sequence[dict]) -> List[float]:
  """The scored test utterances' F0 (measured median, else the corpus's expected F0), from the
  metadata evaluate keeps in the predictions."""
  for run in runs:
    path = run["predictions"].get(conditions_lib.TEST)
    if path:
      values = []
      for row in report_lib.read_predictions(path).values():
        for field in (error_breakdown.MEASURED_F0_FIELD, "expected_f0_hz"):
          if isinstance(row.get(field), (int, float)):
            values.append(float(row[field]))
            break
      return values
  return []


def write_report(config, workdir: str, specs: Sequence[RunSpec],
                 conditions: Sequence[conditions_lib.Condition], skipped_reason: Optional[str],
                 publish: bool, repo_root: str) -> dict:
  """report.json, <name>.md and the plots from the runs' predictions and curves; with publish
  also docs/<name>.md, docs/<name>/report.json and docs/images/<name>_*.png."""
  settings = config.ablation
  name = str(settings.report_name)
  runs = []
  for spec in specs:
    done = archive_lib.read_json(os.path.join(spec.workdir, DONE))
    if done is None:
      continue
    predictions = {c.name: os.path.join(eval_dir(spec, c.name), "predictions.jsonl")
                   for c in conditions
                   if os.path.isfile(os.path.join(eval_dir(spec, c.name), "predictions.jsonl"))}
    runs.append({"variant": spec.variant, "seed": spec.seed, "workdir": spec.workdir,
                 "steps": done["steps"], "train_seconds": done["train_seconds"],
                 "train_attempts": done["train_attempts"], "eval_seconds": done["eval_seconds"],
                 "predictions": predictions,
                 "metrics": os.path.join(spec.workdir, archive_lib.METRICS)})
  report_settings = {
      "variants": list(settings.variants), "seeds": list(settings.seeds),
      "baseline": settings.baseline, "semitones": list(settings.semitones),
      "max_test_examples": int(settings.max_test_examples),
      "bootstrap_resamples": int(settings.bootstrap_resamples),
      "confidence": float(settings.confidence), "num_steps": int(config.train.num_steps),
      "dataset": str(config.data.dataset), "skipped_conditions": skipped_reason,
      "train_max_f0_hz": float(config.data.get("train_max_f0_hz", 0.0) or 0.0),
      "eval_min_f0_hz": float(config.data.get("eval_min_f0_hz", 0.0) or 0.0)}
  report = report_lib.build(runs, [{"name": c.name, "semitones": c.semitones}
                                   for c in conditions], report_settings)
  archive_lib.write_json(os.path.join(workdir, "report.json"), report)
  images = {
      "shift": report_lib.plot(report, os.path.join(workdir, f"{name}_wer_vs_shift.png")),
      "curves": report_lib.plot_curves(runs, list(settings.variants),
                                       os.path.join(workdir, f"{name}_curves.png")),
      "theta": report_lib.plot_theta(list(settings.variants), float(config.model.theta),
                                     os.path.join(workdir, f"{name}_theta.png"),
                                     _test_f0_values(runs)),
  }
  images = {k: v for k, v in images.items() if v}
  command = (f"python -m echo_jax.experiments.ablation --config configs/{name}.py "
             f"--workdir {workdir}")
  with open(os.path.join(workdir, f"{name}.md"), "w", encoding="utf-8") as handle:
    handle.write(report_lib.markdown(report, {k: os.path.basename(v) for k, v in images.items()},
                                     command))
  say(f"report: {os.path.join(workdir, 'report.json')}, {os.path.join(workdir, name + '.md')}")
  for line in report["conclusion"]:
    say(line)
  if publish:
    docs = os.path.join(repo_root, "docs", f"{name}.md")
    image_dir = os.path.join(repo_root, "docs", "images")
    os.makedirs(image_dir, exist_ok=True)
    published = {}
    for key, path in images.items():
      published[key] = os.path.join(image_dir, os.path.basename(path))
      shutil.copyfile(path, published[key])
    with open(docs, "w", encoding="utf-8") as handle:
      handle.write(report_lib.markdown(
          report, {k: os.path.relpath(v, os.path.dirname(docs)) for k, v in published.items()},
          command))
    archive_lib.write_json(os.path.join(repo_root, "docs", name, "report.json"), report)
    say(f"published {docs} and docs/{name}/report.json")
  return report


def _define_flags() -> dict:
  """The command-line flags, defined when the command runs (importing the module defines none,
  so it can share a process with the other commands)."""
  return {
      "config": config_flags.DEFINE_config_file(
          "config", None, "Path to a config file with get_config() and an `ablation` section.",
          lock_config=True),
      "workdir": flags.DEFINE_string("workdir", None, "Study directory."),
      "publish": flags.DEFINE_bool("publish", False, "Also copy ablation.md to docs/ablation.md "
                                   "(and the plot to docs/images/)."),
      "report_only": flags.DEFINE_bool("report_only", False, "Train nothing: report the runs "
                                       "finished so far (with --publish, into docs/ too)."),
      "debug": flags.DEFINE_bool("debug", False, "Show the traceback of user errors too."),
  }


def main(argv, holders: dict) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax/tfds info logs drown the progress lines
  try:
    run_study(holders["config"].value, holders["workdir"].value,
              publish=holders["publish"].value, report_only=holders["report_only"].value)
  except errors.UserError as e:
    if holders["debug"].value or errors.debug_requested([]):
      raise
    print(f"error: {errors.user_message(e)}", file=sys.stderr)
    sys.exit(errors.EXIT_USER_ERROR)


def cli() -> None:
  """The command (and the echo-ablation console script)."""
  holders = _define_flags()
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(lambda argv: main(argv, holders))


if __name__ == "__main__":
  cli()
