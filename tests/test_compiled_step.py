"""The trainer's ahead-of-time step wrapper and the release of freed host memory."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from echo_jax.perf import host_memory
from echo_jax.training.compiled_step import CompiledPerSignature


@functools.partial(jax.jit, donate_argnums=0)
def _step(state, batch):
  new_state = {"w": state["w"] + jnp.sum(batch["x"], axis=0)}
  return new_state, {"mean": jnp.mean(batch["x"])}


def test_one_executable_per_signature_with_the_jitted_values_and_donation():
  wrapped = CompiledPerSignature(_step)
  state = {"w": jnp.zeros([4])}
  expected = np.zeros([4])
  for rows in (3, 5, 3, 5, 3):
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) / rows
    old = state["w"]
    state, metrics = wrapped(state, {"x": jnp.asarray(x)})
    expected = expected + x.sum(0)
    np.testing.assert_allclose(state["w"], expected, rtol=1e-6)
    np.testing.assert_allclose(metrics["mean"], x.mean(), rtol=1e-6)
    assert old.is_deleted()  # the executable keeps the jitted function's donation
  assert wrapped.num_compiled() == 2
  wrapped({"w": jnp.zeros([4], jnp.int32)}, {"x": jnp.zeros([3, 4], jnp.int32)})
  assert wrapped.num_compiled() == 3  # a new dtype is a new signature


def test_release_hands_fragmented_free_heap_back_to_the_os():
  # 64 KiB blocks stay below glibc's mmap threshold, so they live in the heap; keeping every
  # eighth one alive pins the heap's top, so freeing the rest does not shrink it by itself.
  blocks = [np.ones(16 * 1024, np.float32) for _ in range(3200)]  # 200 MiB
  kept = blocks[::8]
  del blocks
  before = host_memory.current_rss_mib()
  assert host_memory.release_freed_host_memory()
  after = host_memory.current_rss_mib()
  assert before - after > 100, (before, after)  # of the ~175 MiB freed
  assert len(kept) == 400
