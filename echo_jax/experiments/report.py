"""The ablation report: error rates with intervals, paired differences, verdicts, table, plot.

Numbers come only from the predictions the runs wrote (predictions.jsonl: reference_normalised,
hypothesis_normalised, and ctc_hypothesis for models with a CTC head), recounted here with jiwer
per utterance, so the report can be rebuilt and checked without the models. Within a condition
every variant and seed is scored on the same utterances (those every run decoded), which is what
lets stats.paired_difference_interval pair them.

A verdict reads only the paired 95 % interval of (variant - baseline): entirely below 0 is
"better than <baseline>" (fewer errors), entirely above 0 "worse than <baseline>", an interval
that contains 0 "no measurable difference". The conclusion is generated from these verdicts, so
it never says more than the intervals do, and it counts how many intervals exclude 0 against the
~5 % that would by chance alone (many variants x conditions x metrics x decoders are read).
"""

import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from echo_jax.inference import error_breakdown  # noqa: E402
from echo_jax.inference.scoring import normalise  # noqa: E402
from echo_jax.diagnostics import plots  # noqa: E402
from echo_jax.models import rotary  # noqa: E402
from echo_jax.experiments import conditions, stats  # noqa: E402
from echo_jax.experiments import variants as variants_lib  # noqa: E402

METRICS = ("wer", "cer")
DECODERS = {"attention": "attention decoder, greedy", "ctc": "CTC best path (encoder only)"}
BETTER, WORSE = "better than", "worse than"
SAME, UNKNOWN = "no measurable difference", "not measured"


# ----------------------------------------------------------------------------------------------
# Verdicts and wording.


def verdict(interval: Sequence[float], baseline: str = variants_lib.BASELINE) -> str:
  """"better than <baseline>" / "worse than <baseline>" / "no measurable difference" from a
  (difference, low, high) interval of error rate differences (variant - baseline), or
  "not measured" when the interval is not finite."""
  _, low, high = (float(v) for v in interval)
  if not (math.isfinite(low) and math.isfinite(high)):
    return UNKNOWN
  if high < 0:
    return f"{BETTER} {baseline}"
  if low > 0:
    return f"{WORSE} {baseline}"
  return SAME


def points(value: float) -> str:
  """A rate difference in percentage points, signed: +1.3."""
  return f"{100.0 * value:+.1f}"


def percent(value: float) -> str:
  return f"{100.0 * value:.1f} %" if math.isfinite(value) else "n/a"


def interval_text(interval: Mapping[str, float], confidence: float = 0.95) -> str:
  """"-2.1 points (95 % interval -3.5 to -0.7)"."""
  return (f"{points(interval['difference'])} points ({100 * confidence:g} % interval "
          f"{points(interval['low'])} to {points(interval['high'])})")


# ----------------------------------------------------------------------------------------------
# Reading predictions.


def read_predictions(path: str) -> Dict[str, dict]:
  """{id: row} of a predictions.jsonl."""
  return conditions.read_jsonl_by_id(path)


def hypothesis(row: Mapping[str, Any], decoder: str) -> Optional[str]:
  """The normalised hypothesis of `decoder` in a predictions row; None when it has none."""
  if "error" in row:
    return None
  if decoder == "attention":
    return row.get("hypothesis_normalised")
  text = row.get("ctc_hypothesis")
  return None if text is None else normalise(text)


def edits(reference: str, hyp: str) -> Tuple[int, int, int, int]:
  """(word edits, reference words, character edits, reference characters) by jiwer."""
  counts = error_breakdown.edit_counts(reference, hyp)
  word_edits = counts["substitutions"] + counts["deletions"] + counts["insertions"]
  char_edits = counts["char_substitutions"] + counts["char_deletions"] + counts["char_insertions"]
  return word_edits, counts["words"], char_edits, counts["characters"]


