"""Prepare step: bad inputs skipped with reasons, user layouts, catalog datasets, no-op rebuilds."""

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
import soundfile

from echo_jax.data import audio, features
from echo_jax.data.builders import featurize, sources
from echo_jax.data.prepare import ensure_prepared

SR = 16000


def corpus_rows(corpus_dir):
  with open(os.path.join(corpus_dir, "manifest.jsonl")) as f:
    return [json.loads(line) for line in f]


def manifest_config(tiny_data_config, root, manifest_path, **data):
  config = ml_collections.ConfigDict(tiny_data_config.to_dict())
  config.data.dataset = "manifest"
  config.data.root = str(root)
  config.data.manifest_path = str(manifest_path)
  config.data.prepare_workers = 1  # the inline path (the session fixture covers the pool)
  config.data.store_waveform = False
  config.data.update(data)
  return config


# ------------------------------------------------------------------------------------------------
# Bad inputs.

EXPECTED_SKIPS = {
    "unreadable": audio.UNREADABLE, "missing": audio.UNREADABLE, "empty": audio.EMPTY,
    "silent": audio.SILENT, "nan": audio.NON_FINITE, "too_long": audio.TOO_LONG,
    "no_text": featurize.EMPTY_TRANSCRIPT, "unspeakable": featurize.UNSPEAKABLE_TRANSCRIPT,
    "test_silent": audio.SILENT,
}
EXPECTED_KEPT = {"good0", "good1", "good2", "good3", "stereo44k", "rate8k", "val0"}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, tiny_corpus, _tiny_prepared_session):
  tiny_data_config = _tiny_prepared_session[0]
  folder = tmp_path_factory.mktemp("bad_inputs")
  rows = [r for r in corpus_rows(tiny_corpus) if r["duration"] < 5.0][:6]
  good = []
  for i, r in enumerate(rows):
    shutil.copy(os.path.join(tiny_corpus, r["path"]), folder / f"good{i}.wav")
    good.append((f"good{i}.wav", r["raw_text"]))
  wave, _ = soundfile.read(folder / "good0.wav", dtype="float32")
  import soxr

  wave_44k = soxr.resample(wave, SR, 44100)
  soundfile.write(folder / "stereo44k.flac", np.stack([wave_44k, wave_44k], 1), 44100)
  soundfile.write(folder / "rate8k.wav", soxr.resample(wave, SR, 8000), 8000, subtype="PCM_16")
  (folder / "unreadable.wav").write_text("this is not audio")
  soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), SR)
  soundfile.write(folder / "silent.wav", np.zeros(SR, np.float32), SR, subtype="PCM_16")
  nan = wave.copy()
  nan[100] = np.nan
  soundfile.write(folder / "nan.wav", nan, SR, subtype="FLOAT")
  soundfile.write(folder / "too_long.wav", np.tile(wave, int(7 * SR / wave.size) + 1), SR)
  text = good[0][1]
  entries = [
      ("good0", "good0.wav", good[0][1], "train"), ("good1", "good1.wav", good[1][1], "train"),
      ("good2", "good2.wav", good[2][1], "train"), ("good3", "good3.wav", good[3][1], "train"),
      ("stereo44k", "stereo44k.flac", text, "train"), ("rate8k", "rate8k.wav", text, "train"),
      ("unreadable", "unreadable.wav", text, "train"), ("missing", "missing.wav", text, "train"),
      ("empty", "empty.wav", text, "train"), ("silent", "silent.wav", text, "train"),
      ("nan", "nan.wav", text, "train"), ("too_long", "too_long.wav", text, "train"),
      ("no_text", "good1.wav", "  ", "train"), ("unspeakable", "good2.wav", "¿? ...", "train"),
      ("val0", "good4.wav", good[4][1], "validation"),
      ("test_silent", "silent.wav", text, "test"),  # the whole test split is unusable
  ]
  with open(folder / "manifest.jsonl", "w") as f:
    for key, path, transcript, split in entries:
      f.write(json.dumps({"id": key, "path": path, "text": transcript, "split": split}) + "\n")
  config = manifest_config(tiny_data_config, tmp_path_factory.mktemp("bad_root"),
                           folder / "manifest.jsonl", max_audio_seconds=6.0,
                           tokenizer="sentencepiece", spm_model_type="bpe", vocab_size=48)
  return config, ensure_prepared(config), folder


