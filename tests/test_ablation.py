"""The pitch ablation: the placebo really feeds another utterance's F0; the runner trains, resumes,
skips finished runs, evaluates every condition and reports numbers that jiwer reproduces from the
written predictions; verdicts follow the paired intervals."""

import contextlib
import io
import json
import os

import jiwer
import ml_collections
import numpy as np
import pytest

from echo_jax.inference import audio_input
from echo_jax.inference import examples as examples_lib
from echo_jax import checkpointing
from echo_jax.config import check as config_check
from echo_jax.data import f0_source, pipeline
from echo_jax.errors import UserError
from echo_jax.experiments import ablation, report, settings, variants
from echo_jax.experiments import archive as archive_lib

# ------------------------------------------------------------------------------------------------
# The placebo: data.f0_source = "shuffled".


def _own_tracks(config, prepared, split):
  """[(example index, f0 track)] of the split in record order, each record's own F0."""
  own = ml_collections.ConfigDict(config.to_dict())
  own.data.f0_source = "own"
  return [(int(r["index"]), np.asarray(r["f0"], np.float32))
          for r in pipeline.iterate_examples(own, split, prepared=prepared)]


def _expected(tracks, position):
  """What record `position` is fed when shuffled: its donor's track stretched to its frames."""
  donor = f0_source.donor_position(position, len(tracks))
  assert donor != position
  return f0_source.stretch_f0(tracks[donor][1], tracks[position][1].size)


def test_stretch_keeps_values_and_voicing_and_spans_the_whole_track():
  donor = np.array([0, 0, 100, 110, 120, 0, 130, 140], np.float32)
  longer = f0_source.stretch_f0(donor, 16)
  np.testing.assert_array_equal(longer, np.repeat(donor, 2))
  shorter = f0_source.stretch_f0(donor, 4)
  np.testing.assert_array_equal(shorter, donor[[1, 3, 5, 7]])  # frame centres
  assert set(f0_source.stretch_f0(donor, 11).tolist()) <= set(donor.tolist())
  assert [f0_source.donor_position(p, 5) for p in range(5)] == [2, 3, 4, 0, 1]


def test_shuffled_f0_feeds_another_utterances_track_in_training_and_evaluation(
    tiny_prepared, tiny_data_config):
  config = tiny_data_config
  config.data.f0_source = "shuffled"
  tracks = _own_tracks(config, tiny_prepared, "train")
  position_of = {index: p for p, (index, _) in enumerate(tracks)}

  def check(batch):
    checked = 0
    for row, index in enumerate(batch["example_index"]):
      if index < 0:
        continue
      position = position_of[int(index)]
      frames = int(batch["num_frames"][row])
      got = batch["f0"][row, :frames]
      np.testing.assert_array_equal(got, _expected(tracks, position))
      own = tracks[position][1]
      assert got.shape == own.shape and not np.array_equal(got, own)
      assert not batch["f0"][row, frames:].any()
      checked += 1
    return checked

  train = pipeline.make_train_iterator(config, tiny_prepared)
  assert sum(check(next(train)) for _ in range(2)) >= 2  # training batches
  train.close()
  config.data.eval_batch_size = 16
  assert sum(check(b) for b in pipeline.make_eval_batches(config, "train", prepared=tiny_prepared,
                                                          max_examples=-1)) == len(tracks)
  # evaluate's split path reads iterate_examples: the same substitution.
  for position, record in enumerate(pipeline.iterate_examples(config, "train",
                                                              prepared=tiny_prepared)):
    np.testing.assert_array_equal(record["f0"], _expected(tracks, position))
    np.testing.assert_array_equal(record["voiced"], record["f0"] > 0)


