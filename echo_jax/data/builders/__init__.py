"""TFDS builders of featurised speech (speech.py) and their sources (sources.py).

Kept import-free: the prepare worker processes import `featurize` from here and must not pull in
TensorFlow. Import `echo_jax.data.builders.speech` to register the builders with TFDS.
"""