def test_bad_inputs_are_skipped_with_their_reasons(bad_inputs):
  _, prepared, _ = bad_inputs
  with open(prepared.report_path) as f:
    report = json.load(f)
  skipped = {s["id"]: s["reason"] for items in report["skipped"].values() for s in items}
  assert skipped == EXPECTED_SKIPS
  assert sum(report["skip_counts"].values()) == len(EXPECTED_SKIPS)
  assert prepared.tokenizer_path.endswith(".model")  # sentencepiece, trained on the train texts
  assert prepared.split_sizes == {"train": 6, "validation": 1}  # test: nothing usable, no split
  with pytest.raises(ValueError, match="split 'test' has no examples"):
    prepared.split_lengths("test")


def test_only_complete_examples_are_written(bad_inputs):
  config, prepared, _ = bad_inputs
  from echo_jax.data import pipeline

  kept = set()
  for split in prepared.split_sizes:
    for record in pipeline.iterate_examples(config, split, prepared=prepared):
      kept.add(record["id"])
      frames = int(record["num_frames"])
      assert record["mel"].shape == (frames, config.data.n_mels)
      assert record["f0"].shape == (frames,) and record["voiced"].shape == (frames,)
      assert np.all(np.isfinite(record["mel"])) and record["tokens"].size > 0
  assert kept == EXPECTED_KEPT


def test_stereo_and_other_rates_are_converted_not_skipped(bad_inputs):
  config, prepared, folder = bad_inputs
  from echo_jax.data import pipeline

  records = {r["id"]: r for r in pipeline.iterate_examples(config, "train", prepared=prepared)}
  original = records["good0"]
  for key in ("stereo44k", "rate8k"):
    assert abs(int(records[key]["num_frames"]) - int(original["num_frames"])) <= 1
  n = int(original["num_frames"]) - 1
  # 44.1 kHz stereo of the same mono signal keeps the whole band: the same log-mel.
  assert np.mean(np.abs(records["stereo44k"]["mel"][:n] - original["mel"][:n])) < 0.02
  # 8 kHz keeps the pitch.
  voiced = (original["f0"][:n] > 0) & (records["rate8k"]["f0"][:n] > 0)
  assert voiced.mean() > 0.3
  ratio = records["rate8k"]["f0"][:n][voiced] / original["f0"][:n][voiced]
  assert np.median(np.abs(ratio - 1)) < 0.02


# ------------------------------------------------------------------------------------------------
# The shared tiny dataset.


def test_stored_features_equal_features_of_the_wav(tiny_prepared, tiny_data_config, tiny_corpus):
  from echo_jax.data import pipeline

  rows = {r["id"]: r for r in corpus_rows(tiny_corpus)}
  record = next(pipeline.iterate_examples(tiny_data_config, "train", prepared=tiny_prepared))
  wave = audio.load_audio(os.path.join(tiny_corpus, rows[record["id"]]["path"]), SR)
  expected = features.compute_features(wave, tiny_data_config.data)
  np.testing.assert_array_equal(record["mel"], expected["mel"])
  np.testing.assert_array_equal(record["f0"], expected["f0"])
  np.testing.assert_array_equal(record["waveform"], wave)
  assert record["text"] == rows[record["id"]]["text"]


def test_split_sizes_cover_the_corpus(tiny_prepared, tiny_corpus):
  rows = corpus_rows(tiny_corpus)
  with open(tiny_prepared.report_path) as f:
    report = json.load(f)
  skipped = {s: len(v) for s, v in report["skipped"].items()}
  for split in ("train", "validation", "test"):
    total = sum(r["split"] == split for r in rows)
    assert tiny_prepared.split_sizes.get(split, 0) + skipped.get(split, 0) == total
  index, num_frames = tiny_prepared.split_lengths("train")
  assert len(index) == tiny_prepared.split_sizes["train"] and np.all(np.diff(index) > 0)
  assert report["audio_seconds_per_second"] > 0 and report["workers"] == 2  # the process pool


def test_tokenizer_is_saved_with_the_data_and_round_trips(tiny_prepared, tiny_data_config,
                                                          tiny_corpus):
  assert tiny_prepared.tokenizer_path.startswith(os.path.abspath(tiny_data_config.data.root))
  tokenizer = tiny_prepared.load_tokenizer()
  for row in corpus_rows(tiny_corpus):
    assert tokenizer.decode(tokenizer.encode(row["text"])) == row["text"]