def edit_matrices(predictions: Sequence[Mapping[str, dict]], decoder: str):
  """For runs' predictions of one condition: (ids, word errors [R, U], words [U], char errors
  [R, U], characters [U]) over the utterances every run decoded with a non-empty reference;
  None when some run has no `decoder` hypotheses at all."""
  common = None
  for rows in predictions:
    usable = {k for k, r in rows.items()
              if hypothesis(r, decoder) is not None and r.get("reference_normalised", "").strip()}
    if not usable:
      return None
    common = usable if common is None else common & usable
  ids = sorted(common or ())
  if not ids:
    return None
  words_err = np.zeros([len(predictions), len(ids)])
  chars_err = np.zeros([len(predictions), len(ids)])
  words = np.zeros([len(ids)])
  chars = np.zeros([len(ids)])
  for r, rows in enumerate(predictions):
    for u, key in enumerate(ids):
      reference = rows[key]["reference_normalised"]
      w_err, w, c_err, c = edits(reference, hypothesis(rows[key], decoder))
      words_err[r, u], chars_err[r, u] = w_err, c_err
      words[u], chars[u] = w, c
  return ids, words_err, words, chars_err, chars


def _interval(values: Tuple[float, float, float]) -> Dict[str, float]:
  return {"mean": values[0], "low": values[1], "high": values[2]}


def _difference(values: Tuple[float, float, float], baseline: str) -> Dict[str, Any]:
  return {"difference": values[0], "low": values[1], "high": values[2],
          "verdict": verdict(values, baseline)}


def _paired(errors, lengths, seeds_of, a: str, b: str, resamples: int, confidence: float
            ) -> Optional[Dict[str, Any]]:
  """a - b per metric over the seeds both have (seed k of each shares its data order and
  initialisation draw, so they pair); None when they share no seed."""
  common = sorted(set(seeds_of[a]) & set(seeds_of[b]))
  if not common:
    return None
  rows_a = [seeds_of[a].index(k) for k in common]
  rows_b = [seeds_of[b].index(k) for k in common]
  out: Dict[str, Any] = {m: _difference(stats.paired_difference_interval(
      errors[a][m][rows_a], errors[b][m][rows_b], lengths[m], resamples, confidence), b)
      for m in METRICS}
  out["seeds"] = common
  return out


# ----------------------------------------------------------------------------------------------
# The report.


def build(runs: Sequence[Mapping[str, Any]], conditions: Sequence[Mapping[str, Any]],
          settings: Mapping[str, Any]) -> Dict[str, Any]:
  """The report dict.

  runs: [{variant, seed, workdir, steps, train_seconds, eval_seconds, predictions: {condition
  name: predictions.jsonl path}}]; conditions: [{name, semitones}]; settings: variants, seeds,
  baseline, bootstrap_resamples, confidence, plus anything to record (steps, skipped reasons).
  """
  order = list(settings["variants"])
  baseline = str(settings["baseline"])
  resamples, confidence = int(settings["bootstrap_resamples"]), float(settings["confidence"])
  by_variant = {v: sorted([r for r in runs if r["variant"] == v], key=lambda r: r["seed"])
                for v in order}
  by_variant = {v: rs for v, rs in by_variant.items() if rs}
  present = [v for v in order if v in by_variant]
  results: Dict[str, Any] = {}
  differences: Dict[str, Any] = {}
  placebos: Dict[str, Any] = {}
  for decoder in DECODERS:
    for condition in conditions:
      name = condition["name"]
      flat = [(v, r) for v in present for r in by_variant[v]]
      if not flat or any(name not in r["predictions"] for _, r in flat):
        continue
      matrices = edit_matrices([read_predictions(r["predictions"][name]) for _, r in flat],
                               decoder)
      if matrices is None:
        continue
      ids, words_err, words, chars_err, chars = matrices
      rows_of = {v: [i for i, (w, _) in enumerate(flat) if w == v] for v in present}
      errors = {v: {"wer": words_err[rows_of[v]], "cer": chars_err[rows_of[v]]} for v in present}
      lengths = {"wer": words, "cer": chars}
      cell = results.setdefault(decoder, {}).setdefault(name, {})
      for v in present:
        cell[v] = {"seeds": [r["seed"] for r in by_variant[v]], "num_utterances": len(ids)}
        for metric in METRICS:
          cell[v][metric] = _interval(stats.bootstrap_interval(
              errors[v][metric], lengths[metric], resamples, confidence))
          cell[v][f"{metric}_per_seed"] = [
              float(e.sum() / lengths[metric].sum()) for e in errors[v][metric]]
      seeds_of = {v: [r["seed"] for r in by_variant[v]] for v in present}
      if baseline in present:
        diff = differences.setdefault(decoder, {}).setdefault(name, {})
        for v in (v for v in present if v != baseline):
          compared = _paired(errors, lengths, seeds_of, v, baseline, resamples, confidence)
          if compared is not None:
            diff[v] = compared
      for placebo, real in variants_lib.PLACEBOS.items():
        if placebo in present and real in present:
          compared = _paired(errors, lengths, seeds_of, real, placebo, resamples, confidence)
          if compared is not None:
            placebos.setdefault(decoder, {}).setdefault(name, {})[real] = {
                "against": placebo, **compared}
  report = {
      "settings": dict(settings),
      "conditions": [dict(c) for c in conditions],
      "decoders": {d: DECODERS[d] for d in results},
      "runs": [{k: v for k, v in r.items() if k != "predictions"} for r in runs],
      "results": results,
      "differences": differences,
      "placebo": placebos,
  }
  report["conclusion"] = conclusion(report)
  return report