def test_manifest_evaluation_of_a_shuffled_run_feeds_another_rows_f0(tiny_corpus,
                                                                     tiny_data_config):
  config = tiny_data_config
  rows = examples_lib.read_manifest(os.path.join(tiny_corpus, "manifest.jsonl"), "validation")
  rows += examples_lib.read_manifest(os.path.join(tiny_corpus, "manifest.jsonl"), "test")
  assert len(rows) >= 3
  own = examples_lib.manifest_examples(rows, config)
  config.data.f0_source = "shuffled"
  files = [audio_input.prepare_file(row["path"], config) for row in rows]
  shuffled = examples_lib.examples_from_files(rows, files, config)
  for i, example in enumerate(shuffled):
    donor = own[f0_source.donor_position(i, len(own))].items[0]["f0"]
    np.testing.assert_array_equal(example.items[0]["f0"],
                                  f0_source.stretch_f0(donor, own[i].items[0]["f0"].size))
    assert not np.array_equal(example.items[0]["f0"], own[i].items[0]["f0"])
    np.testing.assert_array_equal(example.items[0]["mel"], own[i].items[0]["mel"])
  # The prepared files stay as they were: another run evaluating them gets its own F0 back.
  np.testing.assert_array_equal(files[0].items[0]["f0"], own[0].items[0]["f0"])


# ------------------------------------------------------------------------------------------------
# Verdicts.


@pytest.mark.parametrize("interval,expected", [
    ((-0.03, -0.05, -0.01), "better than fixed"),
    ((0.02, 0.001, 0.04), "worse than fixed"),
    ((-0.01, -0.03, 0.01), "no measurable difference"),
    ((0.0, 0.0, 0.0), "no measurable difference"),  # a variant against itself
    ((-0.02, -0.04, 0.0), "no measurable difference"),  # touching 0 does not exclude it
    ((0.0, float("nan"), float("nan")), "not measured"),
])
def test_verdict_follows_whether_the_interval_excludes_zero(interval, expected):
  assert report.verdict(interval, "fixed") == expected


def _synthetic_report(diffs):
  """A report with test-split WER/CER differences {variant: (d, low, high)} against fixed."""
  def diff(values):
    return {"difference": values[0], "low": values[1], "high": values[2],
            "verdict": report.verdict(values, "fixed")}
  cell = {"mean": 0.5, "low": 0.4, "high": 0.6}
  return {"settings": {"baseline": "fixed", "seeds": [0, 1, 2], "variants": ["fixed", *diffs]},
          "conditions": [{"name": "test", "semitones": 0.0}],
          "results": {"attention": {"test": {v: {"num_utterances": 300, "wer": cell, "cer": cell,
                                                 "seeds": [0, 1, 2]}
                                             for v in ["fixed", *diffs]}}},
          "differences": {"attention": {"test": {v: {"wer": diff(d), "cer": diff(d)}
                                                 for v, d in diffs.items()}}},
          "placebo": {}}


def test_conclusion_says_exactly_what_the_intervals_support():
  lines = report.conclusion(_synthetic_report({
      "seed": (-0.031, -0.05, -0.012), "per_frame": (0.004, -0.01, 0.019),
      "radius_f0": (0.02, 0.005, 0.035)}))
  text = "\n".join(lines)
  assert ("- seed: better than fixed by WER, -3.1 points (95 % interval -5.0 to -1.2)" in text)
  assert "- per_frame: no measurable difference by WER, +0.4 points" in text
  assert "- radius_f0: worse than fixed by WER" in text
  assert ("Supported (attention decoder, greedy): seed has a lower test WER than fixed; radius_f0 "
          "has a higher test WER than fixed; every other variant shows no measurable difference."
          in text)

  assert "(300 utterances x 3 seed(s))" in text

  nothing = _synthetic_report({"seed": (-0.01, -0.03, 0.01)})
  nothing["results"]["attention"]["test"]["seed"]["seeds"] = [0]  # a study stopped early
  nothing = "\n".join(report.conclusion(nothing))
  assert "no variant's test WER differs measurably from fixed" in nothing
  assert "better" not in nothing and "worse" not in nothing
  assert "(300 utterances x 1-3 seed(s))" in nothing
  assert "Caution" not in nothing and "Partial study" not in nothing


