"""The vetted TTS voice table and one function per engine that synthesises a wav file.

Vetting (Debian 12 packages espeak-ng 1.51, flite 2.2, festival 2.5; measured with pyworld on one
sentence at default settings, see docs/data.md):
- espeak-ng: 8 English accents x 16 variants. Variants m1-m7, f1-f5, klatt, klatt3, klatt4, klatt5
  change the voice; klatt6 is byte-identical to klatt and klatt2 is mostly unvoiced (breathy), so
  both are left out. `en-gb+variant` silently ignores the variant, so British English is spoken by
  the voice file `en` (`en+f1` works). `-p` scales F0 by about 2^((p - 50) / 73).
- flite: kal16, slt, awb follow `int_f0_target_mean` (Hz); rms ignores it, so its pitch varies only
  by sox. `kal` (8 kHz) is left out.
- festival: kal_diphone and ked_diphone follow `int_lr_params` target_f0_mean (Hz);
  cmu_us_slt_arctic_hts ignores it (and hts `-fm`), so its pitch varies only by sox.

Pitch range (how far the intonation swings around the median) is set per utterance where the
engine allows: espeak-ng through SSML `<prosody range="N%">` (the median rises with it, by about
11 % of the change: see ESPEAK_RANGE_F0_SLOPE), flite `int_f0_target_stddev` and festival's
`target_f0_std` (both 0.14 x target F0 x range). Voices without native pitch control have none.

Splits hold out whole voices: see `VALIDATION_*` / `TEST_*` below.
"""

import dataclasses
import functools
import glob
import math
import os
import shutil
import subprocess
from xml.sax import saxutils

ENGINES = ("espeak-ng", "flite", "festival")
SPLITS = ("train", "validation", "test")

# Accent label -> espeak-ng voice spelling that honours `+variant`.
ESPEAK_ACCENTS = {
    "en-us": "en-us", "en-gb": "en", "en-gb-scotland": "en-gb-scotland", "en-gb-x-rp": "en-gb-x-rp",
    "en-029": "en-029", "en-gb-x-gbclan": "en-gb-x-gbclan", "en-gb-x-gbcwmd": "en-gb-x-gbcwmd",
    "en-us-nyc": "en-us-nyc",
}
# Variant -> median F0 (Hz) at -p 50, measured (accent changes it by < 4 %).
ESPEAK_VARIANT_F0 = {
    "m1": 94, "m2": 101, "m3": 105, "m4": 94, "m5": 103, "m6": 102, "m7": 107,
    "f1": 181, "f2": 197, "f3": 212, "f4": 180, "f5": 206,
    "klatt": 103, "klatt3": 103, "klatt4": 102, "klatt5": 102,
}
ESPEAK_PITCH_SLOPE = 73.0  # F0 doubles every 73 steps of -p
# Median F0 x (1 + slope x (range - 1)) under SSML prosody range (measured on m3, f2, klatt4 at
# 50-200 %: 0.94 at 50 %, 1.06 at 150 %, 1.11 at 200 %).
ESPEAK_RANGE_F0_SLOPE = 0.11
# Target F0 standard deviation of flite/festival at pitch range 1 (festival's own default ratio).
F0_STD_RATIO = 0.14
VALIDATION_ESPEAK_VARIANTS = ("m6", "f4")
TEST_ESPEAK_VARIANTS = ("m7", "f5", "klatt4")
VALIDATION_VOICES = {"flite": ("rms",), "festival": ()}
TEST_VOICES = {"flite": ("awb",), "festival": ("ked_diphone",)}

# The F0 range every planned utterance aims inside (the default F0 tracker range is 71-800 Hz).
TARGET_F0_RANGE = (75.0, 380.0)
SUBPROCESS_TIMEOUT_S = 120