def _shift_label(condition: Mapping[str, Any]) -> str:
  return f"{condition['semitones']:+g}"


def _grouped(verdicts: Sequence[Tuple[str, str]]) -> str:
  """[(verdict, label)] -> "better than fixed at -6, +6; no measurable difference at -3"."""
  groups: Dict[str, List[str]] = {}
  for text, label in verdicts:
    groups.setdefault(text, []).append(label)
  return "; ".join(f"{text} at {', '.join(labels)}" for text, labels in groups.items())


def conclusion(report: Mapping[str, Any]) -> List[str]:
  """Plain-language lines that say what the intervals support, and nothing more."""
  settings = report["settings"]
  baseline = settings["baseline"]
  level = float(settings.get("confidence", 0.95))
  lines: List[str] = []
  # the seeds trained so far, which a study stopped early has fewer of than it plans
  fewest_seeds = min((len(cell["seeds"]) for by_condition in report["results"].values()
                      for cells in by_condition.values() for cell in cells.values()),
                     default=len(settings.get("seeds", ())))
  for decoder, by_condition in report["differences"].items():
    label = DECODERS[decoder]
    test = by_condition.get("test")
    if test:
      cells = report["results"][decoder]["test"].values()
      n = next(iter(cells))["num_utterances"]
      counts = sorted({len(c["seeds"]) for c in cells})
      seeds = str(counts[0]) if counts[0] == counts[-1] else f"{counts[0]}-{counts[-1]}"
      lines.append(f"Test split, {label} ({n} utterances x {seeds} seed(s)); differences are "
                   f"variant - {baseline} in percentage points, negative = fewer errors:")
      for variant, diff in test.items():
        lines.append(f"- {variant}: {diff['wer']['verdict']} by WER, "
                     f"{interval_text(diff['wer'], level)}; {diff['cer']['verdict']} by CER, "
                     f"{interval_text(diff['cer'], level)}.")
    shifted = [c for c in report["conditions"] if c["name"] != "test" and c["name"] in by_condition]
    if shifted:
      lines.append(f"Pitch-shifted test audio, {label}, by WER (semitones):")
      for variant in next(iter(by_condition.values())):
        pairs = [(by_condition[c["name"]][variant]["wer"]["verdict"], _shift_label(c))
                 for c in shifted if variant in by_condition[c["name"]]]
        lines.append(f"- {variant}: {_grouped(pairs)}.")
    placebo = report["placebo"].get(decoder, {}).get("test", {})
    for real, diff in placebo.items():
      against = diff["against"]
      said = diff["wer"]["verdict"]
      if said.startswith(BETTER):
        meaning = (f"{real} gains from the utterance's own F0: fed another utterance's F0 "
                   f"({against}) it does worse")
      elif said.startswith(WORSE):
        meaning = (f"{real} does worse with its own F0 than with another utterance's "
                   f"({against})")
      elif said == SAME:
        meaning = (f"no evidence that {real} uses the utterance's own pitch: fed another "
                   f"utterance's F0 ({against}) it does as well")
      else:
        meaning = f"{real} against {against}: not measured"
      lines.append(f"Placebo check ({label}, test split): {real} - {against} by WER "
                   f"{interval_text(diff['wer'], level)}: {meaning}.")
    if test:
      better = [v for v, d in test.items() if d["wer"]["verdict"].startswith(BETTER)]
      worse = [v for v, d in test.items() if d["wer"]["verdict"].startswith(WORSE)]
      if not better and not worse:
        lines.append(f"Supported ({label}): no variant's test WER differs measurably from "
                     f"{baseline}; these runs give no evidence that pitch conditioning helps or "
                     "hurts at this budget.")
      else:
        parts = []
        if better:
          parts.append(f"{', '.join(better)} {'has' if len(better) == 1 else 'have'} a lower "
                       f"test WER than {baseline}")
        if worse:
          parts.append(f"{', '.join(worse)} {'has' if len(worse) == 1 else 'have'} a higher "
                       f"test WER than {baseline}")
        if len(better) + len(worse) < len(test):
          parts.append("every other variant shows no measurable difference")
        lines.append(f"Supported ({label}): " + "; ".join(parts) + ".")
      # differences exist only where the baseline was scored, so its cell is there
      base_wer = report["results"][decoder]["test"][baseline]["wer"]["mean"]
      if base_wer >= 1.0:
        lines.append(f"Caution ({label}): {baseline}'s test WER is {100 * base_wer:.1f} %, at or "
                     "above 100 %: its hypotheses hold more errors than the references have "
                     "words, so differences here measure how much a variant inserts rather than "
                     "how well it transcribes.")
  multiple = multiple_comparisons(report, level)
  if multiple:
    lines.append(multiple)
  planned = len(settings.get("variants", ())) * len(settings.get("seeds", ()))
  if report.get("runs") is not None and 0 < len(report["runs"]) < planned:
    lines.append(f"Partial study: {len(report['runs'])} of the {planned} planned runs (variants x "
                 "seeds) are in this report; its verdicts can change as the others arrive.")
  if fewest_seeds == 1:
    lines.append("With one seed the intervals cover only which test utterances were drawn, not "
                 "training noise.")
  if settings.get("skipped_conditions"):
    lines.append(f"Not measured: {settings['skipped_conditions']}.")
  if not report["differences"]:
    lines.append("Nothing to compare: no run of the baseline and another variant was evaluated.")
  return lines