def test_conclusion_flags_a_baseline_above_100_percent_and_a_partial_study():
  synthetic = _synthetic_report({"seed": (-0.05, -0.08, -0.02)})
  synthetic["results"]["attention"]["test"]["fixed"]["wer"] = {"mean": 1.25, "low": 1.2,
                                                               "high": 1.3}
  synthetic["runs"] = [{"variant": v, "seed": 0} for v in ("fixed", "seed")]
  text = "\n".join(report.conclusion(synthetic))
  assert "Caution (attention decoder, greedy): fixed's test WER is 125.0 %" in text
  assert "Partial study: 2 of the 6 planned runs" in text
  synthetic["runs"] = [{"variant": v, "seed": s} for v in ("fixed", "seed") for s in (0, 1, 2)]
  synthetic["results"]["attention"]["test"]["fixed"]["wer"]["mean"] = 0.99
  text = "\n".join(report.conclusion(synthetic))
  assert "Caution" not in text and "Partial study" not in text


def test_multiple_comparisons_count_the_flagged_intervals_against_chance():
  """6 variants x 2 metrics = 12 intervals, 3 of them excluding 0: the line counts them, names
  them, and says ~0.6 would by chance at 95 %; a study with one interval gets no such line."""
  diffs = {v: (0.001, -0.01, 0.012) for v in ("a", "b", "c", "d", "e")}
  diffs["seed"] = (-0.031, -0.05, -0.012)  # WER and CER both flagged
  synthetic = _synthetic_report(diffs)
  synthetic["differences"]["attention"]["test"]["a"]["cer"] = {
      "difference": 0.02, "low": 0.005, "high": 0.035, "verdict": report.verdict(
          (0.02, 0.005, 0.035), "fixed")}
  line = report.multiple_comparisons(synthetic, 0.95)
  assert line.startswith("Multiple comparisons: 3 of the 12 paired intervals above exclude 0 ")
  assert ("(a worse by CER (attention, test); seed better by WER (attention, test); seed better "
          "by CER (attention, test))" in line)
  assert "about 0.6 would at 95 % by chance alone" in line
  assert line in report.conclusion(synthetic)
  one = _synthetic_report({"seed": (-0.031, -0.05, -0.012)})
  del one["differences"]["attention"]["test"]["seed"]["cer"]
  assert report.multiple_comparisons(one) is None


def test_placebo_wording():
  synthetic = _synthetic_report({"seed": (-0.03, -0.05, -0.01)})
  synthetic["placebo"] = {"attention": {"test": {"seed": {
      "against": "shuffled_f0",
      "wer": {"difference": -0.001, "low": -0.02, "high": 0.018, "verdict": report.SAME}}}}}
  text = "\n".join(report.conclusion(synthetic))
  assert "no evidence that seed uses the utterance's own pitch" in text


def test_bad_ablation_settings_are_named(tiny_data_config):
  config = tiny_data_config
  config.ablation = settings.default_settings()
  config.ablation.variants = ("seed", "bogus")
  with pytest.raises(UserError, match="unknown ablation variant 'bogus'"):
    settings.check(config)
  config.ablation.variants = ("seed",)
  with pytest.raises(UserError, match="lacks the baseline 'fixed'"):
    settings.check(config)


def test_every_variant_is_a_valid_config_differing_only_in_pitch_options(tiny_data_config):
  base = tiny_data_config
  pitch_fields = {"model.theta_mode", "model.pitch_bias", "model.radius_mode", "data.f0_source"}
  flat_base = ablation.flat_fields(base.to_dict())
  for name in variants.VARIANTS:
    config = variants.apply(base, name)
    config_check.validate_config(config)
    flat = ablation.flat_fields(config.to_dict())
    assert {k for k in flat if flat[k] != flat_base[k]} <= pitch_fields, name
  assert variants.apply(base, "shuffled_f0").data.f0_source == "shuffled"
  assert variants.apply(base, "fixed").model.theta_mode == "fixed"
  assert variants.apply(base, "seed+pitch_bias").model.pitch_bias


