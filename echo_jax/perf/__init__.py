"""FLOP counting and accelerator topologies for benchmarks and ahead-of-time compilation."""