def multiple_comparisons(report: Mapping[str, Any], level: float = 0.95) -> Optional[str]:
  """How many of the paired intervals exclude 0, against how many would by chance alone.

  Each interval excludes 0 with probability 1 - level when there is no effect, so among N of
  them about N (1 - level) do by chance (the intervals share runs and utterances, so they are not
  independent: the count is a yardstick, not a test). None with fewer than two intervals."""
  flagged, total = [], 0
  for decoder, by_condition in report["differences"].items():
    for condition, by_variant in by_condition.items():
      for variant, diff in by_variant.items():
        for metric in METRICS:
          if metric not in diff or diff[metric]["verdict"] == UNKNOWN:
            continue
          total += 1
          said = diff[metric]["verdict"]
          if said.startswith(BETTER) or said.startswith(WORSE):
            flagged.append(f"{variant} {said.split()[0]} by {metric.upper()} ({decoder}, "
                           f"{condition})")
  if total < 2:
    return None
  expected = total * (1.0 - level)
  listed = "; ".join(flagged) if flagged else "none"
  return (f"Multiple comparisons: {len(flagged)} of the {total} paired intervals above exclude 0 "
          f"({listed}); with no effect anywhere about {expected:.1f} would at "
          f"{100 * level:g} % by chance alone. A verdict that the other decoder, metric, pitch "
          "shifts and seeds do not repeat is what chance produces.")


# ----------------------------------------------------------------------------------------------
# Markdown and plot.


def _cell(interval: Mapping[str, float]) -> str:
  return (f"{100 * interval['mean']:.1f} [{100 * interval['low']:.1f}, "
          f"{100 * interval['high']:.1f}]")


def _diff_cell(diff: Mapping[str, Any]) -> str:
  return (f"{points(diff['difference'])} [{points(diff['low'])}, {points(diff['high'])}] "
          f"{diff['verdict']}")


IMAGE_TITLES = {"shift": "WER against pitch shift", "curves": "Training curves",
                "theta": "Rotary theta against F0"}