# ------------------------------------------------------------------------------------------------
# The runner, on the tiny corpus.

STEPS = 4
IMAGES = ("ablation_wer_vs_shift.png", "ablation_curves.png", "ablation_theta.png")


def _study_config(config, variants_, semitones):
  """`config` (the tiny prepared data's) made a 1-seed study of 4 steps (one bucket: one compile
  per function)."""
  config.data.bucket_frames = (1024,)
  config.data.bucket_batch_sizes = (8,)
  config.data.eval_batch_size = 8
  config.train.num_steps = STEPS
  config.train.warmup_steps = 1
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.eval.every = 0
  config.decode.max_length = 6
  config.ablation = settings.default_settings()
  config.ablation.variants = variants_
  config.ablation.seeds = (0,)
  config.ablation.semitones = semitones
  config.ablation.max_test_examples = -1
  config.ablation.bootstrap_resamples = 200
  return config


def _run_study(config, workdir, **kwargs):
  """(report, printed lines) of run_study."""
  log = io.StringIO()
  with contextlib.redirect_stdout(log):
    result = ablation.run_study(config, workdir, **kwargs)
  return result, log.getvalue()


def _metrics(run_dir):
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
    return [json.loads(line) for line in handle if line.strip()]


def _snapshot(directory):
  """{path: (mtime, size)} of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      out[path] = (os.stat(path).st_mtime_ns, os.path.getsize(path))
  return out


def test_interrupted_run_resumes_and_a_finished_run_is_skipped(tmp_path, tiny_data_config,
                                                              monkeypatch):
  config = _study_config(tiny_data_config, ("fixed",), ())
  workdir = str(tmp_path / "study")
  run_dir = os.path.join(workdir, "runs", "fixed", "seed0")

  # 1. Stopped after its step-2 checkpoint (what SIGTERM does): no done.json, no report.
  with monkeypatch.context() as patch:
    patch.setattr(checkpointing.PreemptionWatcher, "should_stop", lambda self, step: step >= 2)
    result, log = _run_study(config, workdir)
  assert result is None
  assert "stopped at step 2 of fixed/seed0" in log and "rerun the same command" in log
  assert not os.path.exists(os.path.join(run_dir, ablation.DONE))
  assert [r["step"] for r in _metrics(run_dir) if "train/loss" in r] == [1, 2]
  with pytest.raises(UserError, match="nothing to report"):  # no finished run yet
    _run_study(config, workdir, report_only=True)

  # 2. The same command again: the run continues from its checkpoint, then is evaluated.
  result, log = _run_study(config, workdir)
  assert "run 1 of 1: training fixed/seed0" in log and "resumed from step 2" in log
  assert [r["step"] for r in _metrics(run_dir) if "train/loss" in r] == [1, 2, 3, 4]
  with open(os.path.join(run_dir, ablation.DONE), encoding="utf-8") as handle:
    done = json.load(handle)
  assert done["steps"] == STEPS and done["train_attempts"] == 2 and done["conditions"] == ["test"]
  assert os.path.isfile(os.path.join(run_dir, "eval", "test", "predictions.jsonl"))
  assert result["results"]["attention"]["test"]["fixed"]["num_utterances"] >= 1

  # 3. And again: nothing is trained, evaluated or rewritten in the run.
  before = _snapshot(run_dir)
  again, log = _run_study(config, workdir)
  assert _snapshot(run_dir) == before
  assert "run 1 of 1: fixed/seed0 is done (skipped; 4 steps" in log
  assert ": training " not in log and ": evaluating " not in log
  assert again["results"] == result["results"]


def test_a_study_continued_with_other_settings_is_refused(tmp_path, tiny_data_config):
  config = tiny_data_config
  config.ablation = settings.default_settings()
  ablation.check_study(config, str(tmp_path))
  more = ml_collections.ConfigDict(config.to_dict())
  more.ablation.seeds = (0, 1, 2, 3)  # more seeds or variants: the same study, continued
  ablation.check_study(more, str(tmp_path))
  other = ml_collections.ConfigDict(config.to_dict())
  other.train.num_steps += 1
  with pytest.raises(UserError, match=r"other settings \(train.num_steps: 20 -> 21\).*new "
                                      r"--workdir"):
    ablation.check_study(other, str(tmp_path))


def test_study_of_two_variants_reports_what_jiwer_gives_on_its_predictions(
    tmp_path, tiny_data_config):
  config = _study_config(tiny_data_config, ("fixed", "shuffled_f0"), (3.0,))
  config.train.checkpoint_every = STEPS  # one save per run: this test does not interrupt
  config.ablation.archive_dir = str(tmp_path / "archive")
  workdir = str(tmp_path / "study")
  result, log = _run_study(config, workdir)
  assert "run 1 of 2: training fixed/seed0" in log
  assert "run 2 of 2: training shuffled_f0/seed0" in log and "ETA" in log
  assert log.index("data ready after") < log.index("run 1 of 2: training")  # not in run 1's time
  for name in ("report.json", "ablation.md", *IMAGES):
    assert os.path.isfile(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "report.json"), encoding="utf-8") as handle:
    assert json.load(handle)["results"] == json.loads(json.dumps(result["results"]))

  conditions = os.path.join(workdir, "conditions", "shift_+3")
  with open(os.path.join(conditions, "manifest.jsonl"), encoding="utf-8") as handle:
    shifted = [json.loads(line) for line in handle]
  assert shifted and all(r["pitch_shift_semitones"] == 3.0 and "engine" in r for r in shifted)
  assert all(os.path.isfile(os.path.join(conditions, r["path"])) for r in shifted)

  results = result["results"]["attention"]
  assert set(results) == {"test", "shift_+3"}
  for condition, by_variant in results.items():
    ids = None
    for variant in ("fixed", "shuffled_f0"):
      path = os.path.join(workdir, "runs", variant, "seed0", "eval", condition,
                          "predictions.jsonl")
      with open(path, encoding="utf-8") as handle:
        rows = sorted((json.loads(line) for line in handle), key=lambda r: r["id"])
      ids = ids or [r["id"] for r in rows]
      assert [r["id"] for r in rows] == ids  # every run scored on the same utterances
      refs = [r["reference_normalised"] for r in rows]
      hyps = [r["hypothesis_normalised"] for r in rows]
      assert by_variant[variant]["wer"]["mean"] == pytest.approx(jiwer.wer(refs, hyps))
      assert by_variant[variant]["cer"]["mean"] == pytest.approx(jiwer.cer(refs, hyps))
      assert by_variant[variant]["num_utterances"] == len(rows)
    difference = result["differences"]["attention"][condition]["shuffled_f0"]["wer"]
    assert difference["difference"] == pytest.approx(
        by_variant["shuffled_f0"]["wer"]["mean"] - by_variant["fixed"]["wer"]["mean"])
    assert difference["verdict"] == report.verdict(
        (difference["difference"], difference["low"], difference["high"]))
  with open(os.path.join(workdir, "ablation.md"), encoding="utf-8") as handle:
    markdown = handle.read()
  assert "## Conclusion" in markdown and "| shuffled_f0 |" in markdown
  assert result["conclusion"][0].startswith("Test split, attention decoder")
  assert [(r["variant"], r["steps"]) for r in result["runs"]] == [("fixed", STEPS),
                                                                  ("shuffled_f0", STEPS)]
  assert all(r["train_seconds"] > 0 and r["eval_seconds"] > 0 for r in result["runs"])

  # --publish: the same report, also under the repository's docs/ (here a stand-in folder).
  (tmp_path / "repo" / "docs").mkdir(parents=True)
  _, log = _run_study(config, workdir, publish=True, repo_root=str(tmp_path / "repo"))
  assert ": training " not in log
  with open(tmp_path / "repo" / "docs" / "ablation.md", encoding="utf-8") as handle:
    published = handle.read()
  assert "## Conclusion" in published
  for name in IMAGES:
    assert f"](images/{name})" in published
    assert (tmp_path / "repo" / "docs" / "images" / name).is_file()
  with open(tmp_path / "repo" / "docs" / "ablation" / "report.json", encoding="utf-8") as handle:
    assert json.load(handle)["results"] == json.loads(json.dumps(result["results"]))

  # The archive: both runs in small form; a fresh workdir (a new checkout) restores them instead
  # of training, and the report rebuilt from the archive alone has the same numbers.
  archive_dir = tmp_path / "archive"
  for variant in ("fixed", "shuffled_f0"):
    names = sorted(os.listdir(archive_dir / variant / "seed0"))
    assert names == ["curve.jsonl", "done.json", "shift_+3.predictions.jsonl.gz",
                     "shift_+3.summary.json.gz", "test.predictions.jsonl.gz",
                     "test.summary.json.gz", "timing.json"], names
  fresh, log = _run_study(config, str(tmp_path / "fresh"))
  assert log.count("restored from the archive") == 2
  assert ": training " not in log and ": evaluating " not in log and "data ready" not in log
  assert fresh["results"] == result["results"]
  assert fresh["differences"] == result["differences"]
  assert [(r["variant"], r["train_seconds"]) for r in fresh["runs"]] == [
      (r["variant"], r["train_seconds"]) for r in result["runs"]]
  assert os.path.isfile(tmp_path / "fresh" / IMAGES[1])  # the curves came back too

  # --report_only with another seed planned: the finished runs' report, nothing trained.
  more = ml_collections.ConfigDict(config.to_dict())
  more.ablation.seeds = (0, 1)
  partial, log = _run_study(more, str(tmp_path / "partial"), report_only=True)
  assert "reporting the 2 finished of 4 planned runs" in log and ": training " not in log
  assert partial["results"] == result["results"]
  assert "Partial study: 2 of the 4 planned runs" in "\n".join(partial["conclusion"])
  assert not any(line.startswith("Partial") for line in result["conclusion"])

  # Another corpus (here: one utterance's text changed) is refused by the archive.
  archived = ablation.archive_lib.Archive(str(archive_dir))
  with pytest.raises(UserError, match="corpus differs from the one the runs"):
    archived.record_study(ablation.study_settings(config), "0" * 64, [], None)
  other = ml_collections.ConfigDict(config.to_dict())
  other.train.num_steps += 1
  with pytest.raises(UserError, match="archive .* holds a study with other settings"):
    _run_study(other, str(tmp_path / "other"))


def test_corpus_fingerprint_ignores_local_paths_and_order_but_not_content(tmp_path):
  rows = [{"id": "b", "text": "two", "path": "/x/b.wav", "split": "test"},
          {"id": "a", "text": "one", "path": "/x/a.wav", "split": "train"}]

  def fingerprint(name, rows_):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_), encoding="utf-8")
    return ablation.archive_lib.corpus_fingerprint(str(path))

  same = fingerprint("a.jsonl", rows)
  moved = [dict(r, path=r["path"].replace("/x/", "/elsewhere/")) for r in reversed(rows)]
  assert fingerprint("b.jsonl", moved) == same
  assert fingerprint("c.jsonl", [dict(rows[0], text="three"), rows[1]]) != same
  assert ablation.archive_lib.corpus_fingerprint(str(tmp_path / "missing.jsonl")) == ""


def test_a_field_added_after_a_study_began_matches_only_at_its_old_meaning():
  """A study recorded before data.bucket_target_lengths existed continues with the field at ()
  (every bucket pads to max_target_length, as before) and is refused with per-bucket lengths."""
  recorded = {"data.max_target_length": 160, "train.num_steps": 900}
  assert archive_lib.settings_changes(recorded, dict(recorded, **{
      "data.bucket_target_lengths": []})) == ""
  assert archive_lib.settings_changes(recorded, dict(recorded, **{
      "data.bucket_target_lengths": [80, 128, 160]})) == (
          "data.bucket_target_lengths: [] -> [80, 128, 160]")
