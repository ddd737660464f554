"""The seed's sizes: d 512, 4 heads, 4 encoder + 4 decoder layers, 128 mels, vocab from the tokenizer.

  python -m echo_jax.train --config configs/base.py --workdir runs/base
Meant for accelerators; on a CPU use configs/default.py.
"""

from echo_jax.config.defaults import default_config


def get_config():
  config = default_config()
  config.data.vocab_size = 4000
  config.data.synth_num_utterances = 6000
  return config