def markdown(report: Mapping[str, Any], images: Optional[Mapping[str, str]] = None,
             command: str = "") -> str:
  """The report as markdown (images: {"shift" | "curves" | "theta": path relative to the
  markdown file})."""
  settings = report["settings"]
  names = [c["name"] for c in report["conditions"]]
  out = ["# Does pitch conditioning help? (ablation study)", ""]
  if command:
    out += ["```bash", command, "```", ""]
  seeds = ", ".join(map(str, settings["seeds"]))
  limit = int(settings.get("max_test_examples", -1))
  level = f"{100 * float(settings.get('confidence', 0.95)):g} %"
  out += [f"Variants: {len(settings['variants'])}; seeds: {seeds}; training steps per run: "
          f"{settings.get('num_steps', '?')}; test utterances: {'all' if limit < 0 else limit}; "
          f"conditions: {', '.join(names)} (shift_<s>: the test utterances pitch-shifted by s "
          f"semitones, formants kept). Error rates in %: the mean over seeds with its {level} "
          "bootstrap interval over seeds and utterances; differences in percentage points against "
          f"`{settings['baseline']}`, paired over utterances and seeds.", ""]
  out += ["| variant | what changes |", "|---|---|"]
  for variant in settings["variants"]:
    out.append(f"| {variant} | {variants_lib.describe(variant)} |")
  out.append("")
  out += ["## Conclusion", ""]
  for line in report["conclusion"]:  # bullets stay together, every other line is a paragraph
    if not line.startswith("- ") and out[-1] != "":
      out.append("")
    out.append(line)
  out.append("")
  for decoder, by_condition in report["results"].items():
    present = [n for n in names if n in by_condition]
    for metric in METRICS:
      out += [f"## {metric.upper()}, {DECODERS[decoder]}", ""]
      out.append("| variant | " + " | ".join(present) + " |")
      out.append("|---|" + "---|" * len(present))
      for variant in settings["variants"]:
        if all(variant in by_condition[n] for n in present):
          out.append(f"| {variant} | " + " | ".join(_cell(by_condition[n][variant][metric])
                                                    for n in present) + " |")
      out.append("")
      diffs = report["differences"].get(decoder, {})
      if diffs:
        out += [f"{metric.upper()} difference against {settings['baseline']} (points):", ""]
        out.append("| variant | " + " | ".join(present) + " |")
        out.append("|---|" + "---|" * len(present))
        for variant in settings["variants"]:
          if variant in diffs.get(present[0], {}):
            out.append(f"| {variant} | " + " | ".join(
                _diff_cell(diffs[n][variant][metric]) if variant in diffs.get(n, {}) else "-"
                for n in present) + " |")
        out.append("")
  out += ["## Compute per run", "", "| variant | seed | steps | train s | eval s |",
          "|---|---|---|---|---|"]
  for run in report["runs"]:
    out.append(f"| {run['variant']} | {run['seed']} | {run.get('steps', '?')} | "
               f"{run.get('train_seconds', float('nan')):.0f} | "
               f"{run.get('eval_seconds', float('nan')):.0f} |")
  total = sum(r.get("train_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in report["runs"])
  out += ["", f"Total: {total / 3600:.2f} h of training and evaluation over {len(report['runs'])} "
          "runs (time of attempts killed without a chance to record it is not counted).", ""]
  for key, title in IMAGE_TITLES.items():
    if (images or {}).get(key):
      out += [f"## {title}", "", f"![{title}]({images[key]})", ""]
  return "\n".join(out)


def plot(report: Mapping[str, Any], out_path: str) -> Optional[str]:
  """WER (mean over seeds, 95 % interval bars) against pitch shift, one line per variant and
  one panel per decoder; the unshifted test split is the hollow marker at 0. None when no
  condition was measured."""
  decoders = list(report["results"])
  if not decoders:
    return None
  shifted = sorted((c for c in report["conditions"] if c["name"] != "test"),
                   key=lambda c: c["semitones"])
  fig, axes = plt.subplots(1, len(decoders), figsize=(6 * len(decoders), 4), squeeze=False)
  for ax, decoder in zip(axes[0], decoders):
    by_condition = report["results"][decoder]
    for k, variant in enumerate(report["settings"]["variants"]):
      color = f"C{k % 10}"
      offset = (k - len(report["settings"]["variants"]) / 2) * 0.06  # keep bars apart
      points_ = [(c["semitones"], by_condition[c["name"]][variant]["wer"]) for c in shifted
                 if variant in by_condition.get(c["name"], {})]
      if points_:
        x = np.array([p[0] for p in points_]) + offset
        y = np.array([100 * p[1]["mean"] for p in points_])
        err = np.array([[100 * (p[1]["mean"] - p[1]["low"]) for p in points_],
                        [100 * (p[1]["high"] - p[1]["mean"]) for p in points_]])
        ax.errorbar(x, y, yerr=err, color=color, marker="o", capsize=3, label=variant)
      test = by_condition.get("test", {}).get(variant)
      if test:
        wer = test["wer"]
        ax.errorbar([offset], [100 * wer["mean"]],
                    yerr=[[100 * (wer["mean"] - wer["low"])], [100 * (wer["high"] - wer["mean"])]],
                    color=color, marker="o", markerfacecolor="white", capsize=3,
                    label=None if points_ else variant)
    ax.axvline(0.0, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("pitch shift (semitones); hollow at 0: test audio as prepared")
    ax.set_ylabel("WER (%)")
    ax.set_title(DECODERS[decoder])
    ax.grid(alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
  fig.tight_layout()
  return plots.save_png(fig, out_path)


def plot_curves(runs: Sequence[Mapping[str, Any]], variants: Sequence[str], out_path: str,
                key: str = "train/loss") -> Optional[str]:
  """Training loss against step, one colour per variant (one thin line per seed, the mean over
  seeds bold), from each run's metrics.jsonl ("metrics" in a run). None when no run has one."""
  fig, ax = plt.subplots(figsize=(7, 4))
  drawn = False
  for k, variant in enumerate(variants):
    series = []
    for run in runs:
      path = run.get("metrics")
      if run["variant"] != variant or not path or not os.path.isfile(path):
        continue
      points_ = plots.metric_series(plots.read_metrics(path), key)
      if len(points_):
        series.append(points_)
    if not series:
      continue
    color = f"C{k % 10}"
    for points_ in series:
      ax.plot(points_[:, 0], points_[:, 1], color=color, alpha=0.25, lw=0.8)
    steps = sorted(set.intersection(*(set(p[:, 0]) for p in series)))
    if steps:
      mean = [np.mean([p[p[:, 0] == s, 1][0] for p in series]) for s in steps]
      ax.plot(steps, mean, color=color, lw=1.6, label=f"{variant} ({len(series)} seed(s))")
    drawn = True
  if not drawn:
    plt.close(fig)
    return None
  ax.set_xlabel("step")
  ax.set_ylabel(key)
  ax.set_yscale("log")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  ax.set_title("training loss per variant (thin: seeds, bold: their mean)", fontsize=10)
  fig.tight_layout()
  return plots.save_png(fig, out_path)


def plot_theta(variants: Sequence[str], base_theta: float, out_path: str,
               f0_values: Sequence[float] = ()) -> Optional[str]:
  """Rotary theta against F0 for each variant (the formula its theta_mode applies: of the
  utterance's mean F0, or of each frame's F0 for per_frame), with the distribution of the test
  utterances' F0 beneath when known. None when no variant conditions theta on F0."""
  modes = {}
  for variant in variants:
    fields = variants_lib.overrides(variant)
    mode = str(fields["model.theta_mode"])
    label = variant + (" (placebo: another utterance's F0)"
                       if fields["data.f0_source"] != "own" else "")
    modes.setdefault(mode, []).append(label)
  if set(modes) <= {"fixed"}:
    return None
  grid = np.linspace(0.0, 450.0, 226)
  fig, ax = plt.subplots(figsize=(7, 4))
  for k, (mode, labels) in enumerate(sorted(modes.items())):
    theta = np.asarray(rotary.utterance_theta(grid, mode, base_theta))
    ax.plot(grid, theta, color=f"C{k}", lw=1.6, label=f"{mode}: " + ", ".join(labels))
  ax.set_xlabel("F0 (Hz): the utterance's mean; per_frame: the frame's")
  ax.set_ylabel("rotary θ")
  ax.grid(alpha=0.3)
  values = np.asarray([v for v in f0_values if np.isfinite(v) and v > 0], np.float64)
  if values.size:
    twin = ax.twinx()
    twin.hist(values, bins=30, range=(0.0, 450.0), color="0.8", zorder=0)
    twin.set_ylabel(f"test utterances (n={values.size})")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
  ax.legend(fontsize=8, loc="upper left")
  ax.set_title("rotary θ against F0 per variant", fontsize=10)
  fig.tight_layout()
  return plots.save_png(fig, out_path)
