"""The training driver and what a train step is made of: losses, optimizer, SpecAugment, metrics, checkpoints."""