def test_prepare_is_a_no_op_when_up_to_date(tiny_prepared, tiny_data_config):
  before = {p: os.path.getmtime(p) for p in (tiny_prepared.report_path, tiny_prepared.builder_dir,
                                              tiny_prepared.tokenizer_path)}
  again = ensure_prepared(tiny_data_config)
  assert again == tiny_prepared
  assert {p: os.path.getmtime(p) for p in before} == before


def test_only_data_fields_change_the_prepared_dataset(tiny_prepared, tiny_data_config):
  from echo_jax.data.prepare import builder_config_for

  def name(**data):
    config = ml_collections.ConfigDict(tiny_data_config.to_dict())
    config.data.update(data)
    return builder_config_for(config)[1].name

  assert name() == tiny_prepared.config_name
  assert name(bucket_batch_sizes=(2, 2, 2), seed=5, prepare_workers=1) == tiny_prepared.config_name
  for change in ({"n_mels": 40}, {"fmin": 50.0}, {"f0_ceil": 600.0}, {"store_waveform": False},
                 {"on_the_fly_features": True}, {"max_audio_seconds": 9.0}):
    assert name(**change) != tiny_prepared.config_name, change


# ------------------------------------------------------------------------------------------------
# User layouts (text only: no audio is read).


def test_librispeech_folder_layout(tmp_path):
  for subset, spk in (("train-clean-100", "19"), ("dev-clean", "84"), ("test-clean", "61")):
    chapter = tmp_path / "LibriSpeech" / subset / spk / "198"
    chapter.mkdir(parents=True)
    lines = [f"{spk}-198-{i:04d} SOME WORDS NUMBER {i}" for i in range(2)]
    (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
  items = sources.manifest_items(str(tmp_path / "LibriSpeech"))
  assert {s: len(v) for s, v in items.items()} == {"train": 2, "validation": 2, "test": 2}
  first = items["validation"][0]
  assert first.key == "84-198-0000" and first.speaker == "84"
  assert first.raw_text == "SOME WORDS NUMBER 0"
  assert first.audio_path.endswith(os.path.join("dev-clean", "84", "198", "84-198-0000.flac"))


def test_common_voice_folder_layout(tmp_path):
  (tmp_path / "clips").mkdir()
  header = "client_id\tpath\tsentence\tup_votes\n"
  (tmp_path / "train.tsv").write_text(header + "abc\tcv_1.mp3\tHello there.\t2\n"
                                      "def\tcv_2.mp3\tGood morning!\t1\n")
  (tmp_path / "dev.tsv").write_text(header + "abc\tcv_3.mp3\tOne more.\t0\n")
  items = sources.manifest_items(str(tmp_path))
  assert [i.key for i in items["train"]] == ["cv_1", "cv_2"] and len(items["validation"]) == 1
  assert items["train"][0].audio_path == str(tmp_path / "clips" / "cv_1.mp3")
  assert items["train"][1].speaker == "def" and items["train"][1].raw_text == "Good morning!"
  assert items["test"] == []


def test_headerless_tsv_and_jsonl_without_splits(tmp_path):
  (tmp_path / "list.tsv").write_text("a/x.wav\tfirst text\na/y.wav\tsecond text\n")
  items = sources.manifest_items(str(tmp_path / "list.tsv"))
  flat = [i for v in items.values() for i in v]
  assert sorted(i.raw_text for i in flat) == ["first text", "second text"]
  assert all(i.split == sources.hash_split(i.key) for i in flat)
  (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "z.wav", "sentence": "hi"}) + "\n")
  [item] = [i for v in sources.manifest_items(str(tmp_path / "m.jsonl")).values() for i in v]
  assert item.audio_path == str(tmp_path / "z.wav") and item.raw_text == "hi"


def test_duplicate_ids_are_refused(tmp_path):
  row = json.dumps({"id": "x", "path": "x.wav", "text": "hi", "split": "train"})
  (tmp_path / "m.jsonl").write_text(row + "\n" + row + "\n")
  with pytest.raises(ValueError, match="duplicate utterance id 'x'"):
    sources.manifest_items(str(tmp_path / "m.jsonl"))


# ------------------------------------------------------------------------------------------------
# A TFDS catalog dataset (a small stand-in, built offline, with LibriSpeech's feature names).


