"""A listening test that memorising lengths cannot pass: four sentences spoken by one voice and
padded to exactly the same duration are each transcribed after a short joint CTC/attention
training, and the same model fed the same audio time-reversed (same length, same spectrum) is not.
"""

import importlib
import io
import subprocess

import jax
import numpy as np
import soundfile as sf
import soxr

from echo_jax.inference import decoding
from echo_jax.parallel import sharding
from echo_jax.models import building
from echo_jax.training import setup as train_setup
from echo_jax.training import steps
from echo_jax.data import features
from echo_jax.data.tokenizer import Tokenizer
from echo_jax.inference.scoring import error_rates

SENTENCES = ("open the window", "seven green apples", "my brother sings", "cold tea is fine")
STEPS = 150


def _speak(text: str, sample_rate: int) -> np.ndarray:
  wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "--stdout", text],
                       check=True, capture_output=True).stdout
  samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
  return soxr.resample(samples, rate, sample_rate).astype(np.float32)


def _batch(config, mels, tokenizer, length):
  frames = mels[0].shape[0]
  batch = building.example_batch(config, len(mels), frames)
  batch["mel"] = np.stack(mels)
  batch["f0"][:] = 0.0  # no pitch: only the spectrogram's order can tell the sentences apart
  batch["num_frames"][:] = frames
  batch["decoder_input_tokens"][:] = 0
  batch["decoder_target_tokens"][:] = 0
  for row, text in enumerate(SENTENCES):
    ids = tokenizer.encode(text)
    batch["decoder_input_tokens"][row, :len(ids) + 1] = [1] + ids
    batch["decoder_target_tokens"][row, :len(ids) + 1] = ids + [2]
  return batch


def test_model_listens_to_the_audio_not_its_length(tmp_path):
  config = importlib.import_module("configs.tiny").get_config()
  data = config.data
  waves = [_speak(text, data.sample_rate) for text in SENTENCES]
  longest = max(w.size for w in waves)
  waves = [np.pad(w, (0, longest - w.size)) for w in waves]  # equal durations, trailing silence
  mels = [features.log_mel(w, data) for w in waves]
  assert len({m.shape for m in mels}) == 1
  tokenizer = Tokenizer.train(SENTENCES, str(tmp_path / "tok"), kind="char")
  config.model.vocab_size = tokenizer.vocab_size
  config.model.ctc_head = True
  config.data.max_target_length = 24
  t = config.train
  t.ctc_weight, t.num_steps, t.warmup_steps, t.learning_rate = 0.5, STEPS, 10, 3e-3

  mesh = sharding.make_mesh(jax.devices()[:1])
  run = train_setup.create_training_setup(config, mesh)
  model, state = run.model, run.state
  step = steps.make_train_step(model, run.tx, run.schedule, mesh, run.shardings, train_config=t)
  batch = _batch(config, mels, tokenizer, 24)
  device_batch = sharding.global_batch(batch, mesh)
  for _ in range(STEPS):
    state, step_metrics = step(state, device_batch)
  assert float(step_metrics["loss"]) < 0.1

  variables = {"params": jax.device_get(state.params)}
  generate = jax.jit(lambda v, b: decoding.greedy_decode(model, v, b, 24))
  best_path = jax.jit(lambda v, b: decoding.ctc_greedy_decode(model, v, b))

  def transcripts(b):
    attention = decoding.decode_batch_text(np.asarray(generate(variables, b)), tokenizer)
    ctc = decoding.decode_batch_text(np.asarray(best_path(variables, b)), tokenizer)
    return attention, ctc

  heard, heard_ctc = transcripts(batch)
  assert list(heard) == list(SENTENCES), heard
  assert error_rates(SENTENCES, heard_ctc)["cer"] <= 0.1, heard_ctc

  reversed_batch = dict(batch, mel=batch["mel"][:, ::-1].copy())
  np.testing.assert_allclose(np.sort(reversed_batch["mel"], axis=1), np.sort(batch["mel"], axis=1))
  backwards, backwards_ctc = transcripts(reversed_batch)
  assert error_rates(SENTENCES, backwards)["cer"] > 0.3, backwards
  assert error_rates(SENTENCES, backwards_ctc)["cer"] > 0.3, backwards_ctc

