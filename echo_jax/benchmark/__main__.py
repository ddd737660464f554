"""`python -m echo_jax.benchmark`: the benchmark command (echo_jax/benchmark/command.py)."""

from echo_jax.benchmark.command import cli

if __name__ == "__main__":
  cli()