@dataclasses.dataclass(frozen=True)
class Voice:
  """One synthetic speaker: an engine voice and the ranges its settings are drawn from."""
  engine: str  # espeak-ng | flite | festival
  name: str  # engine voice label, e.g. "en-gb-scotland+f3", "slt", "kal_diphone"
  split: str  # train | validation | test (whole voices are held out)
  nominal_f0_hz: float  # median F0 at the engine's default pitch setting
  pitch_range: tuple[float, float] | None  # engine-native pitch setting range; None: sox only
  pitch_unit: str  # "espeak_p" (0-99) | "hz" (target F0 mean) | "" (no native pitch control)
  rate_range: tuple[float, float]
  rate_unit: str  # "wpm" (espeak -s) | "duration_stretch" (> 1 is slower)

  @property
  def speaker(self) -> str:
    return f"{self.engine}/{self.name}"

  @property
  def has_pitch_range(self) -> bool:
    """Whether the engine voice takes a pitch-range (intonation swing) setting."""
    return self.pitch_unit != ""

  def range_f0_factor(self, pitch_range: float | None) -> float:
    """How the pitch-range setting moves the median F0 (espeak's range grows upwards)."""
    if pitch_range is None or self.pitch_unit != "espeak_p":
      return 1.0
    return 1.0 + ESPEAK_RANGE_F0_SLOPE * (pitch_range - 1.0)

  def expected_f0(self, pitch: float | None, sox_cents: float = 0.0,
                  pitch_range: float | None = None) -> float:
    """Approximate median F0 (Hz) of speech made with these settings."""
    if self.pitch_unit == "espeak_p":
      base = self.nominal_f0_hz * 2.0 ** ((pitch - 50.0) / ESPEAK_PITCH_SLOPE)
    elif self.pitch_unit == "hz":
      base = float(pitch)
    else:
      base = self.nominal_f0_hz
    return base * self.range_f0_factor(pitch_range) * 2.0 ** (sox_cents / 1200.0)

  def pitch_bounds(self, f0_scale: float = 1.0) -> tuple[float, float] | None:
    """The native pitch range clipped so the expected F0 stays inside TARGET_F0_RANGE.

    `f0_scale` is what later steps multiply F0 by (pitch range, speed perturbation).
    """
    if self.pitch_range is None:
      return None
    low, high = self.pitch_range
    f0_low, f0_high = (f / f0_scale for f in TARGET_F0_RANGE)
    if self.pitch_unit == "espeak_p":
      low = max(low, 50.0 + ESPEAK_PITCH_SLOPE * math.log2(f0_low / self.nominal_f0_hz))
      high = min(high, 50.0 + ESPEAK_PITCH_SLOPE * math.log2(f0_high / self.nominal_f0_hz))
    else:
      low, high = max(low, f0_low), min(high, f0_high)
    return (math.ceil(low), math.floor(high))


def _split_of(variant_or_name: str, validation, test) -> str:
  if variant_or_name in validation:
    return "validation"
  if variant_or_name in test:
    return "test"
  return "train"


def default_voices() -> tuple[Voice, ...]:
  """The vetted voice table (all engines)."""
  voices = []
  for accent in ESPEAK_ACCENTS:
    for variant, f0 in ESPEAK_VARIANT_F0.items():
      voices.append(Voice(
          "espeak-ng", f"{accent}+{variant}",
          _split_of(variant, VALIDATION_ESPEAK_VARIANTS, TEST_ESPEAK_VARIANTS), f0, (10, 90),
          "espeak_p", (130, 210), "wpm"))
  flite = {"kal16": (87.0, (85, 160)), "slt": (170.0, (150, 260)), "awb": (131.0, (90, 190)),
           "rms": (102.0, None)}
  festival = {"kal_diphone": (101.0, (80, 160)), "ked_diphone": (102.0, (80, 160)),
              "cmu_us_slt_arctic_hts": (169.0, None)}
  for engine, table in (("flite", flite), ("festival", festival)):
    for name, (f0, pitch_range) in table.items():
      voices.append(Voice(
          engine, name, _split_of(name, VALIDATION_VOICES[engine], TEST_VOICES[engine]), f0,
          pitch_range, "hz" if pitch_range else "", (0.8, 1.25), "duration_stretch"))
  return tuple(voices)


# ---------------------------------------------------------------------------------------------
# Availability: engines exit 0 and fall back to a default voice when asked for an unknown one, so
# voices are checked against each engine's own listing instead of by return codes.


def _run_listing(cmd: list[str]) -> str:
  try:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
  except (OSError, subprocess.TimeoutExpired):
    return ""


@functools.lru_cache(maxsize=None)
def _espeak_catalogue() -> tuple[frozenset, frozenset]:
  languages, variants = set(), set()
  for line in _run_listing(["espeak-ng", "--voices=en"]).splitlines()[1:]:
    fields = line.split()
    if len(fields) >= 5:
      languages.add(fields[1].lower())
      languages.add(fields[4].split("/")[-1].lower())
  for line in _run_listing(["espeak-ng", "--voices=variant"]).splitlines()[1:]:
    fields = line.split()
    if len(fields) >= 5:
      variants.add(fields[4].split("/")[-1].lower())
  return frozenset(languages), frozenset(variants)


@functools.lru_cache(maxsize=None)
def _flite_voices() -> frozenset:
  out = _run_listing(["flite", "-lv"])
  return frozenset(out.split(":", 1)[-1].split()) if "Voices available" in out else frozenset()


def _festival_voice_installed(name: str) -> bool:
  return any(os.path.isdir(d) for d in glob.glob(f"/usr/share/festival/voices/*/{name}"))


_BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def unavailable_reason(voice: Voice) -> str | None:
  """None if `voice` can be synthesised on this machine, else why not."""
  if voice.engine not in ENGINES:
    return f"unknown engine {voice.engine!r} (known: {', '.join(ENGINES)})"
  if shutil.which(_BINARIES[voice.engine]) is None:
    return f"{_BINARIES[voice.engine]} is not installed (apt-get install {voice.engine})"
  if voice.engine == "espeak-ng":
    accent, _, variant = voice.name.partition("+")
    languages, variants = _espeak_catalogue()
    spelled = ESPEAK_ACCENTS.get(accent, accent).lower()
    if spelled not in languages:
      return f"espeak-ng has no English voice {accent!r}"
    if variant and variant.lower() not in variants:
      return f"espeak-ng has no variant {variant!r}"
  elif voice.engine == "flite" and voice.name not in _flite_voices():
    return f"flite has no voice {voice.name!r} (flite -lv)"
  elif voice.engine == "festival" and not _festival_voice_installed(voice.name):
    return f"festival voice {voice.name!r} is not installed under /usr/share/festival/voices"
  return None


# ---------------------------------------------------------------------------------------------
# Synthesis: each function writes `wav_path` at the engine's native rate from `text_path`.


class SynthesisError(RuntimeError):
  """A synthesis step failed; `reason` is the short key counted in the corpus summary."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason = reason


def run_tool(cmd: list[str], reason: str) -> None:
  try:
    result = subprocess.run(cmd, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)
  except subprocess.TimeoutExpired as e:
    raise SynthesisError(f"{reason}_timeout", " ".join(cmd[:3])) from e
  except OSError as e:
    raise SynthesisError(f"{reason}_missing", str(e)) from e
  if result.returncode != 0:
    raise SynthesisError(f"{reason}_failed", result.stderr.decode(errors="replace")[-300:])


def _espeak(voice: Voice, text_path: str, wav_path: str, pitch, rate, pitch_range) -> None:
  accent, _, variant = voice.name.partition("+")
  spec = ESPEAK_ACCENTS.get(accent, accent) + (f"+{variant}" if variant else "")
  cmd = ["espeak-ng", "-v", spec, "-p", str(int(pitch)), "-s", str(int(rate))]
  if pitch_range is not None:  # only SSML sets the range from the command line
    with open(text_path, encoding="ascii") as f:
      text = saxutils.escape(f.read().strip())
    text_path = f"{text_path}.ssml"
    with open(text_path, "w", encoding="ascii") as f:
      f.write(f'<speak><prosody range="{round(100 * pitch_range)}%">{text}</prosody></speak>\n')
    cmd.append("-m")
  run_tool(cmd + ["-f", text_path, "-w", wav_path], "engine")


def _flite(voice: Voice, text_path: str, wav_path: str, pitch, rate, pitch_range) -> None:
  cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={rate:.4f}"]
  if pitch is not None:
    cmd += ["--setf", f"int_f0_target_mean={pitch:.1f}"]
    if pitch_range is not None:
      cmd += ["--setf", f"int_f0_target_stddev={F0_STD_RATIO * pitch * pitch_range:.1f}"]
  run_tool(cmd + ["-f", text_path, "-o", wav_path], "engine")


def _festival(voice: Voice, text_path: str, wav_path: str, pitch, rate, pitch_range) -> None:
  evals = [f"(voice_{voice.name})"]
  if "hts" in voice.name:
    # HTS voices ignore Duration_Stretch; their engine's -r is a speed factor.
    evals.append(f"(set! hts_engine_params (append hts_engine_params (list (list \"-r\" "
                 f"{1.0 / rate:.4f}))))")
  else:
    evals.append(f"(Parameter.set 'Duration_Stretch {rate:.4f})")
  if pitch is not None:
    spread = F0_STD_RATIO * pitch * (1.0 if pitch_range is None else pitch_range)
    evals.append(f"(set! int_lr_params '((target_f0_mean {pitch:.1f}) (target_f0_std "
                 f"{spread:.1f}) (model_f0_mean 170) (model_f0_std 34)))")
  cmd = ["text2wave"]
  for e in evals:
    cmd += ["-eval", e]
  run_tool(cmd + [text_path, "-o", wav_path], "engine")


_SYNTH = {"espeak-ng": _espeak, "flite": _flite, "festival": _festival}


def synthesise(voice: Voice, text_path: str, wav_path: str, pitch, rate,
               pitch_range: float | None = None) -> None:
  """Write `wav_path` (native rate) speaking the text in `text_path`; SynthesisError on failure.

  `pitch_range` (1 = the engine's default swing) is ignored by voices without pitch control.
  """
  if not voice.has_pitch_range:
    pitch_range = None
  _SYNTH[voice.engine](voice, text_path, wav_path, pitch, rate, pitch_range)
  if not os.path.isfile(wav_path) or os.path.getsize(wav_path) <= 44:
    raise SynthesisError("engine_no_output", voice.speaker)
