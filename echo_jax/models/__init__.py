"""The Echo model (flax linen): F0-conditioned rotary, pitch bias, masked attention, KV cache."""

from echo_jax.models.building import build_model, example_batch
from echo_jax.models.config import ModelSettings, model_settings, validate_model_config
from echo_jax.models.echo import (EchoModel, EncoderOutput, count_params, decode_step,
                                  expected_param_count, init_decode_cache)

__all__ = [
    "EchoModel", "EncoderOutput", "ModelSettings", "build_model", "count_params", "decode_step",
    "example_batch", "expected_param_count", "init_decode_cache", "model_settings",
    "validate_model_config",
]
