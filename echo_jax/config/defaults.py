"""The full configuration schema with its defaults.

Config files in `configs/` call `default_config()` and override what they need, so every
field exists in every config and a typo in an override fails (ml_collections is locked).
`config.model` is declared once, by echo_jax.models.config.ModelSettings.
"""

import ml_collections

# The model's fields, defaults and validator live with the model (below this package).
from echo_jax.models.config import default_model_config

__all__ = ["default_config", "default_data_config", "default_model_config"]


def default_data_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  d.dataset = "echo_speech"  # echo_speech | manifest | tfds catalog name (e.g. librispeech)
  d.root = "data"  # everything the data part writes lives under here
  d.corpus_dir = ""  # default: <root>/echo_speech_corpus
  d.tfds_data_dir = ""  # default: <root>/tfds
  d.manifest_path = ""  # for dataset=manifest: TSV/JSONL of (path, transcript[, split])
  d.catalog_data_dir = ""  # dataset = a TFDS catalog name: where it was downloaded (default: TFDS's)
  d.tfds_splits = ml_collections.ConfigDict(
      {"train": "train", "validation": "validation", "test": "test"})
  # Synthetic corpus.
  d.synth_num_utterances = 1200
  d.synth_seed = 0
  d.synth_engines = ("espeak-ng", "flite", "festival")
  d.synth_sox_pitch = True
  d.synth_noise_snr_db = -1.0  # < 0: no added noise
  d.synth_dither = True
  # Features.
  d.sample_rate = 16000
  d.n_fft = 1024
  d.hop_length = 128
  d.n_mels = 128
  d.fmin = 0.0
  d.fmax = 8000.0
  d.f0_floor = 71.0
  d.f0_ceil = 800.0
  d.max_audio_seconds = 15.0
  d.store_waveform = False
  d.on_the_fly_features = False
  d.prepare_workers = 2
  # Whose F0 track the model is fed: own | shuffled: the track of another utterance of the same
  # split (record (i + n // 2) % n, stretched to this one's frames), in training and evaluation;
  # the pitch ablation's placebo (echo_jax.data.f0_source).
  d.f0_source = "own"
  # Pitch range of the data (the pitch ablation's out-of-range split, echo_jax.data.f0_range):
  # train only on utterances whose median voiced F0 is below train_max_f0_hz, evaluate only those
  # at or above eval_min_f0_hz (validation and test); 0 = no limit.
  d.train_max_f0_hz = 0.0
  d.eval_min_f0_hz = 0.0
  # Tokenizer.
  d.tokenizer = "sentencepiece"  # sentencepiece | char
  d.spm_model_type = "unigram"  # bpe | unigram
  d.vocab_size = 512
  # Batching.
  d.bucket_frames = (512, 1024, 1536, 2048)  # bucket edges in mel frames
  d.bucket_batch_sizes = (32, 16, 8, 8)  # batch per bucket, in data.batch_size_unit
  # global: bucket_batch_sizes and eval_batch_size are whole batches over all devices (a slice
  # must divide them); per_device: rows per device, so the global batch is size x device count
  # (echo_jax.data.pipeline.global_batch_sizes) and a config runs on any slice size as written.
  d.batch_size_unit = "global"
  d.max_target_length = 128  # tokens incl. BOS/EOS
  # Per-bucket token padding, one length per bucket edge (non-decreasing, the last equal to
  # max_target_length): short utterances have short transcripts, and the decoder's cost grows
  # with the padded length. An example goes to the first bucket that fits its frames and tokens.
  # Empty: every bucket pads to max_target_length.
  d.bucket_target_lengths = ()
  # Curriculum (SortaGrad): the first N epochs hand out their batches shortest first, later ones
  # shuffled. 0: every epoch shuffled.
  d.shortest_first_epochs = 0
  d.shuffle_buffer = 2048
  d.seed = 0
  d.prefetch = 2
  d.eval_batch_size = 16
  return d


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = default_model_config()
  c.data = default_data_config()

  c.init_from = ""  # another run (workdir, checkpoints dir or step dir) to take params from

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 10000
  c.train.learning_rate = 2.5e-4
  c.train.warmup_steps = 1000
  c.train.end_lr_fraction = 0.0
  c.train.weight_decay = 0.01
  c.train.b1 = 0.9
  c.train.b2 = 0.98
  c.train.eps = 1e-9
  c.train.grad_clip_norm = 1.0
  c.train.seed = 0
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.keep_best = 1
  # The eval error rate that picks the best checkpoint (kept by keep_best, loaded by evaluate,
  # transcribe and lm.tune when no --checkpoint is given): wer / cer of the attention decoder's
  # greedy output, or ctc_wer / ctc_cer of the CTC best path (needs model.ctc_head).
  c.train.best_metric = "wer"
  c.train.param_sharding = "replicated"  # replicated | fsdp
  c.train.fsdp_min_size = 1 << 14  # fsdp: parameters with fewer elements stay replicated
  c.train.compilation_cache_dir = ""
  # Joint CTC/attention: loss = (1 - w) * CE + w * CTC (needs model.ctc_head); 0 = attention only.
  c.train.ctc_weight = 0.0
  # With model.intermediate_ctc_layers: the CTC loss is (1 - u) * final + u * the mean of the
  # intermediate layers' CTC losses.
  c.train.intermediate_ctc_weight = 0.0
  c.train.label_smoothing = 0.0
  # SpecAugment in the train step (0 masks = off): widths in mel bins and in mel frames (8 ms).
  c.train.spec_augment = ml_collections.ConfigDict()
  c.train.spec_augment.freq_masks = 0
  c.train.spec_augment.freq_mask_bins = 27
  c.train.spec_augment.time_masks = 0
  c.train.spec_augment.time_mask_frames = 40
  c.train.spec_augment.time_mask_max_fraction = 0.05  # a time mask covers at most this share
  # Quiet frames before and after an utterance (echo_jax.training.edge_silence), for recordings
  # that open and close on room tone: per utterance with this probability, up to max_frames mel
  # frames (8 ms) on each side, within the room its bucket leaves. 0 = off.
  c.train.edge_silence = ml_collections.ConfigDict()
  c.train.edge_silence.probability = 0.0
  c.train.edge_silence.max_frames = 125
  # Vocal tract length perturbation (echo_jax.training.frequency_warp): per utterance with this
  # probability, its log-mel frequencies scaled by U(1 - max_factor, 1 + max_factor). 0 = off.
  c.train.frequency_warp = ml_collections.ConfigDict()
  c.train.frequency_warp.probability = 0.0
  c.train.frequency_warp.max_factor = 0.1

  c.eval = ml_collections.ConfigDict()
  c.eval.every = 1000
  c.eval.split = "validation"
  c.eval.max_examples = 200  # -1: whole split
  c.eval.generate = True  # WER/CER from greedy decoding

  c.decode = ml_collections.ConfigDict()
  c.decode.beam_size = 1
  c.decode.length_penalty = 0.6
  c.decode.ctc_weight = 0.0  # joint beam search: weight of the CTC prefix score (needs a CTC head)
  c.decode.max_length = 128
  c.decode.chunk_seconds = 15.0
  c.decode.chunk_overlap_seconds = 2.0
  # Audio files (transcribe, evaluate --manifest): leading and trailing stretches quieter than
  # this many dB below the file's peak are cut, keeping 0.1 s (echo_jax.data.audio); 0 = keep
  # everything. A second of silence around an utterance, which the synthetic corpus never has,
  # costs the default run 11 CTC CER points (docs/accuracy.md, section 8).
  c.decode.trim_silence_db = 40.0
  # CTC lexicon search with a word n-gram LM (evaluate's third hypothesis; needs a CTC head and
  # character targets): "" none, "auto" the corpus LM (echo_jax.lm.build), or an ARPA file.
  c.decode.lm_path = ""
  c.decode.lm_weight = 1.0  # multiplies the LM's log10 probability per word
  c.decode.lm_word_score = 0.0  # added per word
  c.decode.lm_beam_size = 50
  c.decode.lm_blank_penalty = 0.0  # subtracted from each frame's blank log posterior

  c.diagnostics = ml_collections.ConfigDict()
  c.diagnostics.every = 0  # 0: off

  c.distributed = ml_collections.ConfigDict()
  c.distributed.initialize = False  # auto on TPU pods; explicit for GPU clusters and local tests
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  return c
