"""echo_jax: Echo, a pitch-conditioned encoder-decoder speech recognizer, in JAX/Flax."""

__version__ = "0.1.0"