@pytest.fixture(scope="module")
def fake_catalog(tmp_path_factory, tiny_corpus):
  import tensorflow_datasets as tfds

  from etils import epath

  rows = corpus_rows(tiny_corpus)[:6]
  data_dir = str(tmp_path_factory.mktemp("catalog"))

  class FakeLibrispeech(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # a test module: no checksums or metadata files to look up
    pkg_dir_path = epath.Path(data_dir)

    def _info(self):
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
          "speech": tfds.features.Audio(dtype=np.int16, sample_rate=SR),
          "text": tfds.features.Text(), "speaker_id": np.int64, "id": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train_clean": self._generate_examples(rows[:4]),
              "dev": self._generate_examples(rows[4:])}

    def _generate_examples(self, chosen):
      for i, r in enumerate(chosen):
        pcm, _ = soundfile.read(os.path.join(tiny_corpus, r["path"]), dtype="int16")
        yield r["id"], {"speech": pcm, "text": r["raw_text"].upper(), "speaker_id": i,
                        "id": r["id"]}

  FakeLibrispeech(data_dir=data_dir).download_and_prepare()
  return "fake_librispeech", data_dir, rows


def test_catalog_dataset_goes_through_the_same_feature_step(fake_catalog, tiny_data_config,
                                                            tmp_path, tiny_corpus):
  from echo_jax.data import pipeline

  name, data_dir, rows = fake_catalog
  config = ml_collections.ConfigDict(tiny_data_config.to_dict())
  config.data.update(dataset=name, catalog_data_dir=data_dir, root=str(tmp_path), prepare_workers=1,
                     store_waveform=False)
  config.data.tfds_splits = {"train": "train_clean", "validation": "dev", "test": ""}
  prepared = ensure_prepared(config)
  assert prepared.builder_name == "catalog_speech"
  assert prepared.split_sizes == {"train": 4, "validation": 2}
  by_id = {r["id"]: r for r in rows}
  for record in pipeline.iterate_examples(config, "validation", prepared=prepared):
    row = by_id[record["id"]]
    assert record["text"] == row["text"]  # upper-cased in the catalog, normalised here
    wave = audio.load_audio(os.path.join(tiny_corpus, row["path"]), SR)
    np.testing.assert_array_equal(record["mel"], features.log_mel(wave, config.data))
  # A build that stopped before writing its index gets it back from the records.
  from echo_jax.data.builders.speech import INDEX_FILE

  lengths = prepared.split_lengths("train")
  os.remove(os.path.join(prepared.builder_dir, INDEX_FILE))
  for got, expected in zip(prepared.split_lengths("train"), lengths):
    np.testing.assert_array_equal(got, expected)


def test_a_failing_feature_step_is_skipped_with_its_exception(bad_inputs, monkeypatch):
  config, prepared, folder = bad_inputs
  params = features.FeatureParams.from_config(config.data)
  item = sources.SourceItem(index=0, key="good0", split="train", raw_text="a good mile",
                            audio_path=str(folder / "good0.wav"))
  kept = featurize.featurize_item(item, params, prepared.tokenizer_path)
  assert kept.example is not None and kept.reason == ""

  def broken(*args, **kwargs):
    raise RuntimeError("mel filterbank exploded")

  monkeypatch.setattr(features, "compute_features", broken)
  skipped = featurize.featurize_item(item, params, prepared.tokenizer_path)
  assert skipped.example is None
  assert (skipped.reason, skipped.detail) == (featurize.FEATURE_ERROR,
                                              "RuntimeError: mel filterbank exploded")
  assert (skipped.split, skipped.index, skipped.key) == ("train", 0, "good0")


def test_no_usable_example_in_any_split_is_one_error_with_the_counts(bad_inputs, tmp_path):
  from echo_jax.errors import UserError

  config, _, folder = bad_inputs
  with open(tmp_path / "manifest.jsonl", "w") as f:
    for key, path, split in (("s", "silent.wav", "train"), ("u", "unreadable.wav", "train"),
                             ("v", "silent.wav", "validation")):
      f.write(json.dumps({"id": key, "path": str(folder / path), "text": "hello there",
                          "split": split}) + "\n")
  hopeless = manifest_config(config, tmp_path / "root", tmp_path / "manifest.jsonl",
                             tokenizer="char")
  with pytest.raises(UserError, match="no usable example in any split") as raised:
    ensure_prepared(hopeless)
  counts = str(raised.value)
  assert f"'{audio.SILENT}': 2" in counts and f"'{audio.UNREADABLE}': 1" in counts, counts
